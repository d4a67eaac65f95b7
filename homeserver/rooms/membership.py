"""Changing memberships: join, invite, leave, kick, ban, unban, knock, forget."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from homeserver.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.events.event import Event
from homeserver.identifiers import is_valid_room_id, is_valid_user_id, parse_server_name, split_id
from homeserver.rooms.creation import ProfileLookup
from homeserver.rooms.sender import RoomEventSender
from homeserver.streams.updates import EventPersisted, ProfileChanged
from storage.stores.aliases import AliasStore
from storage.stores.events import EventStore

logger = logging.getLogger(__name__)

MAX_REASON_LENGTH = 1024
GUEST_ACCESS = "m.room.guest_access"
CAN_JOIN = "can_join"


StateIds = Mapping[tuple[str, str], str]


class RemoteRooms(Protocol):
    """Membership in rooms this server is not in, and users of other servers (implemented over
    federation: make_join/send_join, make_leave/send_leave, make_knock/send_knock, invite v2).
    Each raises MatrixError with a client-facing code when it cannot be done."""

    async def resolve_alias(self, alias: str) -> tuple[str, list[str]]:
        """(room ID, servers to join through) for another server's alias."""
        ...

    async def join(self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any]) -> Event:
        """Join through the first of `servers` that lets us; the join and the room's state are persisted."""
        ...

    async def leave(self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any]) -> Event:
        """Leave (reject an invite, withdraw a knock) a room this server is not in."""
        ...

    async def knock(self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any]) -> Event:
        """Knock on a room this server is not in; the knock is persisted."""
        ...

    async def invite(self, event: Event, state: StateIds) -> Event:
        """The invite of another server's user, countersigned by that server (`state`: the room's)."""
        ...


