"""Space hierarchy (/rooms/{roomId}/hierarchy): a depth-first walk of `m.space.child` links, and the
federation view of one space (/_matrix/federation/v1/hierarchy) other servers walk ours with.

Rooms this server knows are summarised from their state; rooms it does not know are asked of the servers
the `via` of the link names (`RemoteSpaces`, federation's side), and filtered for the requester by the
same preview rules. Pagination keeps the rest of the walk in memory under an opaque token, as the walk's
queue depends on every room visited before it and cannot be rebuilt cheaply from a position alone.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from homeserver.directory.public_rooms import room_entry
from homeserver.errors import forbidden, invalid_param, not_found
from homeserver.event_auth.constants import BAN, INVITE, JOIN, KNOCK, KNOCK_RESTRICTED, PUBLIC, RESTRICTED
from homeserver.events.event import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.requester import Requester
from storage.stores.events import EventStore

SPACE_CHILD = "m.space.child"
SPACE_ROOM_TYPE = "m.space"
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
DEFAULT_MAX_DEPTH = 25
MAX_ORDER_LENGTH = 50
MEGOLM = "m.megolm.v1.aes-sha2"
# Walks left unfinished are dropped after this long, and the oldest beyond MAX_SESSIONS.
SESSION_TTL_SECONDS = 600.0
MAX_SESSIONS = 10_000

# The state a summary is built from (type -> state key "").
_SUMMARY_TYPES = ("m.room.create", "m.room.name", "m.room.topic", "m.room.canonical_alias", "m.room.avatar",
                  "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access", "m.room.encryption")


# --- pure rules ----------------------------------------------------------------------------------------


def valid_order(order: Any) -> str | None:
    """The child's `order` when valid (printable ASCII, at most 50 characters), else None."""
    if (isinstance(order, str) and 0 < len(order) <= MAX_ORDER_LENGTH
            and all("\x20" <= ch <= "\x7e" for ch in order)):
        return order
    return None


def valid_via(content: Mapping[str, Any]) -> bool:
    """A child link counts only with a non-empty `via` list of server names."""
    via = content.get("via")
    return isinstance(via, list) and bool(via) and all(isinstance(s, str) and s for s in via)


def link_sort_key(content: Mapping[str, Any], origin_server_ts: Any, state_key: str) -> tuple[int, str, int, str]:
    """Children with a valid `order` first (by it), then by the link's timestamp, then by room ID."""
    order = valid_order(content.get("order"))
    ts = origin_server_ts if isinstance(origin_server_ts, int) and not isinstance(origin_server_ts, bool) else 0
    return (0 if order is not None else 1, order or "", ts, state_key)


def child_sort_key(event: Event) -> tuple[int, str, int, str]:
    return link_sort_key(event.content, event.origin_server_ts, event.state_key or "")


def ordered_children(events: Iterable[Event], *, suggested_only: bool) -> list[Event]:
    """The space's valid child links in the spec's order, keeping only suggested ones if asked."""
    links = [e for e in events
             if e.type == SPACE_CHILD and isinstance(e.state_key, str) and e.state_key.startswith("!")
             and valid_via(e.content) and (not suggested_only or e.content.get("suggested") is True)]
    return sorted(links, key=child_sort_key)


def ordered_child_states(entries: Iterable[Any], *, suggested_only: bool) -> list[dict[str, Any]]:
    """`ordered_children` for the stripped `children_state` another server sent: valid links, in order."""
    links = [e for e in entries
             if isinstance(e, Mapping) and e.get("type") == SPACE_CHILD and isinstance(e.get("state_key"), str)
             and e["state_key"].startswith("!") and isinstance(e.get("content"), Mapping)
             and valid_via(e["content"]) and (not suggested_only or e["content"].get("suggested") is True)]
    links.sort(key=lambda e: link_sort_key(e["content"], e.get("origin_server_ts"), e["state_key"]))
    return [dict(e) for e in links]


def may_preview_summary(summary: Mapping[str, Any], user_rooms: Callable[[], set[str]]) -> bool:
    """Whether a user may see a room summarised by another server (we hold none of its state): public,
    knockable or world-readable rooms, and restricted ones whose allowed rooms the user has joined."""
    if summary.get("world_readable") is True:
        return True
    rule = summary.get("join_rule", "public")
    if rule in (PUBLIC, KNOCK, KNOCK_RESTRICTED):
        return True
    if rule == RESTRICTED:
        allowed = summary.get("allowed_room_ids")
        return isinstance(allowed, list) and not user_rooms().isdisjoint(a for a in allowed if isinstance(a, str))
    return False


