"""POST /createRoom: the initial events of a new room, in the spec's order."""

from __future__ import annotations

import secrets
import string
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from homeserver.clock import Clock
from homeserver.errors import MatrixError, bad_json, invalid_param
from homeserver.events.room_versions import RoomVersion
from homeserver.identifiers import is_valid_user_id
from homeserver.rooms.sender import RoomEventSender, room_version_or_error
from storage.stores.aliases import AliasExistsError, AliasStore

ProfileLookup = Callable[[str], Awaitable[dict[str, Any] | None]]

PRESETS = {
    # preset: (join_rule, history_visibility, guest_access or None, invitees get creator power)
    "private_chat": ("invite", "shared", "can_join", False),
    "trusted_private_chat": ("invite", "shared", "can_join", True),
    "public_chat": ("public", "shared", None, False),
}


def default_power_levels(creator: str, room_version: RoomVersion, preset: str,
                         invitees: list[str]) -> dict[str, Any]:
    """The power levels Synapse gives a new room; creators have infinite power from v12."""
    users: dict[str, int] = {}
    if not room_version.creator_power_infinite:
        users[creator] = 100
        if PRESETS[preset][3]:
            users.update({invitee: 100 for invitee in invitees})
    return {
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50 if preset == "public_chat" else 0,
        "historical": 100,
        "notifications": {"room": 50},
    }


def random_room_id(server_name: str) -> str:
    alphabet = string.ascii_letters
    return "!" + "".join(secrets.choice(alphabet) for _ in range(18)) + ":" + server_name


class Invite(Protocol):
    """The membership service's invite, which has a remote invitee's server countersign the event
    (invite v2) before it is persisted."""

    async def __call__(self, sender: str, room_id: str, target: str, *, is_direct: bool) -> Any: ...


