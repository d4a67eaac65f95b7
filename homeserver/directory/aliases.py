"""Room aliases: creating, resolving and deleting `#alias:server` names of rooms."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from homeserver.clock import Clock
from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.events.room_versions import get_room_version
from homeserver.identifiers import is_valid_room_alias, split_id
from homeserver.requester import Requester
from homeserver.rooms.power import RoomPower
from storage.stores.aliases import AliasExistsError, AliasStore
from storage.stores.events import EventStore


class RemoteAliases(Protocol):
    """Aliases of other servers (implemented over federation's /query/directory)."""

    async def query_alias(self, alias: str) -> dict[str, Any]:
        """`{"room_id", "servers"}`; MatrixError 404 when unknown there, 502 when unreachable."""
        ...


class AliasService:
    def __init__(self, server_name: str, aliases: AliasStore, events: EventStore, clock: Clock, is_admin, *,
                 remote: RemoteAliases | None = None,
                 create_checks: Sequence[Callable[[Requester, str], None]] = (),
                 unknown_alias_resolvers: Sequence[Callable[[str], Awaitable[bool]]] = ()):
        self._server_name = server_name
        # None: federation is off, and other servers' aliases are not found.
        self._remote = remote
        self._aliases = aliases
        self._events = events
        self._clock = clock
        self._is_admin = is_admin
        # `check(requester, alias)` raises to refuse creating an alias (application services' namespaces).
        self._create_checks = tuple(create_checks)
        # `resolver(alias)` for unknown local aliases (an application service may create them); True if it did.
        self._unknown_resolvers = tuple(unknown_alias_resolvers)

    def _parse(self, alias: str) -> str:
        if not is_valid_room_alias(alias):
            raise invalid_param(f"roomAlias: {alias!r} is not a valid room alias")
        return split_id(alias, "#")[1]

    async def resolve(self, alias: str) -> dict[str, Any]:
        server = self._parse(alias)
        if server != self._server_name:
            if self._remote is None:
                raise not_found(f"Room alias {alias} not found: federation is disabled")
            return await self._remote.query_alias(alias)
        found = await self._aliases.get_alias(alias)
        for resolver in self._unknown_resolvers:
            if found is None and await resolver(alias):
                found = await self._aliases.get_alias(alias)
        if found is None:
            raise not_found(f"Room alias {alias} not found")
        return {"room_id": found["room_id"], "servers": [self._server_name]}

    async def create(self, requester: Requester, alias: str, body: dict[str, Any]) -> None:
        if self._parse(alias) != self._server_name:
            raise invalid_param("roomAlias: you can only create aliases on this server")
        for check in self._create_checks:
            check(requester, alias)
        room_id = body.get("room_id")
        if not isinstance(room_id, str) or not room_id.startswith("!"):
            raise invalid_param("room_id: must be a room ID")
        if await self._events.get_room_version_id(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        try:
            await self._aliases.create_alias(alias, room_id, requester.user_id, self._clock.time_ms())
        except AliasExistsError:
            raise MatrixError(409, "M_UNKNOWN", f"Room alias {alias} already exists") from None

    async def delete(self, requester: Requester, alias: str) -> None:
        self._parse(alias)
        found = await self._aliases.get_alias(alias)
        if found is None:
            raise not_found(f"Room alias {alias} not found")
        if found["creator"] != requester.user_id and not await self._is_admin(requester.user_id) \
                and not await self._may_set_canonical_alias(requester.user_id, found["room_id"]):
            raise forbidden("You may not delete this alias")
        await self._aliases.delete_alias(alias)

    async def _may_set_canonical_alias(self, user_id: str, room_id: str) -> bool:
        version = await self._events.get_room_version_id(room_id)
        if version is None:
            return False
        state = await self._events.get_current_state_ids(room_id)
        power = await RoomPower.load(self._events, state, get_room_version(version))
        return power.may_send_state(user_id, "m.room.canonical_alias")

    async def check_canonical_alias(self, room_id: str, sender: str, event_type: str, content: Mapping[str, Any],
                                    state_key: str | None) -> None:
        """Send check: aliases newly named by an m.room.canonical_alias event must point at the room.

        Aliases the current event already names are not checked again, so re-sending (or trimming)
        an older event still works after an alias moved. Remote aliases cannot be resolved yet
        and are accepted.
        """
        if event_type != "m.room.canonical_alias" or state_key != "":
            return
        alias = content.get("alias")
        alt_aliases = content.get("alt_aliases")
        if alias is not None and not isinstance(alias, str):
            raise invalid_param("alias: must be a string")
        if alt_aliases is not None and (not isinstance(alt_aliases, list)
                                        or not all(isinstance(a, str) for a in alt_aliases)):
            raise invalid_param("alt_aliases: must be a list of strings")
        current_id = await self._events.get_current_state_event_id(room_id, "m.room.canonical_alias", "")
        current = await self._events.get_event(current_id) if current_id else None
        known: set[str] = set()
        if current is not None:
            if isinstance(current.content.get("alias"), str):
                known.add(current.content["alias"])
            if isinstance(current.content.get("alt_aliases"), list):
                known.update(a for a in current.content["alt_aliases"] if isinstance(a, str))
        for field, name in [("alias", alias), *(("alt_aliases", a) for a in alt_aliases or [])]:
            if not name or name in known:
                continue
            try:
                server = self._parse(name)
            except MatrixError:
                raise invalid_param(f"{field}: {name!r} is not a valid room alias") from None
            if server != self._server_name:
                continue
            found = await self._aliases.get_alias(name)
            if found is None or found["room_id"] != room_id:
                raise MatrixError(400, "M_BAD_ALIAS", f"{field}: room alias {name} does not point to this room")

    async def may_manage_directory(self, user_id: str, room_id: str) -> bool:
        """Whether the user may publish the room: a server admin, or a member allowed to set its aliases."""
        if await self._is_admin(user_id):
            return True
        membership, _ = await self._events.get_membership(room_id, user_id)
        return membership == "join" and await self._may_set_canonical_alias(user_id, room_id)

    async def aliases_of_room(self, requester: Requester, room_id: str) -> dict[str, Any]:
        membership, _ = await self._events.get_membership(room_id, requester.user_id)
        # Server admins may look at any room's aliases, as Synapse lets them (admin tools rely on it).
        if membership != "join" and not await self._is_admin(requester.user_id):
            if await self._events.get_room_version_id(room_id) is None:
                raise not_found(f"Unknown room {room_id}")
            raise forbidden("You are not joined to this room")
        return {"aliases": await self._aliases.get_aliases_for_room(room_id)}