def allowed_room_ids(join_rules: Mapping[str, Any]) -> list[str]:
    """Rooms whose members satisfy a restricted join rule's `allow` list."""
    allow = join_rules.get("allow")
    if not isinstance(allow, list):
        return []
    return [a["room_id"] for a in allow
            if isinstance(a, Mapping) and a.get("type") == "m.room_membership" and isinstance(a.get("room_id"), str)]


def may_preview(*, join_rules: Mapping[str, Any], history_visibility: str | None, membership: str | None,
                room_version: RoomVersion, user_rooms: Callable[[], set[str]]) -> bool:
    """Whether a user may see a room's summary: the spec's list of reasons for returning a room.

    `user_rooms` gives the rooms the user has joined; it is only called for restricted rooms.
    """
    if membership == BAN:
        return False
    if membership in (JOIN, INVITE) or history_visibility == "world_readable":
        return True
    rule = join_rules.get("join_rule")
    if rule == PUBLIC or (rule == KNOCK and room_version.knock_join_rule):
        return True
    if rule == KNOCK_RESTRICTED and room_version.knock_restricted_join_rule:
        return True
    if rule == RESTRICTED and room_version.restricted_join_rule:
        return not user_rooms().isdisjoint(allowed_room_ids(join_rules))
    return False


def stripped_child(event: Event) -> dict[str, Any]:
    return {"type": event.type, "state_key": event.state_key, "content": dict(event.content),
            "sender": event.sender, "origin_server_ts": event.origin_server_ts}


def room_summary(room_id: str, joined: int, room_version: str, state: Mapping[str, Mapping[str, Any]],
                 children: Sequence[Event]) -> dict[str, Any]:
    """One SpaceHierarchyRoomsChunk from the room's summary state contents, keyed by type."""
    entry = room_entry(room_id, joined, state)
    join_rules = state.get("m.room.join_rules", {})
    rule = join_rules.get("join_rule")
    entry["join_rule"] = rule if isinstance(rule, str) else "invite"
    entry["room_version"] = room_version
    if state.get("m.room.encryption", {}).get("algorithm") == MEGOLM:
        entry["encryption"] = MEGOLM
    if rule in (RESTRICTED, KNOCK_RESTRICTED):
        entry["allowed_room_ids"] = allowed_room_ids(join_rules)
    entry["children_state"] = [stripped_child(e) for e in children]
    return entry


# --- rooms on other servers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteSpace:
    """What another server said about one of its rooms: its summary (with `children_state`), summaries
    of its children, and the children the asking server may not see."""
    room: dict[str, Any]
    children: list[dict[str, Any]]
    inaccessible_children: frozenset[str]


class RemoteSpaces(Protocol):
    async def space_hierarchy(self, servers: Sequence[str], room_id: str, suggested_only: bool
                              ) -> RemoteSpace | None:
        """The first answer of `servers` about `room_id`, or None if none of them could tell."""
        ...


# --- the walk ------------------------------------------------------------------------------------------

# A room still to visit: (room ID, depth, the servers the link leading to it names).
_Entry = tuple[str, int, tuple[str, ...]]


@dataclass
class _Walk:
    """A paginated walk: what was asked, the rooms still to visit and those already seen, and what other
    servers already told (summaries of their children, children hidden from us)."""
    room_id: str
    user_id: str
    suggested_only: bool
    max_depth: int
    queue: list[_Entry]
    seen: set[str] = field(default_factory=set)
    created: float = 0.0
    remote_children: dict[str, dict[str, Any]] = field(default_factory=dict)
    inaccessible: set[str] = field(default_factory=set)

    def copy(self, created: float) -> _Walk:
        return _Walk(self.room_id, self.user_id, self.suggested_only, self.max_depth, list(self.queue),
                     set(self.seen), created, dict(self.remote_children), set(self.inaccessible))


@dataclass(frozen=True)
class _Room:
    room_id: str
    version: str
    state: dict[str, Mapping[str, Any]]
    membership: str | None
    children: list[Event]
    joined: int

    @property
    def is_space(self) -> bool:
        return self.state.get("m.room.create", {}).get("type") == SPACE_ROOM_TYPE


