"""The little identifier parsing the auth rules need."""

from __future__ import annotations

from typing import Any


def domain_of(identifier: str) -> str:
    """The server name of a user, room or (v1/v2) event ID: everything after the first colon.

    Returns "" when there is no colon, which never equals a real server name, so a
    malformed ID fails every domain comparison instead of raising.
    """
    _, sep, domain = identifier.partition(":")
    return domain if sep else ""


def is_valid_user_id(value: Any) -> bool:
    """Whether `value` is shaped like a user ID: `@`, a `:` before the server name, <= 255 bytes.

    This is the check applied to an event's `sender` (events/validation.py), which the
    spec names for `additional_creators`; it is also what other servers apply to the keys
    of `power_levels.users`. Historical user IDs (upper case, other punctuation) still
    occur in old rooms, and being stricter than the rest of the federation would split
    the room.
    """
    if not isinstance(value, str) or not value.startswith("@") or ":" not in value:
        return False
    try:
        return len(value.encode("utf-8")) <= 255
    except UnicodeEncodeError:  # a lone surrogate
        return False
