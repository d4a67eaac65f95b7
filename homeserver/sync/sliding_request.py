"""Parsing a simplified sliding sync request body into frozen configuration objects.

Every malformed field is answered with M_BAD_JSON (or M_INVALID_PARAM for values out of range)
naming the field, never a 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from homeserver.errors import bad_json, invalid_param

MAX_TIMELINE_LIMIT = 1000
MAX_RANGE_END = 100_000
EXTENSIONS = ("to_device", "e2ee", "account_data", "receipts", "typing")
LAZY, ME, WILDCARD = "$LAZY", "$ME", "*"

StatePair = tuple[str, str]


@dataclass(frozen=True)
class RoomConfig:
    """What a client asks for one room: the newest `timeline_limit` events and these state keys."""

    timeline_limit: int
    required_state: frozenset[StatePair]

    def merge(self, other: RoomConfig) -> RoomConfig:
        """A room in several lists and subscriptions gets the largest timeline and every state key."""
        return RoomConfig(max(self.timeline_limit, other.timeline_limit),
                          self.required_state | other.required_state)


@dataclass(frozen=True)
class ListFilters:
    is_dm: bool | None = None
    spaces: tuple[str, ...] | None = None
    is_encrypted: bool | None = None
    is_invite: bool | None = None
    room_types: tuple[str | None, ...] | None = None
    not_room_types: tuple[str | None, ...] = ()
    tags: tuple[str, ...] | None = None
    not_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ListConfig:
    ranges: tuple[tuple[int, int], ...] | None
    room: RoomConfig
    filters: ListFilters = ListFilters()


@dataclass(frozen=True)
class ExtensionConfig:
    enabled: bool
    # None: every room in the response ("*"); else the named lists' rooms and subscriptions.
    lists: tuple[str, ...] | None = None
    rooms: tuple[str, ...] | None = None
    since: str | None = None
    limit: int | None = None


@dataclass(frozen=True)
class SlidingSyncBody:
    conn_id: str = ""
    lists: Mapping[str, ListConfig] = field(default_factory=dict)
    room_subscriptions: Mapping[str, RoomConfig] = field(default_factory=dict)
    extensions: Mapping[str, ExtensionConfig] = field(default_factory=dict)


def parse_body(body: Any) -> SlidingSyncBody:
    if not isinstance(body, dict):
        raise bad_json("request body must be a JSON object")
    conn_id = body.get("conn_id", "")
    if conn_id is None:
        conn_id = ""
    if not isinstance(conn_id, str):
        raise bad_json("conn_id: must be a string")
    lists = {}
    for name, value in _object(body, "lists").items():
        lists[name] = _list(value, f"lists.{name}")
    subscriptions = {}
    for room_id, value in _object(body, "room_subscriptions").items():
        if not room_id.startswith("!"):
            raise invalid_param(f"room_subscriptions: {room_id!r} is not a room ID")
        subscriptions[room_id] = _room(value, f"room_subscriptions.{room_id}")
    extensions = {}
    for name, value in _object(body, "extensions").items():
        if name in EXTENSIONS:
            extensions[name] = _extension(value, f"extensions.{name}")
    return SlidingSyncBody(conn_id, lists, subscriptions, extensions)


def _object(body: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_json(f"{key}: must be an object")
    return value


def _room(value: Any, where: str) -> RoomConfig:
    if not isinstance(value, dict):
        raise bad_json(f"{where}: must be an object")
    limit = value.get("timeline_limit")
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise bad_json(f"{where}.timeline_limit: must be an integer")
    if not 0 <= limit <= MAX_TIMELINE_LIMIT:
        raise invalid_param(f"{where}.timeline_limit: must be between 0 and {MAX_TIMELINE_LIMIT}")
    required = value.get("required_state")
    if not isinstance(required, list):
        raise bad_json(f"{where}.required_state: must be a list of [type, state_key] pairs")
    pairs = set()
    for pair in required:
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(part, str) for part in pair)):
            raise bad_json(f"{where}.required_state: must be a list of [type, state_key] pairs")
        pairs.add((pair[0], pair[1]))
    return RoomConfig(limit, frozenset(pairs))


def _list(value: Any, where: str) -> ListConfig:
    room = _room(value, where)
    ranges = value.get("ranges")
    parsed: tuple[tuple[int, int], ...] | None = None
    if ranges is not None:
        if not isinstance(ranges, list):
            raise bad_json(f"{where}.ranges: must be a list of [start, end] pairs")
        out = []
        for pair in ranges:
            if (not isinstance(pair, list) or len(pair) != 2
                    or not all(isinstance(p, int) and not isinstance(p, bool) for p in pair)):
                raise bad_json(f"{where}.ranges: must be a list of [start, end] pairs")
            start, end = pair
            if start < 0 or end < start or end > MAX_RANGE_END:
                raise invalid_param(f"{where}.ranges: [{start}, {end}] is not a valid range")
            out.append((start, end))
        parsed = tuple(out)
    return ListConfig(parsed, room, _filters(value.get("filters"), f"{where}.filters"))


def _filters(value: Any, where: str) -> ListFilters:
    if value is None:
        return ListFilters()
    if not isinstance(value, dict):
        raise bad_json(f"{where}: must be an object")

    def flag(key: str) -> bool | None:
        v = value.get(key)
        if v is not None and not isinstance(v, bool):
            raise bad_json(f"{where}.{key}: must be a boolean")
        return v

    def strings(key: str, nullable: bool = False) -> tuple[Any, ...] | None:
        v = value.get(key)
        if v is None:
            return None
        if not isinstance(v, list) or not all(isinstance(s, str) or (nullable and s is None) for s in v):
            raise bad_json(f"{where}.{key}: must be a list of strings")
        return tuple(v)

    return ListFilters(
        is_dm=flag("is_dm"), spaces=strings("spaces"), is_encrypted=flag("is_encrypted"),
        is_invite=flag("is_invite"), room_types=strings("room_types", nullable=True),
        not_room_types=strings("not_room_types", nullable=True) or (), tags=strings("tags"),
        not_tags=strings("not_tags") or (),
    )


def _extension(value: Any, where: str) -> ExtensionConfig:
    if not isinstance(value, dict):
        raise bad_json(f"{where}: must be an object")
    enabled = value.get("enabled", False)
    if enabled is None:
        enabled = False
    if not isinstance(enabled, bool):
        raise bad_json(f"{where}.enabled: must be a boolean")

    def scope(key: str) -> tuple[str, ...] | None:
        v = value.get(key)
        if v is None:
            return None
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise bad_json(f"{where}.{key}: must be a list of strings")
        return None if WILDCARD in v else tuple(v)

    since = value.get("since")
    if since is not None and not isinstance(since, str):
        raise bad_json(f"{where}.since: must be a string")
    limit = value.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise bad_json(f"{where}.limit: must be a non-negative integer")
    return ExtensionConfig(enabled, scope("lists"), scope("rooms"), since, limit)


def wanted_state_keys(required: frozenset[StatePair], user_id: str) -> frozenset[StatePair]:
    """The configuration with `$ME` resolved to the user."""
    return frozenset((t, user_id if k == ME else k) for t, k in required)


def state_key_matches(required: frozenset[StatePair], key: StatePair) -> bool:
    """Whether a (resolved) required_state configuration asks for the state entry `key`.

    `$LAZY` member entries are handled by the caller: they ask for the timeline senders only.
    """
    event_type, state_key = key
    for want_type, want_key in required:
        if want_type not in (WILDCARD, event_type):
            continue
        if want_key == WILDCARD or want_key == state_key:
            return True
    return False


def lazy_members(required: frozenset[StatePair]) -> bool:
    return ("m.room.member", LAZY) in required
