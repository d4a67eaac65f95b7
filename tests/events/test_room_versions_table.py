"""The room versions table against the spec's rooms/vN.md, one flag at a time."""

import pytest

from homeserver.events.room_versions import (
    DEFAULT_ROOM_VERSION,
    KNOWN_ROOM_VERSIONS,
    EventIdFormat,
    StateResAlgorithm,
    UnsupportedRoomVersion,
    get_room_version,
)

ALL_VERSIONS = [str(v) for v in range(1, 13)]

# Boolean flag -> the first room version that turns it on (None: on from v1 and off
# from the version given as `until`).
FIRST_VERSION_WITH = {
    "enforce_key_validity": 5,  # v5: signing key validity
    "strict_canonicaljson": 6,  # v6: "Servers MUST strictly enforce the JSON format"
    "limit_notifications_power_levels": 6,  # v6: `notifications` in power level rules
    "knock_join_rule": 7,  # v7: knocking
    "restricted_join_rule": 8,  # v8: restricted join rule, join_rules keeps `allow`
    "restricted_join_rule_fix": 9,  # v9: member keeps join_authorised_via_users_server
    "knock_restricted_join_rule": 10,  # v10: knock_restricted
    "enforce_int_power_levels": 10,  # v10: power levels must be integers
    "implicit_room_creator": 11,  # v11: `creator` removed from m.room.create
    "updated_redaction_rules": 11,  # v11: redaction algorithm clarified
    "redacts_in_content": 11,  # v11: `redacts` moved into content
    "creator_power_infinite": 12,  # v12: room creators have infinite power
    "room_id_from_create_event": 12,  # v12: room ID is the create event's hash
}
LAST_VERSION_WITH = {"special_case_aliases_auth": 5}  # v6 removed the m.room.aliases rule


def test_every_stable_version_from_1_to_12_is_known_and_stable():
    assert list(KNOWN_ROOM_VERSIONS) == ALL_VERSIONS
    assert all(get_room_version(v).is_stable for v in ALL_VERSIONS)


def test_the_default_room_version_is_11_until_the_operator_chooses_12():
    # rooms/_index.md recommends 12; we default to 11 for older clients and bridges that assume
    # `!id:server` room IDs (docs/decisions.md), and 12 is one config key away.
    assert DEFAULT_ROOM_VERSION == "11"


@pytest.mark.parametrize("flag, first", sorted(FIRST_VERSION_WITH.items()))
def test_flags_turn_on_at_their_room_version_and_stay_on(flag, first):
    for v in ALL_VERSIONS:
        assert getattr(get_room_version(v), flag) is (int(v) >= first), f"{flag} in v{v}"


@pytest.mark.parametrize("flag, last", sorted(LAST_VERSION_WITH.items()))
def test_flags_removed_in_a_later_version_stay_off(flag, last):
    for v in ALL_VERSIONS:
        assert getattr(get_room_version(v), flag) is (int(v) <= last), f"{flag} in v{v}"


def test_every_boolean_flag_is_covered_by_the_tables():
    rv = get_room_version("1")
    booleans = {name for name in rv.__dataclass_fields__ if isinstance(getattr(rv, name), bool)}
    assert booleans == set(FIRST_VERSION_WITH) | set(LAST_VERSION_WITH)


@pytest.mark.parametrize(
    "version, fmt",
    [("1", EventIdFormat.V1), ("2", EventIdFormat.V1), ("3", EventIdFormat.V2)]
    + [(str(v), EventIdFormat.V3) for v in range(4, 13)],
)
def test_event_id_formats(version, fmt):
    rv = get_room_version(version)
    assert rv.event_id_format is fmt
    assert rv.event_id_in_event is (fmt is EventIdFormat.V1)


@pytest.mark.parametrize(
    "version, algorithm",
    [("1", StateResAlgorithm.V1)]
    + [(str(v), StateResAlgorithm.V2) for v in range(2, 12)]
    + [("12", StateResAlgorithm.V2_1)],
)
def test_state_resolution_algorithms(version, algorithm):
    assert get_room_version(version).state_res is algorithm


@pytest.mark.parametrize("bad", ["13", "0", "", "org.example.custom", None, 5])
def test_unknown_room_versions_raise_with_the_identifier(bad):
    with pytest.raises(UnsupportedRoomVersion) as exc:
        get_room_version(bad)
    assert exc.value.identifier == str(bad)
