"""The room directory: publishing rooms (/directory/list/room) and listing them (/publicRooms)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from homeserver.requester import Requester
from homeserver.client_input import MAX_SAFE_INT
from homeserver.errors import bad_json, forbidden, invalid_param, not_found
from homeserver.identifiers import parse_server_name
from homeserver.streams.updates import RoomUpgraded
from storage.stores.directory import DirectoryStore
from storage.stores.events import EventStore

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
VISIBILITIES = ("public", "private")

# user_id, room_id -> whether the user may change the room's directory entries.
RoomManagerCheck = Callable[[str, str], Awaitable[bool]]


@dataclass(frozen=True)
class PublicRoomsQuery:
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    search_term: str | None = None
    # None: any type; otherwise the allowed `room_type`s, None in it meaning "no type".
    room_types: frozenset[str | None] | None = None
    # An application service network's list, as (appservice_id, network_id); or every list.
    network: tuple[str, str] | None = None
    include_all_networks: bool = False


def parse_network(third_party_instance_id: Any, include_all_networks: Any) -> dict[str, Any]:
    """The network fields of a /publicRooms request; 400 naming the field when malformed."""
    if not isinstance(include_all_networks, bool):
        raise invalid_param("include_all_networks: must be true or false")
    if third_party_instance_id is None:
        return {"network": None, "include_all_networks": include_all_networks}
    if include_all_networks:
        raise invalid_param("third_party_instance_id: cannot be combined with include_all_networks")
    if not isinstance(third_party_instance_id, str) or "|" not in third_party_instance_id:
        raise invalid_param("third_party_instance_id: not an instance_id from /thirdparty/protocols")
    appservice_id, _, network_id = third_party_instance_id.partition("|")
    return {"network": (appservice_id, network_id), "include_all_networks": False}


def parse_since(since: Any) -> int:
    if since is None:
        return 0
    if (not isinstance(since, str) or not since.startswith("p") or not since[1:].isascii()
            or not since[1:].isdigit() or int(since[1:]) > MAX_SAFE_INT):
        raise invalid_param("since: not a token from a previous /publicRooms response")
    return int(since[1:])


def parse_limit(limit: Any) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise invalid_param("limit: must be a non-negative integer")
    return min(limit, MAX_LIMIT)


def parse_public_rooms_body(body: Mapping[str, Any]) -> PublicRoomsQuery:
    """The query of a POST /publicRooms body; 400 naming the field when malformed."""
    search_filter = body.get("filter")
    if search_filter is None:
        search_filter = {}
    if not isinstance(search_filter, Mapping):
        raise bad_json("filter: must be an object")
    term = search_filter.get("generic_search_term")
    if term is not None and not isinstance(term, str):
        raise bad_json("filter.generic_search_term: must be a string")
    room_types = search_filter.get("room_types")
    if room_types is not None and (not isinstance(room_types, list)
                                   or not all(t is None or isinstance(t, str) for t in room_types)):
        raise bad_json("filter.room_types: must be a list of strings or nulls")
    return PublicRoomsQuery(limit=parse_limit(body.get("limit")), offset=parse_since(body.get("since")),
                            search_term=term.strip() or None if term else None,
                            room_types=frozenset(room_types) if room_types else None,
                            **parse_network(body.get("third_party_instance_id"),
                                            body.get("include_all_networks", False)))


def room_entry(room_id: str, joined: int, state: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One PublishedRoomsChunk entry from the room's directory state contents, keyed by type."""
    def text(event_type: str, key: str) -> str | None:
        value = state.get(event_type, {}).get(key)
        return value if isinstance(value, str) and value else None

    entry: dict[str, Any] = {
        "room_id": room_id,
        "num_joined_members": joined,
        "world_readable": text("m.room.history_visibility", "history_visibility") == "world_readable",
        "guest_can_join": text("m.room.guest_access", "guest_access") == "can_join",
        "join_rule": text("m.room.join_rules", "join_rule") or "public",
    }
    for field, event_type, key in (("name", "m.room.name", "name"), ("topic", "m.room.topic", "topic"),
                                   ("canonical_alias", "m.room.canonical_alias", "alias"),
                                   ("avatar_url", "m.room.avatar", "url"), ("room_type", "m.room.create", "type")):
        value = text(event_type, key)
        if value is not None:
            entry[field] = value
    return entry


def matches(entry: Mapping[str, Any], query: PublicRoomsQuery) -> bool:
    if query.room_types is not None and entry.get("room_type") not in query.room_types:
        return False
    if query.search_term:
        needle = query.search_term.casefold()
        return any(needle in str(entry.get(f, "")).casefold() for f in ("name", "topic", "canonical_alias"))
    return True