class RoomCreator:
    def __init__(self, server_name: str, sender: RoomEventSender, aliases: AliasStore, clock: Clock,
                 profiles: ProfileLookup, invite: Invite, default_room_version: str, *,
                 alias_checks: Sequence[Callable[[str, str], None]] = ()):
        self._server_name = server_name
        self._invite = invite
        self._sender = sender
        self._aliases = aliases
        self._clock = clock
        self._profiles = profiles
        self._default_room_version = default_room_version
        # `check(creator, alias)` on `room_alias_name` raises to refuse (application services' namespaces).
        self._alias_checks = tuple(alias_checks)

    async def create_room(self, creator: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a room from a /createRoom request body; returns `{"room_id": ...}`."""
        room_version = room_version_or_error(body.get("room_version", self._default_room_version))
        visibility = body.get("visibility", "private")
        if not isinstance(visibility, str) or visibility not in ("public", "private"):
            raise invalid_param("visibility: must be 'public' or 'private'")
        preset = body.get("preset", "public_chat" if visibility == "public" else "private_chat")
        if not isinstance(preset, str) or preset not in PRESETS:
            raise invalid_param(f"preset: must be one of {', '.join(PRESETS)}")
        invitees = body.get("invite", [])
        if not isinstance(invitees, list) or not all(isinstance(u, str) and is_valid_user_id(u) for u in invitees):
            raise invalid_param("invite: must be a list of user IDs")
        invite_3pid = body.get("invite_3pid", [])
        if not isinstance(invite_3pid, list) or not all(isinstance(item, dict) for item in invite_3pid):
            raise bad_json("invite_3pid: must be a list of objects")
        for i, item in enumerate(invite_3pid):
            for key in ("id_server", "id_access_token", "medium", "address"):
                if not isinstance(item.get(key), str):
                    raise bad_json(f"invite_3pid[{i}].{key}: required, a string")
        if invite_3pid:
            raise MatrixError(400, "M_THREEPID_DENIED", "invite_3pid: third-party invites are not supported here")
        creation_content = body.get("creation_content", {})
        if not isinstance(creation_content, dict):
            raise bad_json("creation_content: must be an object")
        initial_state = body.get("initial_state", [])
        if not isinstance(initial_state, list):
            raise bad_json("initial_state: must be a list")
        for i, item in enumerate(initial_state):
            if not (isinstance(item, dict) and isinstance(item.get("type"), str)
                    and isinstance(item.get("content"), dict) and isinstance(item.get("state_key", ""), str)):
                raise bad_json(f"initial_state[{i}]: needs a string type and an object content")
        overrides = body.get("power_level_content_override")
        if overrides is not None and not isinstance(overrides, dict):
            raise bad_json("power_level_content_override: must be an object")
        for key in ("name", "topic"):
            if key in body and not isinstance(body[key], str):
                raise bad_json(f"{key}: must be a string")
        is_direct = body.get("is_direct", False)
        if not isinstance(is_direct, bool):
            raise bad_json("is_direct: must be true or false")

        alias = None
        alias_name = body.get("room_alias_name")
        if alias_name is not None:
            if not isinstance(alias_name, str) or not alias_name or any(c in alias_name for c in ":# \t\n"):
                raise invalid_param("room_alias_name: must be a non-empty localpart")
            alias = f"#{alias_name}:{self._server_name}"
            if len(alias.encode()) > 255:
                raise invalid_param("room_alias_name: too long")
            for check in self._alias_checks:
                check(creator, alias)
            if await self._aliases.get_alias(alias) is not None:
                raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")

        create_content = dict(creation_content)
        if not room_version.implicit_room_creator:
            create_content["creator"] = creator
        create_content["room_version"] = room_version.identifier
        if room_version.creator_power_infinite and PRESETS[preset][3] and invitees:
            extra = create_content.get("additional_creators", [])
            create_content["additional_creators"] = [*extra, *[u for u in invitees if u not in extra]]
        room_id = None if room_version.room_id_from_create_event else random_room_id(self._server_name)
        create_event = await self._sender.create_room(room_id, room_version, creator, create_content,
                                                      is_public=visibility == "public")
        room_id = create_event.room_id
        send = self._sender.send

        await send(room_id, creator, "m.room.member", await self._member_content(creator, "join"),
                   state_key=creator)
        power_levels = default_power_levels(creator, room_version, preset, invitees)
        if overrides:
            power_levels.update(overrides)
        initial_keys = {(item["type"], item.get("state_key", "")) for item in initial_state}
        await send(room_id, creator, "m.room.power_levels", power_levels, state_key="")
        if alias is not None:
            try:
                await self._aliases.create_alias(alias, room_id, creator, self._clock.time_ms())
            except AliasExistsError:
                raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken") from None
            await send(room_id, creator, "m.room.canonical_alias", {"alias": alias}, state_key="")
        join_rule, history_visibility, guest_access, _ = PRESETS[preset]
        for event_type, content in (
            ("m.room.join_rules", {"join_rule": join_rule}),
            ("m.room.history_visibility", {"history_visibility": history_visibility}),
            ("m.room.guest_access", {"guest_access": guest_access} if guest_access else None),
        ):
            if content is not None and (event_type, "") not in initial_keys:
                await send(room_id, creator, event_type, content, state_key="")
        for item in initial_state:
            await send(room_id, creator, item["type"], item["content"], state_key=item.get("state_key", ""))
        if "name" in body:
            await send(room_id, creator, "m.room.name", {"name": body["name"]}, state_key="")
        if "topic" in body:
            topic = body["topic"]
            await send(room_id, creator, "m.room.topic",
                       {"topic": topic, "m.topic": [{"body": topic, "mimetype": "text/plain"}]}, state_key="")
        for invitee in invitees:
            await self._invite(creator, room_id, invitee, is_direct=bool(is_direct))
        result: dict[str, Any] = {"room_id": room_id}
        if alias is not None:
            result["room_alias"] = alias
        return result

    async def _member_content(self, user_id: str, membership: str) -> dict[str, Any]:
        content: dict[str, Any] = {"membership": membership}
        profile = await self._profiles(user_id)
        if profile:
            if isinstance(profile.get("displayname"), str):
                content["displayname"] = profile["displayname"]
            if isinstance(profile.get("avatar_url"), str):
                content["avatar_url"] = profile["avatar_url"]
        return content
