"""Room upgrades: a new room of another version that continues an old one.

Following the spec (and Synapse's order): the new room is created with the old room's
important state and a `predecessor`, the old room gets an `m.room.tombstone` pointing
at the new one, the old room's power levels are tightened so that only moderators can
still talk or invite, and local aliases move to the new room.

The copied state is Synapse's: join rules, name, topic, history visibility, guest access,
avatar, encryption, server ACL and power levels, plus a space's children; where the old room
lacks join rules, history visibility or guest access, the new one gets the `private_chat`
preset's values (`invite`, `shared`, `can_join`), as in Synapse, so a client waiting for that
state in the new room sees it. Bans carry over. Afterwards the upgraded callbacks run with
(old room, new room, local users who were joined), so per-user state (tags, `m.direct`,
room push rules) and the directory entry follow the room.
"""

from __future__ import annotations

from typing import Any

from homeserver.clock import Clock
from homeserver.errors import MatrixError, forbidden
from homeserver.events.room_versions import RoomVersion
from homeserver.rooms.creation import ProfileLookup, random_room_id
from homeserver.rooms.power import RoomPower
from homeserver.rooms.sender import RoomEventSender, room_version_or_error
from homeserver.streams.bus import StreamBus
from homeserver.streams.updates import RoomUpgraded
from storage.stores.aliases import AliasStore
from storage.stores.events import EventStore

# State copied from the old room into the new one (power levels and the canonical alias are
# sent separately, around these).
COPIED_STATE = (
    "m.room.join_rules",
    "m.room.name",
    "m.room.topic",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
)
# What the new room gets when the old one lacks the state: the private_chat preset's values.
PRESET_DEFAULTS = {
    "m.room.join_rules": {"join_rule": "invite"},
    "m.room.history_visibility": {"history_visibility": "shared"},
    "m.room.guest_access": {"guest_access": "can_join"},
}

# (old_room_id, new_room_id, local users joined to the old room), after the upgrade committed.