class MembershipService:
    def __init__(self, server_name: str, sender: RoomEventSender, events: EventStore, aliases: AliasStore,
                 profiles: ProfileLookup, *, remote: RemoteRooms | None = None,
                 unknown_id_resolvers: Sequence[Callable[[str], Awaitable[bool]]] = ()):
        self._server_name = server_name
        self._sender = sender
        self._events = events
        self._aliases = aliases
        self._profiles = profiles
        # None: federation is off; rooms and users of other servers are refused with a clear error.
        self._remote = remote
        # `resolver(id)` for unknown local aliases and invitees (application services may create them).
        self._unknown_resolvers = tuple(unknown_id_resolvers)

    async def _ask_resolvers(self, identifier: str) -> bool:
        for resolver in self._unknown_resolvers:
            if await resolver(identifier):
                return True
        return False

    async def resolve_room(self, room_id_or_alias: str) -> str:
        """A room ID from `!room` or `#alias`; 404 for unknown aliases and rooms."""
        return (await self.resolve_room_and_servers(room_id_or_alias))[0]

    async def resolve_room_and_servers(self, room_id_or_alias: str) -> tuple[str, list[str]]:
        """(room ID, servers an alias names) from `!room` or `#alias`; 404 for unknown aliases."""
        if room_id_or_alias.startswith("#") and self._remote is not None:
            try:
                _, server = split_id(room_id_or_alias, "#")
            except ValueError:
                raise invalid_param(f"{room_id_or_alias!r} is not a valid alias") from None
            if server != self._server_name:
                return await self._remote.resolve_alias(room_id_or_alias)
        return await self._resolve_local(room_id_or_alias), []

    async def _resolve_local(self, room_id_or_alias: str) -> str:
        if room_id_or_alias.startswith("#"):
            found = await self._aliases.get_alias(room_id_or_alias)
            if found is None and await self._ask_resolvers(room_id_or_alias):
                found = await self._aliases.get_alias(room_id_or_alias)
            if found is None:
                try:
                    _, server = split_id(room_id_or_alias, "#")
                except ValueError:
                    raise invalid_param(f"{room_id_or_alias!r} is not a valid alias") from None
                if server != self._server_name:
                    raise not_found(f"Room alias {room_id_or_alias} not found: federation is disabled")
                raise not_found(f"Room alias {room_id_or_alias} not found")
            return found["room_id"]
        if not room_id_or_alias.startswith("!"):
            raise invalid_param(f"{room_id_or_alias!r} is neither a room ID nor an alias")
        return room_id_or_alias

    async def _content(self, user_id: str, membership: str, reason: Any, extra: dict[str, Any] | None = None,
                       with_profile: bool = True) -> dict[str, Any]:
        content: dict[str, Any] = {"membership": membership}
        if with_profile:
            profile = await self._profiles(user_id)
            if profile:
                for key in ("displayname", "avatar_url"):
                    if isinstance(profile.get(key), str):
                        content[key] = profile[key]
        if reason is not None:
            if not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH:
                raise bad_json(f"reason: must be a string of at most {MAX_REASON_LENGTH} characters")
            content["reason"] = reason
        if extra:
            content.update(extra)
        return content

    async def _require_room(self, room_id: str) -> None:
        if await self._events.get_room_version_id(room_id) is None:
            raise not_found(f"Unknown room {room_id}")

    def is_local(self, user_id: str) -> bool:
        """Whether a (well-formed) user ID belongs to this server."""
        try:
            return is_valid_user_id(user_id) and split_id(user_id, "@")[1] == self._server_name
        except ValueError:
            return False

    def _require_local_target(self, user_id: Any, field: str = "user_id") -> str:
        if not isinstance(user_id, str) or not is_valid_user_id(user_id):
            raise invalid_param(f"{field}: must be a valid user ID")
        return user_id

    async def _server_in_room(self, room_id: str) -> bool:
        """Whether a user of this server is joined to the room (so its state here is live)."""
        if await self._events.get_room_version_id(room_id) is None:
            return False
        suffix = f":{self._server_name}"
        return any(member.endswith(suffix) for member in await self._events.get_members(room_id, ("join",)))

    async def _remote_servers(self, user_id: str, room_id: str, via: Sequence[str],
                              alias_servers: Sequence[str]) -> list[str]:
        """Servers to ask about a room this server is not in: the client's `via`, the alias's servers,
        the sender of an invite or knock answer we hold, and the room ID's own server."""
        servers: list[str] = []
        for server in (*via, *alias_servers):
            if server not in servers and server != self._server_name:
                servers.append(server)
        _, event_id = await self._events.get_membership(room_id, user_id)
        member = await self._events.get_event(event_id) if event_id else None
        if member is not None:
            for candidate in (member.sender, member.state_key or ""):
                try:
                    server = split_id(candidate, "@")[1]
                except ValueError:
                    continue
                if server not in servers and server != self._server_name:
                    servers.append(server)
        try:
            room_server = split_id(room_id, "!")[1]
        except ValueError:
            room_server = None  # room version 12 room IDs name no server
        if room_server and room_server not in servers and room_server != self._server_name:
            servers.append(room_server)
        return servers

    @staticmethod
    def check_via(via: Any) -> list[str]:
        """The `via`/`server_name` query values, each a valid server name (400 naming the field)."""
        servers = []
        for server in via or ():
            try:
                parse_server_name(server)
            except ValueError as e:
                raise invalid_param(f"via: {e}") from None
            servers.append(server)
        return servers

    async def join(self, user_id: str, room_id_or_alias: str, reason: Any = None,
                   txn: tuple[str, str, str] | None = None, *, is_guest: bool = False,
                   via: Sequence[str] = ()) -> Event:
        room_id, alias_servers = await self.resolve_room_and_servers(room_id_or_alias)
        if self._remote is not None and not await self._server_in_room(room_id):
            if not is_valid_room_id(room_id):
                raise invalid_param(f"{room_id!r} is not a valid room ID")
            servers = await self._remote_servers(user_id, room_id, self.check_via(via), alias_servers)
            if servers:
                if is_guest:
                    raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests may not join rooms on other servers")
                content = await self._content(user_id, "join", reason)
                return await self._remote.join(user_id, room_id, servers, content)
        await self._require_room(room_id)
        current, event_id = await self._events.get_membership(room_id, user_id)
        # Guests are a local concept, so this is checked here rather than by the auth rules;
        # `kind: guest` marks them for removal when the room stops allowing guests (as Synapse).
        extra = None
        if is_guest:
            if await self._guest_access(room_id) != CAN_JOIN:
                raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests may not join this room")
            extra = {"kind": "guest"}
        content = await self._content(user_id, "join", reason, extra)
        return await self._sender.send(room_id, user_id, "m.room.member", content, state_key=user_id, txn=txn)

    async def _guest_access(self, room_id: str) -> Any:
        event_id = await self._events.get_current_state_event_id(room_id, GUEST_ACCESS, "")
        event = await self._events.get_event(event_id) if event_id else None
        return event.content.get("guest_access") if event is not None else None

    async def on_event_persisted(self, update: EventPersisted) -> None:
        """After `m.room.guest_access` stops being `can_join`, make the room's local guests leave.

        The guests leave by their own member event, so no power level is needed (as Synapse).
        """
        event = update.event
        if event.type != GUEST_ACCESS or event.state_key != "" or event.content.get("guest_access") == CAN_JOIN:
            return
        if await self._guest_access(event.room_id) == CAN_JOIN:
            return  # changed back meanwhile
        state = await self._events.get_current_state_ids(event.room_id)
        member_ids = [eid for (etype, _), eid in state.items() if etype == "m.room.member"]
        for member in (await self._events.get_events(member_ids)).values():
            target = member.state_key
            if (member.content.get("kind") != "guest" or member.membership not in ("join", "invite")
                    or not isinstance(target, str) or not target.endswith(f":{self._server_name}")):
                continue
            try:
                await self._sender.send(event.room_id, target, "m.room.member", {"membership": "leave"},
                                        state_key=target)
            except MatrixError as e:
                logger.warning("Could not remove guest %s from %s: %s", target, event.room_id, e)

    async def invite(self, sender: str, room_id: str, target: Any, reason: Any = None, *,
                     is_direct: bool = False) -> Event:
        target = self._require_local_target(target)
        await self._require_room(room_id)
        extra = {"is_direct": True} if is_direct else None
        _, server = split_id(target, "@")
        remote = self._remote
        if server != self._server_name:
            if remote is None:
                raise forbidden("Inviting users of other servers needs federation, which is off")
        else:
            await self._ask_resolvers(target)
        current, _ = await self._events.get_membership(room_id, target)
        if current in ("join", "ban"):
            raise forbidden(f"{target} is already {'in' if current == 'join' else 'banned from'} the room")
        if server != self._server_name:
            # The invitee's server must countersign the invite before it is persisted (invite v2).
            assert remote is not None
            content = await self._content(target, "invite", reason, extra, with_profile=False)
            return await self._sender.send(room_id, sender, "m.room.member", content, state_key=target,
                                           countersign=remote.invite)
        content = await self._content(target, "invite", reason, extra)
        return await self._sender.send(room_id, sender, "m.room.member", content, state_key=target)

    async def leave(self, user_id: str, room_id: str, reason: Any = None) -> Event:
        await self._require_room(room_id)
        current, _ = await self._events.get_membership(room_id, user_id)
        if current is None or current == "leave":
            raise forbidden("You are not in this room")
        content = await self._content(user_id, "leave", reason, with_profile=False)
        if (self._remote is not None and current in ("invite", "knock")
                and not await self._server_in_room(room_id)):
            # Rejecting an invite or withdrawing a knock in a room this server is not in: the
            # leave is made and sent by a server in the room (make_leave/send_leave).
            servers = await self._remote_servers(user_id, room_id, (), ())
            if servers:
                return await self._remote.leave(user_id, room_id, servers, content)
        return await self._sender.send(room_id, user_id, "m.room.member", content, state_key=user_id)

    async def leave_all_rooms(self, user_id: str) -> None:
        """Leave every joined room, reject every invite and withdraw every knock (deactivation)."""
        rooms = await self._events.get_rooms_for_user(user_id, ("join", "invite", "knock"))
        for room_id in sorted(rooms):
            try:
                if rooms[room_id] != "join" and self._remote is not None and not await self._server_in_room(room_id):
                    await self.leave(user_id, room_id)  # an invite or knock of another server's room
                    continue
                await self._sender.send(room_id, user_id, "m.room.member", {"membership": "leave"},
                                        state_key=user_id)
            except MatrixError as e:
                logger.warning("Could not make %s leave %s: %s", user_id, room_id, e)

    async def kick(self, sender: str, room_id: str, target: Any, reason: Any = None) -> Event:
        target = self._require_local_target(target)
        await self._require_room(room_id)
        current, _ = await self._events.get_membership(room_id, target)
        if current not in ("join", "invite", "knock"):
            raise forbidden(f"{target} is not in the room")
        content = await self._content(target, "leave", reason, with_profile=False)
        return await self._sender.send(room_id, sender, "m.room.member", content, state_key=target)

    async def ban(self, sender: str, room_id: str, target: Any, reason: Any = None) -> Event:
        target = self._require_local_target(target)
        await self._require_room(room_id)
        content = await self._content(target, "ban", reason, with_profile=False)
        return await self._sender.send(room_id, sender, "m.room.member", content, state_key=target)

    async def unban(self, sender: str, room_id: str, target: Any, reason: Any = None) -> Event:
        target = self._require_local_target(target)
        await self._require_room(room_id)
        current, _ = await self._events.get_membership(room_id, target)
        if current != "ban":
            raise forbidden(f"{target} is not banned")
        content = await self._content(target, "leave", reason, with_profile=False)
        return await self._sender.send(room_id, sender, "m.room.member", content, state_key=target)

    async def knock(self, user_id: str, room_id_or_alias: str, reason: Any = None, *,
                    via: Sequence[str] = ()) -> Event:
        room_id, alias_servers = await self.resolve_room_and_servers(room_id_or_alias)
        if self._remote is not None and not await self._server_in_room(room_id):
            if not is_valid_room_id(room_id):
                raise invalid_param(f"{room_id!r} is not a valid room ID")
            servers = await self._remote_servers(user_id, room_id, self.check_via(via), alias_servers)
            if servers:
                content = await self._content(user_id, "knock", reason)
                return await self._remote.knock(user_id, room_id, servers, content)
        await self._require_room(room_id)
        content = await self._content(user_id, "knock", reason)
        return await self._sender.send(room_id, user_id, "m.room.member", content, state_key=user_id)

    async def on_profile_changed(self, update: ProfileChanged) -> None:
        """Send a fresh join event carrying the new profile into every room the user is joined to."""
        user_id, displayname, avatar_url = update.user_id, update.displayname, update.avatar_url
        rooms = await self._events.get_rooms_for_user(user_id, ("join",))
        for room_id in sorted(rooms):
            _, event_id = await self._events.get_membership(room_id, user_id)
            current = await self._events.get_event(event_id) if event_id else None
            content = dict(current.content) if current is not None else {"membership": "join"}
            for key, value in (("displayname", displayname), ("avatar_url", avatar_url)):
                if isinstance(value, str):
                    content[key] = value
                else:
                    content.pop(key, None)
            content.pop("reason", None)
            try:
                await self._sender.send(room_id, user_id, "m.room.member", content, state_key=user_id,
                                        skip_unchanged_state=True)
            except MatrixError as e:
                # One room refusing (e.g. power levels) must not stop the others.
                logger.warning("Could not update %s's member event in %s: %s", user_id, room_id, e)

    async def forget(self, user_id: str, room_id: str) -> None:
        current, _ = await self._events.get_membership(room_id, user_id)
        if current is None:
            if await self._events.get_room_version_id(room_id) is None:
                raise not_found(f"Unknown room {room_id}")
            raise MatrixError(400, "M_UNKNOWN", "You were never in this room")
        if current in ("join", "invite", "knock"):
            raise MatrixError(400, "M_UNKNOWN", "Leave the room before forgetting it")
        await self._events.forget_room(user_id, room_id)
