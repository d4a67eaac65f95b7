"""Space hierarchy (/rooms/{roomId}/hierarchy): a depth-first walk of `m.space.child` links.

Only rooms this server knows are summarised; children on other servers are skipped (no federation yet).
Pagination keeps the rest of the walk in memory under an opaque token, as the walk's queue depends on
every room visited before it and cannot be rebuilt cheaply from a position alone.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from homeserver.requester import Requester
from homeserver.event_auth.constants import BAN, INVITE, JOIN, KNOCK, KNOCK_RESTRICTED, PUBLIC, RESTRICTED
from homeserver.directory.public_rooms import room_entry
from homeserver.errors import forbidden, invalid_param, not_found
from homeserver.events.event import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
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


def child_sort_key(event: Event) -> tuple[int, str, int, str]:
    """Children with a valid `order` first (by it), then by the link's timestamp, then by room ID."""
    order = valid_order(event.content.get("order"))
    return (0 if order is not None else 1, order or "", event.origin_server_ts, event.state_key or "")


def ordered_children(events: Iterable[Event], *, suggested_only: bool) -> list[Event]:
    """The space's valid child links in the spec's order, keeping only suggested ones if asked."""
    links = [e for e in events
             if e.type == SPACE_CHILD and isinstance(e.state_key, str) and e.state_key.startswith("!")
             and valid_via(e.content) and (not suggested_only or e.content.get("suggested") is True)]
    return sorted(links, key=child_sort_key)


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


# --- the walk ------------------------------------------------------------------------------------------


@dataclass
class _Walk:
    """A paginated walk: what was asked, the rooms still to visit (room, depth) and those already seen."""
    room_id: str
    user_id: str
    suggested_only: bool
    max_depth: int
    queue: list[tuple[str, int]]
    seen: set[str] = field(default_factory=set)
    created: float = 0.0


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
    def __init__(self, events: EventStore, monotonic: Callable[[], float] = time.monotonic):
        self._events = events
        self._monotonic = monotonic
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
            root = await self._load(room_id, requester.user_id, suggested_only)
            if root is None or not await self._visible(root, user_rooms):
                raise forbidden(f"roomId: you may not preview {room_id}")
            walk = _Walk(room_id, requester.user_id, suggested_only, depth, [(room_id, 0)],
                         created=self._monotonic())
        rooms: list[dict[str, Any]] = []
        while walk.queue and len(rooms) < limit:
            current, current_depth = walk.queue.pop(0)
            if current in walk.seen:
                continue
            walk.seen.add(current)
            room = await self._load(current, requester.user_id, suggested_only)
            if room is None or not await self._visible(room, user_rooms):
                continue
            children = room.children if room.is_space else []
            rooms.append(room_summary(room.room_id, room.joined, room.version, room.state, children))
            if current_depth < walk.max_depth:
                walk.queue[0:0] = [(c.state_key, current_depth + 1) for c in children if c.state_key not in walk.seen]
        response: dict[str, Any] = {"rooms": rooms}
        if walk.queue:
            response["next_batch"] = self._remember(walk)
        return response

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
        return _Walk(walk.room_id, walk.user_id, walk.suggested_only, walk.max_depth, list(walk.queue),
                     set(walk.seen), created=self._monotonic())

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