class RoomUpgrader:
    def __init__(self, sender: RoomEventSender, events: EventStore, aliases: AliasStore, bus: StreamBus,
                 clock: Clock, profiles: ProfileLookup):
        self._sender = sender
        self._events = events
        self._aliases = aliases
        self._clock = clock
        self._profiles = profiles
        self._bus = bus

    async def upgrade(self, user_id: str, old_room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /rooms/{roomId}/upgrade; returns `{"replacement_room": ...}`."""
        new_version = room_version_or_error(body.get("new_version"))
        old_version = await self._sender.room_version(old_room_id)
        membership, _ = await self._events.get_membership(old_room_id, user_id)
        if membership != "join":
            raise forbidden("You are not joined to this room")
        state_ids = await self._events.get_current_state_ids(old_room_id)
        state = await self._events.get_events(state_ids.values())
        by_key = {k: state[eid] for k, eid in state_ids.items() if eid in state}
        pl_event = by_key.get(("m.room.power_levels", ""))
        pl_content = dict(pl_event.content) if pl_event is not None else {}
        if not RoomPower(by_key, old_version).may_send_state(user_id, "m.room.tombstone"):
            raise forbidden("You may not upgrade this room")

        new_room_id = await self._create_successor(user_id, old_room_id, new_version, by_key, pl_content)
        await self._sender.send(old_room_id, user_id, "m.room.tombstone",
                                {"body": "This room has been replaced", "replacement_room": new_room_id},
                                state_key="")
        await self._restrict_old_room(user_id, old_room_id, pl_content)
        await self._move_aliases(user_id, old_room_id, new_room_id, by_key)
        server = ":" + user_id.split(":", 1)[1]
        local_members = [member for member in await self._events.get_members(old_room_id)
                         if member.endswith(server)]
        await self._bus.publish(RoomUpgraded(old_room_id, new_room_id, tuple(local_members)))
        return {"replacement_room": new_room_id}

    async def _create_successor(self, user_id: str, old_room_id: str, version: RoomVersion,
                                by_key: dict[tuple[str, str], Any], pl_content: dict[str, Any]) -> str:
        old_create = by_key.get(("m.room.create", ""))
        create_content: dict[str, Any] = {"predecessor": {"room_id": old_room_id}}
        if old_create is not None and "m.federate" in old_create.content:
            create_content["m.federate"] = old_create.content["m.federate"]
        if old_create is not None and "type" in old_create.content:
            create_content["type"] = old_create.content["type"]
        if not version.implicit_room_creator:
            create_content["creator"] = user_id
        create_content["room_version"] = version.identifier
        server_name = user_id.split(":", 1)[1]
        room_id = None if version.room_id_from_create_event else random_room_id(server_name)
        create = await self._sender.create_room(room_id, version, user_id, create_content)
        new_room_id = create.room_id
        join_content: dict[str, Any] = {"membership": "join"}
        profile = await self._profiles(user_id)
        for key in ("displayname", "avatar_url"):
            if profile and isinstance(profile.get(key), str):
                join_content[key] = profile[key]
        await self._sender.send(new_room_id, user_id, "m.room.member", join_content, state_key=user_id)

        # The upgrading user needs enough power to send the copied state, so they are raised
        # first and the old room's levels are put back at the end (creators are implicit from v12).
        final_pl = dict(pl_content) if pl_content else {}
        final_users = dict(final_pl.get("users", {}))
        if version.creator_power_infinite:
            final_users.pop(user_id, None)
        final_pl["users"] = final_users
        raised_pl = final_pl
        if not version.creator_power_infinite:
            events = final_pl.get("events")
            levels = [*final_users.values(), final_pl.get("state_default"), final_pl.get("ban"),
                      *(events.values() if isinstance(events, dict) else ())]
            needed = max([100, *[v for v in levels if isinstance(v, int) and not isinstance(v, bool)]])
            raised_pl = {**final_pl, "users": {**final_users, user_id: needed}}
        await self._sender.send(new_room_id, user_id, "m.room.power_levels", raised_pl, state_key="")
        for event_type in COPIED_STATE:
            event = by_key.get((event_type, ""))
            content = dict(event.content) if event is not None else PRESET_DEFAULTS.get(event_type)
            if content is not None:
                await self._sender.send(new_room_id, user_id, event_type, content, state_key="")
        if create_content.get("type") == "m.space":
            for (event_type, state_key), event in by_key.items():
                if event_type == "m.space.child" and event.content:
                    await self._sender.send(new_room_id, user_id, event_type, dict(event.content),
                                            state_key=state_key)
        for (event_type, state_key), event in by_key.items():
            if event_type == "m.room.member" and event.content.get("membership") == "ban":
                ban = {"membership": "ban"}
                if isinstance(event.content.get("reason"), str):
                    ban["reason"] = event.content["reason"]
                await self._sender.send(new_room_id, user_id, event_type, ban, state_key=state_key)
        if raised_pl is not final_pl:
            await self._sender.send(new_room_id, user_id, "m.room.power_levels", final_pl, state_key="",
                                    skip_unchanged_state=True)
        return new_room_id

    async def _restrict_old_room(self, user_id: str, room_id: str, pl_content: dict[str, Any]) -> None:
        users_default = pl_content.get("users_default", 0)
        restricted = max(50, (users_default if isinstance(users_default, int) else 0) + 1)
        new_pl = dict(pl_content)
        changed = False
        for key in ("events_default", "invite"):
            current = new_pl.get(key, 0)
            if not isinstance(current, int) or current < restricted:
                new_pl[key] = restricted
                changed = True
        if changed:
            try:
                await self._sender.send(room_id, user_id, "m.room.power_levels", new_pl, state_key="")
            except MatrixError:
                pass  # the user may tombstone but not change power levels: the old room stays open

    async def _move_aliases(self, user_id: str, old_room_id: str, new_room_id: str,
                            by_key: dict[tuple[str, str], Any]) -> None:
        for alias in await self._aliases.get_aliases_for_room(old_room_id):
            found = await self._aliases.get_alias(alias)
            await self._aliases.delete_alias(alias)
            await self._aliases.create_alias(alias, new_room_id, found["creator"] if found else user_id,
                                             self._clock.time_ms())
        canonical = by_key.get(("m.room.canonical_alias", ""))
        if canonical is not None and canonical.content:
            await self._sender.send(new_room_id, user_id, "m.room.canonical_alias", dict(canonical.content),
                                    state_key="")
            try:
                await self._sender.send(old_room_id, user_id, "m.room.canonical_alias", {}, state_key="")
            except MatrixError:
                pass