def page(entries: list[dict[str, Any]], query: PublicRoomsQuery) -> dict[str, Any]:
    """The /publicRooms response for matching entries, largest rooms first."""
    ordered = sorted(entries, key=lambda e: (-e["num_joined_members"], e["room_id"]))
    chunk = ordered[query.offset:query.offset + query.limit]
    out: dict[str, Any] = {"chunk": chunk, "total_room_count_estimate": len(ordered)}
    if query.offset + query.limit < len(ordered):
        out["next_batch"] = f"p{query.offset + query.limit}"
    if query.offset > 0:
        out["prev_batch"] = f"p{max(0, query.offset - query.limit)}"
    return out


class RemoteRoomDirectory(Protocol):
    """Other servers' room directories (implemented over federation's /publicRooms)."""

    async def public_rooms(self, server: str, params: Mapping[str, Any] | None,
                           body: Mapping[str, Any] | None) -> dict[str, Any]:
        """The server's answer to GET (`params`) or POST (`body`) /publicRooms; MatrixError on failure."""
        ...


class RoomDirectoryService:
    def __init__(self, server_name: str, store: DirectoryStore, events: EventStore, may_manage: RoomManagerCheck,
                 *, remote: RemoteRoomDirectory | None = None):
        self._server_name = server_name
        # None: federation is off, and other servers' directories are not available.
        self._remote = remote
        self._store = store
        self._events = events
        self._may_manage = may_manage

    async def get_visibility(self, room_id: str) -> dict[str, str]:
        public = await self._store.get_room_visibility(room_id)
        if public is None:
            raise not_found(f"Unknown room {room_id}")
        return {"visibility": "public" if public else "private"}

    async def set_visibility(self, requester: Requester, room_id: str, body: Mapping[str, Any]) -> None:
        """Publish or unpublish a room; only its admins (or a server admin) may."""
        visibility = body.get("visibility", "public")
        if visibility not in VISIBILITIES:
            raise invalid_param("visibility: must be 'public' or 'private'")
        if await self._store.get_room_visibility(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        if not await self._may_manage(requester.user_id, room_id):
            raise forbidden("You may not change the directory entry of this room")
        await self._store.set_room_visibility(room_id, visibility == "public")

    async def on_room_upgraded(self, update: RoomUpgraded) -> None:
        """A published room's directory entry moves to its replacement (as in Synapse)."""
        if await self._store.get_room_visibility(update.old_room_id):
            await self._store.set_room_visibility(update.old_room_id, False)
            await self._store.set_room_visibility(update.new_room_id, True)

    async def set_network_visibility(self, requester: Requester, network_id: str, room_id: str,
                                     body: Mapping[str, Any]) -> None:
        """Publish or unpublish a room in the directory of the requesting appservice's network."""
        if requester.app_service_id is None:
            raise forbidden("Only application services can edit a network's room list")
        visibility = body.get("visibility", "public")
        if visibility not in VISIBILITIES:
            raise invalid_param("visibility: must be 'public' or 'private'")
        if await self._store.get_room_visibility(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        await self._store.set_network_room_visibility(requester.app_service_id, network_id, room_id,
                                                      visibility == "public")

    def is_other_server(self, server: str | None) -> bool:
        """Whether a `server` parameter names another server than this one (400 when malformed)."""
        if server is None or server == self._server_name:
            return False
        try:
            parse_server_name(server)
        except ValueError as e:
            raise invalid_param(f"server: {e}") from None
        return True

    async def remote_public_rooms(self, server: str, params: Mapping[str, Any] | None = None,
                                  body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Another server's directory, asked over federation with the client's GET `params` or POST `body`."""
        if self._remote is None:
            raise not_found(f"server: listing the rooms of {server} is not available")
        return await self._remote.public_rooms(server, params, body)

    async def public_rooms(self, query: PublicRoomsQuery, server: str | None = None) -> dict[str, Any]:
        """A page of the rooms published on this server."""
        if server is not None and server != self._server_name:
            raise not_found(f"server: listing the rooms of {server} is not available")
        rooms = await self._store.get_public_rooms(query.network, all_networks=query.include_all_networks)
        state_ids = await self._store.get_directory_state([room_id for room_id, _ in rooms])
        loaded = await self._events.get_events(eid for ids in state_ids.values() for eid in ids.values())
        entries = []
        for room_id, joined in rooms:
            state = {t: loaded[eid].content for t, eid in state_ids.get(room_id, {}).items() if eid in loaded}
            entry = room_entry(room_id, joined, state)
            if matches(entry, query):
                entries.append(entry)
        return page(entries, query)
