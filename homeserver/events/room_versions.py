"""The room versions table: one declarative entry per room version.

Code asks a flag of a `RoomVersion`, never `if version in (...)`. Each flag names
one rule that differs between versions; the spec's `content/rooms/vN.md` pages are
the source of every value here.
"""

from __future__ import annotations

import dataclasses
import enum


class EventIdFormat(enum.Enum):
    """How an event's ID is obtained."""

    V1 = "v1"  # `$random:server`, carried in the event itself (rooms v1, v2)
    V2 = "v2"  # `$` + standard unpadded base64 of the reference hash (room v3)
    V3 = "v3"  # `$` + URL-safe unpadded base64 of the reference hash (v4+)


class StateResAlgorithm(enum.Enum):
    V1 = "v1"
    V2 = "v2"
    V2_1 = "v2.1"  # room version 12: iterative auth checks start empty, conflicted subgraph


class Stability(enum.Enum):
    STABLE = "stable"
    UNSTABLE = "unstable"


@dataclasses.dataclass(frozen=True, slots=True)
class RoomVersion:
    identifier: str
    stability: Stability
    event_id_format: EventIdFormat
    state_res: StateResAlgorithm
    # Signing keys must be valid (valid_until_ts) at the event's origin_server_ts (v5+).
    enforce_key_validity: bool
    # m.room.aliases has its own auth rule (v1-v5); later it is an ordinary state event.
    special_case_aliases_auth: bool
    # Integers outside [-(2**53)+1, (2**53)-1], floats, NaN are rejected (v6+).
    strict_canonicaljson: bool
    # power_levels.notifications is checked when power levels change (v6+).
    limit_notifications_power_levels: bool
    # `knock` membership and join rule (v7+).
    knock_join_rule: bool
    # `restricted` join rule with `allow` conditions (v8+).
    restricted_join_rule: bool
    # `join_authorised_via_users_server` survives redaction of m.room.member (v9+).
    restricted_join_rule_fix: bool
    # `knock_restricted` join rule (v10+).
    knock_restricted_join_rule: bool
    # power level values must be integers, not strings (v10+).
    enforce_int_power_levels: bool
    # m.room.create has no `creator`: the sender is the creator (v11+).
    implicit_room_creator: bool
    # v11 redaction rules: create keeps all content, power_levels keeps `invite`,
    # redaction keeps `content.redacts`, top-level origin/membership/prev_state dropped.
    updated_redaction_rules: bool
    # The `redacts` key of m.room.redaction lives in content (v11+), not at top level.
    redacts_in_content: bool
    # Room creators (sender + content.additional_creators) have infinite power (v12).
    creator_power_infinite: bool
    # The room ID is `!` + URL-safe hash of the create event; the create event names
    # no room_id and is not listed in auth_events (v12).
    room_id_from_create_event: bool

    @property
    def is_stable(self) -> bool:
        return self.stability is Stability.STABLE

    @property
    def event_id_in_event(self) -> bool:
        """Whether the event carries its own `event_id` (v1/v2) or it is a hash."""
        return self.event_id_format is EventIdFormat.V1


_V1 = RoomVersion(
    identifier="1",
    stability=Stability.STABLE,
    event_id_format=EventIdFormat.V1,
    state_res=StateResAlgorithm.V1,
    enforce_key_validity=False,
    special_case_aliases_auth=True,
    strict_canonicaljson=False,
    limit_notifications_power_levels=False,
    knock_join_rule=False,
    restricted_join_rule=False,
    restricted_join_rule_fix=False,
    knock_restricted_join_rule=False,
    enforce_int_power_levels=False,
    implicit_room_creator=False,
    updated_redaction_rules=False,
    redacts_in_content=False,
    creator_power_infinite=False,
    room_id_from_create_event=False,
)

_V2 = dataclasses.replace(_V1, identifier="2", state_res=StateResAlgorithm.V2)
_V3 = dataclasses.replace(_V2, identifier="3", event_id_format=EventIdFormat.V2)
_V4 = dataclasses.replace(_V3, identifier="4", event_id_format=EventIdFormat.V3)
_V5 = dataclasses.replace(_V4, identifier="5", enforce_key_validity=True)
_V6 = dataclasses.replace(
    _V5,
    identifier="6",
    special_case_aliases_auth=False,
    strict_canonicaljson=True,
    limit_notifications_power_levels=True,
)
_V7 = dataclasses.replace(_V6, identifier="7", knock_join_rule=True)
_V8 = dataclasses.replace(_V7, identifier="8", restricted_join_rule=True)
_V9 = dataclasses.replace(_V8, identifier="9", restricted_join_rule_fix=True)
_V10 = dataclasses.replace(
    _V9, identifier="10", knock_restricted_join_rule=True, enforce_int_power_levels=True
)
_V11 = dataclasses.replace(
    _V10,
    identifier="11",
    implicit_room_creator=True,
    updated_redaction_rules=True,
    redacts_in_content=True,
)
_V12 = dataclasses.replace(
    _V11,
    identifier="12",
    state_res=StateResAlgorithm.V2_1,
    creator_power_infinite=True,
    room_id_from_create_event=True,
)

KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {
    v.identifier: v for v in (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12)
}

# rooms/_index.md: "Servers SHOULD use room version 12 as the default room version".
DEFAULT_ROOM_VERSION = "11"


class UnsupportedRoomVersion(Exception):
    """Raised for a room version identifier this server does not implement."""

    def __init__(self, identifier: str):
        super().__init__(f"Unsupported room version: {identifier!r}")
        self.identifier = identifier


def get_room_version(identifier: str) -> RoomVersion:
    """The RoomVersion for an identifier; raises UnsupportedRoomVersion if unknown."""
    try:
        return KNOWN_ROOM_VERSIONS[identifier]
    except (KeyError, TypeError):
        raise UnsupportedRoomVersion(str(identifier)) from None
