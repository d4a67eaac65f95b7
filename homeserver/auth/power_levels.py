"""Power levels: reading them out of room state, and the rules for changing them.

Reading is lenient and version-free: a power levels event in the state already passed
the auth rules of its room version, so any string or float in it was legal there and is
read the way that version defines (stringy integers, truncated floats). Validating a
*new* power levels event is strict and asks the room version's flags.

Room creators in room version 12 have an infinitely high level, modelled as `math.inf`
so that every comparison in the rules keeps its plain meaning.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from homeserver.event_auth.constants import CREATE_KEY, POWER_LEVELS_KEY
from homeserver.event_auth.errors import AuthError
from homeserver.event_auth.ids import is_valid_user_id
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion

# A user's level: an int, or math.inf for a v12 room creator.
Level = int | float

CREATOR_POWER_LEVEL: float = math.inf

# The level a user has when no power levels event exists yet and they created the room.
CREATOR_LEVEL_WITHOUT_POWER_LEVELS = 100

# Defaults for the top-level integer properties when they are absent.
NAMED_LEVEL_DEFAULTS: Mapping[str, int] = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
}
NAMED_LEVELS: tuple[str, ...] = tuple(NAMED_LEVEL_DEFAULTS)

# Default level needed to trigger a notification (`notifications` keys, e.g. "room").
NOTIFICATION_LEVEL_DEFAULT = 50

_MAX_CANONICAL_INT = 2**53 - 1
# Stringy levels (v1-v9): optional ASCII whitespace, one sign, base-10 digits. Python's
# int() alone would also take underscores and non-ASCII digits, which the spec does not.
_INT_STRING = re.compile(r"[ \t\n\r\f\v]*[+-]?[0-9]+[ \t\n\r\f\v]*")


# --- reading values ----------------------------------------------------------------


def parse_level(value: Any) -> int | None:
    """The integer a stored power level value stands for, or None if it stands for none."""
    if type(value) is int:
        return value
    if isinstance(value, str):
        return int(value) if _INT_STRING.fullmatch(value) else None
    if type(value) is float and math.isfinite(value):
        # v1-v5 accept floats; the spec truncates them at the decimal point.
        return int(value)
    return None


def is_valid_level(value: Any, room_version: RoomVersion) -> bool:
    """Whether a value may stand as a power level in a *new* event of this room version."""
    if type(value) is int:
        return not room_version.strict_canonicaljson or -_MAX_CANONICAL_INT <= value <= _MAX_CANONICAL_INT
    if room_version.enforce_int_power_levels:
        return False
    if isinstance(value, str):
        return _INT_STRING.fullmatch(value) is not None
    if type(value) is float:
        return not room_version.strict_canonicaljson and math.isfinite(value)
    return False


def get_named_level(power_levels: Mapping[str, Any] | None, name: str) -> int:
    """One of the top-level levels (`ban`, `kick`, `invite`, `state_default`, ...) or its default.

    `power_levels` is the content of the current m.room.power_levels event, or None when
    the room has none.
    """
    default = NAMED_LEVEL_DEFAULTS[name]
    if power_levels is None:
        return default
    level = parse_level(power_levels.get(name))
    return default if level is None else level


def get_required_level(event_type: str, is_state: bool, power_levels: Mapping[str, Any] | None) -> int:
    """The *required power level* to send an event of this type (spec: server-server Definitions)."""
    if power_levels is not None:
        events = power_levels.get("events")
        if isinstance(events, Mapping):
            level = parse_level(events.get(event_type))
            if level is not None:
                return level
    return get_named_level(power_levels, "state_default" if is_state else "events_default")


def get_notification_level(power_levels: Mapping[str, Any] | None, key: str) -> int:
    """The level needed to trigger the notification `key` (e.g. "room" for @room)."""
    if power_levels is not None:
        notifications = power_levels.get("notifications")
        if isinstance(notifications, Mapping):
            level = parse_level(notifications.get(key))
            if level is not None:
                return level
    return NOTIFICATION_LEVEL_DEFAULT


# --- creators -----------------------------------------------------------------------


def get_creators(create_event: Event, room_version: RoomVersion) -> frozenset[str]:
    """The room creators: `content.creator` before v11, the sender from v11, plus
    `content.additional_creators` from v12."""
    if not room_version.implicit_room_creator:
        creator = create_event.content.get("creator")
        return frozenset((creator,)) if isinstance(creator, str) else frozenset()
    if not room_version.creator_power_infinite:
        return frozenset((create_event.sender,))
    additional = create_event.content.get("additional_creators")
    if isinstance(additional, list):
        return frozenset((create_event.sender, *(u for u in additional if isinstance(u, str))))
    return frozenset((create_event.sender,))


def is_creator(user_id: str, create_event: Event, room_version: RoomVersion) -> bool:
    """Whether `user_id` is a creator of the room whose create event this is."""
    if not room_version.implicit_room_creator:
        return create_event.content.get("creator") == user_id
    if user_id == create_event.sender:
        return True
    if not room_version.creator_power_infinite:
        return False
    additional = create_event.content.get("additional_creators")
    return isinstance(additional, list) and user_id in additional


# --- user levels --------------------------------------------------------------------


def user_level(
    user_id: str,
    power_levels: Mapping[str, Any] | None,
    create_event: Event | None,
    room_version: RoomVersion,
) -> Level:
    """A user's level given the power levels content (or None) and the create event."""
    if (
        room_version.creator_power_infinite
        and create_event is not None
        and is_creator(user_id, create_event, room_version)
    ):
        return CREATOR_POWER_LEVEL
    if power_levels is not None:
        users = power_levels.get("users")
        if isinstance(users, Mapping):
            level = parse_level(users.get(user_id))
            if level is not None:
                return level
        return get_named_level(power_levels, "users_default")
    # No power levels event yet: the creator has 100, everyone else 0.
    if create_event is not None and is_creator(user_id, create_event, room_version):
        return CREATOR_LEVEL_WITHOUT_POWER_LEVELS
    return 0


