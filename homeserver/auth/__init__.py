"""Event authorization: the auth rules of every room version, as pure functions.

- `check_auth_events_selection` checks an event's `auth_events` list (once per event);
- `check_auth` applies the rules against a state map (auth events, state before, current);
- `auth_types_for_event` says which state an event's authorization depends on.
"""

from homeserver.event_auth.errors import AuthError
from homeserver.event_auth.power_levels import (
    CREATOR_POWER_LEVEL,
    get_creators,
    get_named_level,
    get_notification_level,
    get_required_level,
    get_user_power_level,
    is_creator,
    parse_level,
)
from homeserver.event_auth.redactions import may_apply_redaction
from homeserver.event_auth.rules import check_auth
from homeserver.event_auth.selection import auth_types_for_event, check_auth_events_selection

__all__ = [
    "CREATOR_POWER_LEVEL",
    "AuthError",
    "auth_types_for_event",
    "check_auth",
    "check_auth_events_selection",
    "get_creators",
    "get_named_level",
    "get_notification_level",
    "get_required_level",
    "get_user_power_level",
    "is_creator",
    "may_apply_redaction",
    "parse_level",
]