class SpaceHierarchyService:
    def __init__(self, events: EventStore, monotonic: Callable[[], float] = time.monotonic, *,
                 remote: RemoteSpaces | None = None):
        self._events = events
        self._monotonic = monotonic
        self._remote = remote
        self._walks: dict[str, _Walk] = {}

    async def hierarchy(self, requester: Requester, room_id: str, *, limit: int | None = None,
                        max_depth: int | None = None, suggested_only: bool = False,
                        from_token: str | None = None) -> dict[str, Any]:
        limit = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
        depth = DEFAULT_MAX_DEPTH if max_depth is None else min(max_depth, DEFAULT_MAX_DEPTH)
        user_rooms = _LazyRooms(self._events, requester.user_id)
        if from_token is not None:
            walk = self._resume(from_token, requester.user_id, room_id, suggested_only, depth)
        else:
            # A root we do not know is asked of the server its ID names, if it names one.
            via = (room_id.split(":", 1)[1],) if ":" in room_id else ()
            walk = _Walk(room_id, requester.user_id, suggested_only, depth, [(room_id, 0, via)],
                         created=self._monotonic())
            if await self._visit(walk, room_id, via, user_rooms) is None:
                raise forbidden(f"roomId: you may not preview {room_id}")
        rooms: list[dict[str, Any]] = []
        while walk.queue and len(rooms) < limit:
            current, current_depth, via = walk.queue.pop(0)
            if current in walk.seen:
                continue
            walk.seen.add(current)
            visited = await self._visit(walk, current, via, user_rooms)
            if visited is None:
                continue
            summary, links = visited
            rooms.append(summary)
            if current_depth < walk.max_depth:
                walk.queue[0:0] = [(child, current_depth + 1, child_via) for child, child_via in links
                                   if child not in walk.seen]
        response: dict[str, Any] = {"rooms": rooms}
        if walk.queue:
            response["next_batch"] = self._remember(walk)
        return response

    async def _visit(self, walk: _Walk, room_id: str, via: tuple[str, ...], user_rooms: _LazyRooms
                     ) -> tuple[dict[str, Any], list[tuple[str, tuple[str, ...]]]] | None:
        """The room's summary for the requester and its child links (room, via), or None if hidden."""
        room = await self._load(room_id, walk.user_id, walk.suggested_only)
        if room is not None:
            if not await self._visible(room, user_rooms):
                return None
            children = room.children if room.is_space else []
            return (room_summary(room.room_id, room.joined, room.version, room.state, children),
                    [(c.state_key or "", tuple(c.content["via"])) for c in children])
        remote = await self._remote_room(walk, room_id, via)
        if remote is None:
            return None
        summary, links = remote
        if summary.get("join_rule") == RESTRICTED:
            await user_rooms.load()
        if not may_preview_summary(summary, user_rooms.get):
            return None
        return summary, [(link["state_key"], tuple(link["content"]["via"])) for link in links]

    async def _remote_room(self, walk: _Walk, room_id: str, via: tuple[str, ...]
                           ) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """A room only other servers know: from a parent's answer when it is no space, else asked of `via`."""
        known = walk.remote_children.get(room_id)
        if known is not None and known.get("room_type") != SPACE_ROOM_TYPE:
            return {**known, "children_state": []}, []
        if room_id in walk.inaccessible or self._remote is None or not via:
            return None
        space = await self._remote.space_hierarchy(via, room_id, walk.suggested_only)
        if space is None:
            return ({**known, "children_state": []}, []) if known is not None else None
        for child in space.children:
            walk.remote_children.setdefault(child["room_id"], child)
        walk.inaccessible.update(space.inaccessible_children)
        links = (ordered_child_states(space.room.get("children_state", []), suggested_only=walk.suggested_only)
                 if space.room.get("room_type") == SPACE_ROOM_TYPE else [])
        return {**space.room, "children_state": links}, links

    async def federation_hierarchy(self, origin: str, room_id: str, suggested_only: bool) -> dict[str, Any]:
        """GET /_matrix/federation/v1/hierarchy: the space and its direct children `origin`'s users may see."""
        room = await self._load(room_id, "", suggested_only)
        if room is None or not await self._server_may_preview(room, origin):
            raise not_found(f"roomId: {room_id} is not a room this server can describe to you")
        links = room.children if room.is_space else []
        children: list[dict[str, Any]] = []
        inaccessible: list[str] = []
        for link in links:
            child = await self._load(link.state_key or "", "", suggested_only=False)
            if child is None:
                continue  # rooms we cannot describe are left out, not reported inaccessible
            if not await self._server_may_preview(child, origin):
                inaccessible.append(child.room_id)
                continue
            entry = room_summary(child.room_id, child.joined, child.version, child.state, [])
            del entry["children_state"]
            children.append(entry)
        return {"room": room_summary(room.room_id, room.joined, room.version, room.state, links),
                "children": children, "inaccessible_children": inaccessible}

    async def _server_may_preview(self, room: _Room, origin: str) -> bool:
        """The preview rules with a server in the user's place: it is 'joined' when one of its users is."""
        def on_origin(members: Iterable[str]) -> bool:
            return any(m.split(":", 1)[-1] == origin for m in members)

        join_rules = room.state.get("m.room.join_rules", {})
        membership = JOIN if on_origin(await self._events.get_members(room.room_id)) else None
        origin_rooms: set[str] = set()
        if join_rules.get("join_rule") in (RESTRICTED, KNOCK_RESTRICTED):
            for allowed in allowed_room_ids(join_rules):
                if on_origin(await self._events.get_members(allowed)):
                    origin_rooms.add(allowed)
        visibility = room.state.get("m.room.history_visibility", {}).get("history_visibility")
        version = KNOWN_ROOM_VERSIONS.get(room.version)
        if version is None:
            return False
        return may_preview(join_rules=join_rules, history_visibility=visibility if isinstance(visibility, str) else None,
                           membership=membership, room_version=version, user_rooms=lambda: origin_rooms)

    async def summary(self, user_id: str | None, room_id: str) -> dict[str, Any]:
        """GET /room_summary/{roomIdOrAlias} (MSC3266) for a room this server knows.

        Anyone who may preview the room gets its summary; without a token (`user_id` None) that
        is a public, knockable or world-readable room. Unknown and hidden rooms look the same:
        404, so the answer does not reveal that a private room exists.
        """
        room = await self._load(room_id, user_id or "", suggested_only=False)
        if room is None or not await self._visible(room, _LazyRooms(self._events, user_id or "")):
            raise not_found("Room not found or is not accessible")
        entry = room_summary(room.room_id, room.joined, room.version, room.state, [])
        del entry["children_state"]
        if user_id is not None:
            entry["membership"] = room.membership or "leave"
        return entry

    def _resume(self, token: str, user_id: str, room_id: str, suggested_only: bool, max_depth: int) -> _Walk:
        self._expire()
        walk = self._walks.get(token)
        if walk is None or walk.user_id != user_id or walk.room_id != room_id:
            raise invalid_param("from: not a token from a previous /hierarchy response")
        if walk.suggested_only != suggested_only or walk.max_depth != max_depth:
            raise invalid_param("suggested_only and max_depth cannot change while paginating")
        # The stored walk stays untouched so that retrying a page gives the same page.
        return walk.copy(self._monotonic())

    def _remember(self, walk: _Walk) -> str:
        self._expire()
        while len(self._walks) >= MAX_SESSIONS:
            self._walks.pop(next(iter(self._walks)))
        token = secrets.token_urlsafe(16)
        self._walks[token] = walk
        return token

    def _expire(self) -> None:
        cutoff = self._monotonic() - SESSION_TTL_SECONDS
        for token in [t for t, w in self._walks.items() if w.created < cutoff]:
            del self._walks[token]

    async def _load(self, room_id: str, user_id: str, suggested_only: bool) -> _Room | None:
        version = await self._events.get_room_version_id(room_id)
        if version is None:
            return None
        state_ids = await self._events.get_current_state_ids(room_id)
        wanted = {t: state_ids[(t, "")] for t in _SUMMARY_TYPES if (t, "") in state_ids}
        child_ids = [eid for (t, _), eid in state_ids.items() if t == SPACE_CHILD]
        member_id = state_ids.get(("m.room.member", user_id))
        loaded = await self._events.get_events([*wanted.values(), *child_ids, *([member_id] if member_id else [])])
        state = {t: loaded[eid].content for t, eid in wanted.items() if eid in loaded}
        member = loaded.get(member_id) if member_id else None
        children = ordered_children((loaded[eid] for eid in child_ids if eid in loaded), suggested_only=suggested_only)
        joined = len(await self._events.get_members(room_id))
        return _Room(room_id, version, state, member.membership if member else None, children, joined)

    async def _visible(self, room: _Room, user_rooms: _LazyRooms) -> bool:
        rule = room.state.get("m.room.join_rules", {}).get("join_rule")
        if rule in (RESTRICTED, KNOCK_RESTRICTED):
            await user_rooms.load()
        visibility = room.state.get("m.room.history_visibility", {}).get("history_visibility")
        version = KNOWN_ROOM_VERSIONS.get(room.version)
        if version is None:
            return False
        return may_preview(join_rules=room.state.get("m.room.join_rules", {}),
                           history_visibility=visibility if isinstance(visibility, str) else None,
                           membership=room.membership, room_version=version, user_rooms=user_rooms.get)


class _LazyRooms:
    """The requester's joined rooms, fetched at most once per request and only when a rule needs them."""

    def __init__(self, events: EventStore, user_id: str):
        self._events = events
        self._user_id = user_id
        self._rooms: set[str] | None = None

    async def load(self) -> None:
        if self._rooms is None:
            self._rooms = set(await self._events.get_rooms_for_user(self._user_id, (JOIN,)))

    def get(self) -> set[str]:
        return self._rooms or set()
