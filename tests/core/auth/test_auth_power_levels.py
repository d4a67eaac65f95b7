"""The power-level helpers other code uses, and applying redactions (v3+ "Handling redactions")."""

from __future__ import annotations

import math

import pytest

from homeserver.event_auth import (
    CREATOR_POWER_LEVEL,
    get_creators,
    get_named_level,
    get_notification_level,
    get_required_level,
    get_user_power_level,
    is_creator,
    may_apply_redaction,
    parse_level,
)
from tests.event_auth.authroom import ALICE, BOB, CAROL, CREATOR, AuthRoom, versions


@pytest.mark.parametrize(
    "value, expected",
    [
        (50, 50),
        (-20, -20),
        ("50", 50),
        (" +050 ", 50),
        ("\t-7\n", -7),
        ("0100", 100),
        ("5_0", None),
        ("50.0", None),
        ("", None),
        ("+", None),
        ("١٠", None),  # Arabic-Indic digits: int() takes them, the spec does not
        (5.114698e4, 51146),
        (-1.5, -1),
        (math.inf, None),
        (math.nan, None),
        (True, None),
        (None, None),
        ([50], None),
    ],
)
def test_stored_power_level_values_are_read_as_their_version_defines(value, expected):
    assert parse_level(value) == expected


@pytest.mark.parametrize(
    "name, expected",
    [
        ("ban", 50),
        ("kick", 50),
        ("redact", 50),
        ("invite", 0),
        ("state_default", 50),
        ("events_default", 0),
        ("users_default", 0),
    ],
)
def test_named_levels_default_as_the_spec_says(name, expected):
    assert get_named_level({}, name) == expected
    assert get_named_level(None, name) == expected


def test_named_levels_are_read_from_the_content_and_fall_back_when_malformed():
    assert get_named_level({"ban": "75"}, "ban") == 75
    assert get_named_level({"ban": "lots"}, "ban") == 50


def test_the_required_level_prefers_the_events_entry_then_the_state_or_message_default():
    pl = {"events": {"m.room.name": 80, "m.room.message": "5"}, "state_default": 40, "events_default": 10}
    assert get_required_level("m.room.name", True, pl) == 80
    assert get_required_level("m.room.message", False, pl) == 5
    assert get_required_level("m.room.topic", True, pl) == 40
    assert get_required_level("m.reaction", False, pl) == 10


def test_the_required_level_without_power_levels_is_50_for_state_and_0_for_messages():
    assert get_required_level("m.room.name", True, None) == 50
    assert get_required_level("m.room.message", False, None) == 0


def test_the_notification_level_defaults_to_50():
    assert get_notification_level(None, "room") == 50
    assert get_notification_level({"notifications": {"room": 20}}, "room") == 20


@pytest.mark.parametrize("v", versions())
def test_a_listed_user_has_their_level_and_others_the_users_default(v):
    room = AuthRoom(v).set_power_levels(users={ALICE: 70}, users_default=5)
    assert get_user_power_level(ALICE, room.state, room.rv) == 70
    assert get_user_power_level(BOB, room.state, room.rv) == 5


@pytest.mark.parametrize("v", versions())
def test_without_power_levels_the_creator_has_100_or_infinity_in_v12_and_others_0(v):
    room = AuthRoom(v, power_levels=None)
    expected = CREATOR_POWER_LEVEL if room.rv.creator_power_infinite else 100
    assert get_user_power_level(CREATOR, room.state, room.rv) == expected
    assert get_user_power_level(ALICE, room.state, room.rv) == 0


@pytest.mark.parametrize("v", versions())
def test_the_creator_listed_lower_in_power_levels_has_that_level_before_v12(v):
    room = AuthRoom(v).set_power_levels(users={CREATOR: 10})
    expected = CREATOR_POWER_LEVEL if room.rv.creator_power_infinite else 10
    assert get_user_power_level(CREATOR, room.state, room.rv) == expected


@pytest.mark.parametrize("v", versions())
def test_additional_creators_have_infinite_power_only_in_v12(v):
    room = AuthRoom(v, create_content={"additional_creators": [ALICE]})
    expected = CREATOR_POWER_LEVEL if room.rv.creator_power_infinite else 0
    assert get_user_power_level(ALICE, room.state, room.rv) == expected


@pytest.mark.parametrize("v", versions())
def test_the_creators_are_content_creator_then_the_sender_then_also_additional_creators(v):
    room = AuthRoom(v, create_content={"creator": CAROL, "additional_creators": [ALICE, 7]})
    creators = get_creators(room.create, room.rv)
    if not room.rv.implicit_room_creator:
        assert creators == {CAROL}
    elif not room.rv.creator_power_infinite:
        assert creators == {CREATOR}
    else:
        assert creators == {CREATOR, ALICE}
    for user in (CREATOR, ALICE, CAROL, BOB):
        assert is_creator(user, room.create, room.rv) is (user in creators)


# --- may_apply_redaction ---------------------------------------------------------------


def _redaction_pair(v: str, redactor: str, original_sender: str, original_server: str):
    room = AuthRoom(v).join(ALICE, BOB)
    original = room.event(
        "m.room.message",
        original_sender,
        {"body": "x"},
        event_id=f"$9:{original_server}" if room.rv.event_id_in_event else "$hash900",
    )
    redaction = room.event(
        "m.room.redaction", redactor, {"redacts": original.event_id}, redacts=original.event_id
    )
    return room, redaction, original


@pytest.mark.parametrize("v", versions())
def test_a_redaction_of_ones_own_event_is_applied(v):
    room, redaction, original = _redaction_pair(v, BOB, BOB, "b.example")
    assert may_apply_redaction(redaction, original, room.state, room.rv)


@pytest.mark.parametrize("v", versions(3))
def test_a_low_power_redaction_of_another_servers_event_is_not_applied_from_v3(v):
    room, redaction, original = _redaction_pair(v, BOB, ALICE, "a.example")
    assert not may_apply_redaction(redaction, original, room.state, room.rv)


@pytest.mark.parametrize("v", versions())
def test_a_redaction_by_a_user_at_the_redact_level_is_applied(v):
    room, redaction, original = _redaction_pair(v, ALICE, BOB, "b.example")
    room.set_users({ALICE: 50})
    assert may_apply_redaction(redaction, original, room.state, room.rv)


@pytest.mark.parametrize("v", versions(1, 2))
def test_v1_redactions_compare_the_event_id_domains(v):
    room, redaction, original = _redaction_pair(v, BOB, ALICE, "b.example")
    assert may_apply_redaction(redaction, original, room.state, room.rv)
    room, redaction, original = _redaction_pair(v, BOB, BOB, "a.example")
    assert not may_apply_redaction(redaction, original, room.state, room.rv)