def get_user_power_level(
    user_id: str, auth_state: Mapping[tuple[str, str], Event], room_version: RoomVersion
) -> Level:
    """A user's power level in the given state (math.inf for a v12 room creator).

    The state must include the create event (also in v12, where events do not cite it),
    since creators are known only from it.
    """
    pl_event = auth_state.get(POWER_LEVELS_KEY)
    return user_level(
        user_id,
        pl_event.content if pl_event is not None else None,
        auth_state.get(CREATE_KEY),
        room_version,
    )


# --- changing power levels (auth rule "If type is m.room.power_levels") -------------


def validate_power_levels_content(
    content: Mapping[str, Any], create_event: Event | None, room_version: RoomVersion
) -> None:
    """The shape checks on a new m.room.power_levels content; raises AuthError."""
    for name in NAMED_LEVELS:
        if name in content and not is_valid_level(content[name], room_version):
            raise AuthError(f"power levels: {name!r} is not a valid power level")

    level_maps = ("events", "notifications")
    for name in level_maps:
        if name not in content:
            continue
        value = content[name]
        if not isinstance(value, Mapping):
            raise AuthError(f"power levels: {name!r} is not an object")
        for key, level in value.items():
            if not is_valid_level(level, room_version):
                raise AuthError(f"power levels: {name}[{key!r}] is not a valid power level")

    if "users" in content:
        users = content["users"]
        if not isinstance(users, Mapping):
            raise AuthError("power levels: 'users' is not an object")
        for user_id, level in users.items():
            if not is_valid_user_id(user_id):
                raise AuthError(f"power levels: users key {user_id!r} is not a valid user ID")
            if not is_valid_level(level, room_version):
                raise AuthError(f"power levels: users[{user_id!r}] is not a valid power level")
        if room_version.creator_power_infinite and create_event is not None:
            for user_id in users:
                if is_creator(user_id, create_event, room_version):
                    raise AuthError(f"power levels: room creator {user_id} cannot be listed in 'users'")


def check_power_levels_change(
    new: Mapping[str, Any],
    old: Mapping[str, Any],
    sender: str,
    sender_level: Level,
    room_version: RoomVersion,
) -> None:
    """The rules comparing a new power levels content with the current one; raises AuthError."""
    for name in NAMED_LEVELS:
        old_level = parse_level(old.get(name))
        new_level = parse_level(new.get(name))
        if old_level == new_level:
            continue
        if old_level is not None and old_level > sender_level:
            raise AuthError(f"power levels: cannot change {name!r} from {old_level}, above your level")
        if new_level is not None and new_level > sender_level:
            raise AuthError(f"power levels: cannot set {name!r} to {new_level}, above your level")

    maps = ("events", "notifications") if room_version.limit_notifications_power_levels else ("events",)
    for name in maps:
        for key, old_level, new_level in _changed_entries(old.get(name), new.get(name)):
            if old_level is not None and old_level > sender_level:
                raise AuthError(
                    f"power levels: cannot change {name}[{key!r}] from {old_level}, above your level"
                )
            if new_level is not None and new_level > sender_level:
                raise AuthError(f"power levels: cannot set {name}[{key!r}] to {new_level}, above your level")

    for user_id, old_level, new_level in _changed_entries(old.get("users"), new.get("users")):
        if user_id != sender and old_level is not None and old_level >= sender_level:
            raise AuthError(f"power levels: cannot change the level of {user_id}, not below your own")
        if new_level is not None and new_level > sender_level:
            raise AuthError(f"power levels: cannot give {user_id} level {new_level}, above your level")


def _changed_entries(old: Any, new: Any) -> list[tuple[str, int | None, int | None]]:
    # Entries added, changed or removed between two level maps, compared by the integer
    # they stand for (so "50" -> 50 is no change). Missing or malformed maps count as empty.
    old_map = old if isinstance(old, Mapping) else {}
    new_map = new if isinstance(new, Mapping) else {}
    changed = []
    for key in old_map.keys() | new_map.keys():
        old_level = parse_level(old_map.get(key))
        new_level = parse_level(new_map.get(key))
        if old_level != new_level:
            changed.append((key, old_level, new_level))
    return changed
