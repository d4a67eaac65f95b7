"""Whether a redaction that passed the auth rules may actually be applied.

From room version 3 the auth rules accept any redaction the sender may send; the
check that the sender may redact *that* event happens once both events are known
(spec: "Handling redactions"). In v1/v2 the auth rules already compared event ID
domains, so only the power check is repeated here.
"""

from __future__ import annotations

from collections.abc import Mapping

from homeserver.event_auth.constants import POWER_LEVELS_KEY
from homeserver.event_auth.ids import domain_of
from homeserver.event_auth.power_levels import get_named_level, get_user_power_level
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion


def may_apply_redaction(
    redaction: Event,
    redacted: Event,
    auth_state: Mapping[tuple[str, str], Event],
    room_version: RoomVersion,
) -> bool:
    """Whether `redaction` may redact `redacted`, given the state at the redaction."""
    pl_event = auth_state.get(POWER_LEVELS_KEY)
    redact_level = get_named_level(pl_event.content if pl_event is not None else None, "redact")
    if get_user_power_level(redaction.sender, auth_state, room_version) >= redact_level:
        return True
    if room_version.event_id_in_event:
        return domain_of(redaction.event_id) == domain_of(redacted.event_id)
    return domain_of(redaction.sender) == domain_of(redacted.sender)
