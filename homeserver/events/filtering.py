"""Sync filters as plain data, and the pure functions that apply them.

`parse_sync_filter` turns a filter JSON object (already validated against the spec's schema by
`homeserver.accounts.user_filters.check_filter`) into frozen dataclasses; matching an event or
trimming its fields never touches storage.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The spec's default for timeline.limit is server-defined; 10 is what Synapse uses and clients expect.
DEFAULT_TIMELINE_LIMIT = 10


@functools.lru_cache(maxsize=1024)
def _pattern(glob: str) -> re.Pattern[str]:
    # Only `*` is a wildcard in filter type lists; everything else is literal.
    return re.compile(".*".join(re.escape(part) for part in glob.split("*")) + r"\Z", re.DOTALL)


def type_matches(event_type: str, patterns: Iterable[str]) -> bool:
    return any(p == event_type or ("*" in p and _pattern(p).match(event_type)) for p in patterns)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """An EventFilter or RoomEventFilter; room-only fields stay at their defaults for the former."""

    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: frozenset[str] | None = None
    not_senders: frozenset[str] = frozenset()
    rooms: frozenset[str] | None = None
    not_rooms: frozenset[str] = frozenset()
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def matches(self, event_type: str, sender: str | None = None, content: Mapping[str, Any] | None = None,
                room_id: str | None = None) -> bool:
        """Whether an event with these properties passes the filter (the `limit` is the caller's)."""
        if self.not_types and type_matches(event_type, self.not_types):
            return False
        if self.types is not None and not type_matches(event_type, self.types):
            return False
        if sender is not None:
            if sender in self.not_senders:
                return False
            if self.senders is not None and sender not in self.senders:
                return False
        if room_id is not None and not self.allows_room(room_id):
            return False
        if self.contains_url is not None:
            has_url = isinstance((content or {}).get("url"), str)
            if has_url != self.contains_url:
                return False
        return True

    @property
    def is_empty_set(self) -> bool:
        """True when nothing can pass (`types: []` or `limit: 0`), so callers may skip the work."""
        return self.types == () or self.limit == 0


@dataclass(frozen=True, slots=True)
class SyncFilter:
    event_fields: tuple[tuple[str, ...], ...] | None = None
    event_format: str = "client"
    presence: EventFilter = EventFilter()
    account_data: EventFilter = EventFilter()
    rooms: frozenset[str] | None = None
    not_rooms: frozenset[str] = frozenset()
    include_leave: bool = False
    timeline: EventFilter = EventFilter()
    state: EventFilter = EventFilter()
    ephemeral: EventFilter = EventFilter()
    room_account_data: EventFilter = EventFilter()

    @property
    def timeline_limit(self) -> int:
        return DEFAULT_TIMELINE_LIMIT if self.timeline.limit is None else self.timeline.limit

    @property
    def lazy_load_members(self) -> bool:
        return self.state.lazy_load_members

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms


def _strings(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(v for v in value if isinstance(v, str))


def parse_event_filter(data: Mapping[str, Any] | None) -> EventFilter:
    if not data:
        return EventFilter()
    senders = _strings(data.get("senders"))
    rooms = _strings(data.get("rooms"))
    contains_url = data.get("contains_url")
    return EventFilter(
        limit=data.get("limit") if isinstance(data.get("limit"), int) else None,
        types=_strings(data.get("types")),
        not_types=_strings(data.get("not_types")) or (),
        senders=None if senders is None else frozenset(senders),
        not_senders=frozenset(_strings(data.get("not_senders")) or ()),
        rooms=None if rooms is None else frozenset(rooms),
        not_rooms=frozenset(_strings(data.get("not_rooms")) or ()),
        contains_url=contains_url if isinstance(contains_url, bool) else None,
        lazy_load_members=data.get("lazy_load_members") is True,
        include_redundant_members=data.get("include_redundant_members") is True,
        unread_thread_notifications=data.get("unread_thread_notifications") is True,
    )


def split_field_path(path: str) -> tuple[str, ...]:
    """`content.m\\.relates_to` -> ("content", "m.relates_to"): a backslash escapes a dot or itself."""
    parts, current, escaped = [], [], False
    for char in path:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return tuple(parts)


def parse_sync_filter(data: Mapping[str, Any] | None) -> SyncFilter:
    """A SyncFilter from a (schema-valid) filter object; `None` or `{}` is the default filter."""
    if not data:
        return SyncFilter()
    room = data.get("room") or {}
    rooms = _strings(room.get("rooms"))
    fields = data.get("event_fields")
    event_format = data.get("event_format")
    return SyncFilter(
        event_fields=None if fields is None else tuple(split_field_path(f) for f in fields
                                                       if isinstance(f, str)),
        event_format=event_format if event_format in ("client", "federation") else "client",
        presence=parse_event_filter(data.get("presence")),
        account_data=parse_event_filter(data.get("account_data")),
        rooms=None if rooms is None else frozenset(rooms),
        not_rooms=frozenset(_strings(room.get("not_rooms")) or ()),
        include_leave=room.get("include_leave") is True,
        timeline=parse_event_filter(room.get("timeline")),
        state=parse_event_filter(room.get("state")),
        ephemeral=parse_event_filter(room.get("ephemeral")),
        room_account_data=parse_event_filter(room.get("account_data")),
    )


def only_fields(event: Mapping[str, Any], fields: Sequence[tuple[str, ...]]) -> dict[str, Any]:
    """A copy of `event` holding only the listed dotted paths (that exist); an empty list keeps nothing."""
    out: dict[str, Any] = {}
    for path in fields:
        source: Any = event
        for key in path:
            if not isinstance(source, Mapping) or key not in source:
                break
            source = source[key]
        else:
            target = out
            for key in path[:-1]:
                target = target.setdefault(key, {})
            target[path[-1]] = source
    return out


def filter_plain_events(events: Iterable[Mapping[str, Any]], event_filter: EventFilter,
                        room_id: str | None = None) -> list[Mapping[str, Any]]:
    """Account data, presence and ephemeral events (`type`, optionally `sender`) through a filter."""
    kept = []
    for event in events:
        sender = event.get("sender")
        if event_filter.matches(str(event.get("type", "")), sender if isinstance(sender, str) else None,
                                room_id=room_id):
            kept.append(event)
    return kept if event_filter.limit is None else kept[:event_filter.limit]
