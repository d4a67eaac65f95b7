"""The redaction algorithm of every room version, as a table written from rooms/vN.md."""

import copy

import pytest

from homeserver.events.redaction import redact
from homeserver.events.room_versions import get_room_version

ALL_VERSIONS = [str(v) for v in range(1, 13)]


def versions(first: int, last: int) -> set[str]:
    return {str(v) for v in range(first, last + 1)}


# Every key any version might keep, plus junk no version keeps.
CONTENT = {
    "m.room.member": {
        "membership": "join",
        "join_authorised_via_users_server": "@u:other",
        "third_party_invite": {"signed": {"token": "t"}, "display_name": "Alice"},
        "displayname": "Alice",
        "avatar_url": "mxc://x/y",
    },
    "m.room.create": {"creator": "@a:x", "room_version": "9", "m.federate": False, "predecessor": {}},
    "m.room.join_rules": {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}], "x": 1},
    "m.room.power_levels": {
        "ban": 50,
        "events": {},
        "events_default": 0,
        "invite": 0,
        "kick": 50,
        "redact": 50,
        "state_default": 50,
        "users": {},
        "users_default": 0,
        "notifications": {"room": 50},
    },
    "m.room.aliases": {"aliases": ["#a:x"], "x": 1},
    "m.room.history_visibility": {"history_visibility": "shared", "x": 1},
    "m.room.redaction": {"redacts": "$target", "reason": "spam"},
    "m.room.message": {"body": "hello", "msgtype": "m.text"},
    "m.room.name": {"name": "secret"},
}

PL_KEYS = {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}

# (event type, versions) -> content keys kept; rows for one type cover all 12 versions.
EXPECTED_CONTENT_KEYS = [
    ("m.room.member", versions(1, 8), {"membership"}),
    ("m.room.member", versions(9, 10), {"membership", "join_authorised_via_users_server"}),
    ("m.room.member", versions(11, 12), {"membership", "join_authorised_via_users_server", "third_party_invite"}),
    ("m.room.create", versions(1, 10), {"creator"}),
    ("m.room.create", versions(11, 12), set(CONTENT["m.room.create"])),
    ("m.room.join_rules", versions(1, 7), {"join_rule"}),
    ("m.room.join_rules", versions(8, 12), {"join_rule", "allow"}),
    ("m.room.power_levels", versions(1, 10), PL_KEYS),
    ("m.room.power_levels", versions(11, 12), PL_KEYS | {"invite"}),
    ("m.room.aliases", versions(1, 5), {"aliases"}),
    ("m.room.aliases", versions(6, 12), set()),
    ("m.room.history_visibility", versions(1, 12), {"history_visibility"}),
    ("m.room.redaction", versions(1, 10), set()),
    ("m.room.redaction", versions(11, 12), {"redacts"}),
    ("m.room.message", versions(1, 12), set()),
    ("m.room.name", versions(1, 12), set()),
]

ESSENTIAL_TOP_LEVEL = {
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures",
    "depth", "prev_events", "auth_events", "origin_server_ts",
}  # fmt: skip
PRE_V11_TOP_LEVEL = {"prev_state", "origin", "membership"}


def make_event(event_type: str) -> dict:
    return {
        "event_id": "$e:x",
        "type": event_type,
        "room_id": "!r:x",
        "sender": "@a:x",
        "state_key": "",
        "content": copy.deepcopy(CONTENT[event_type]),
        "hashes": {"sha256": "h"},
        "signatures": {"x": {"ed25519:1": "s"}},
        "depth": 4,
        "prev_events": ["$p"],
        "auth_events": ["$a"],
        "origin_server_ts": 1,
        "prev_state": [],
        "origin": "x",
        "membership": "join",
        "redacts": "$top-level",
        "unsigned": {"age": 1, "redacted_because": {}},
        "custom": "dropped",
    }


def test_the_content_table_covers_every_type_and_version_exactly_once():
    for event_type in CONTENT:
        covered = [v for t, vs, _ in EXPECTED_CONTENT_KEYS if t == event_type for v in vs]
        assert sorted(covered, key=int) == ALL_VERSIONS, event_type


@pytest.mark.parametrize(
    "event_type, version, kept",
    [(t, v, kept) for t, vs, kept in EXPECTED_CONTENT_KEYS for v in sorted(vs, key=int)],
)
def test_redaction_keeps_exactly_the_content_keys_of_its_room_version(event_type, version, kept):
    redacted = redact(make_event(event_type), get_room_version(version))
    assert set(redacted["content"]) == kept


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_redaction_keeps_exactly_the_top_level_keys_of_its_room_version(version):
    expected = ESSENTIAL_TOP_LEVEL | (PRE_V11_TOP_LEVEL if int(version) < 11 else set())
    assert set(redact(make_event("m.room.message"), get_room_version(version))) == expected


@pytest.mark.parametrize("version", ["11", "12"])
def test_v11_member_keeps_only_the_signed_part_of_a_third_party_invite(version):
    rv = get_room_version(version)
    assert redact(make_event("m.room.member"), rv)["content"]["third_party_invite"] == {
        "signed": {"token": "t"}
    }
    no_signed = {**make_event("m.room.member"), "content": {"third_party_invite": {"display_name": "A"}}}
    assert redact(no_signed, rv)["content"] == {"third_party_invite": {}}
    not_an_object = {**make_event("m.room.member"), "content": {"third_party_invite": "x"}}
    assert redact(not_an_object, rv)["content"] == {}


def test_kept_values_are_kept_whole_and_unchanged():
    event = make_event("m.room.power_levels")
    redacted = redact(event, get_room_version("11"))
    assert redacted["content"]["users"] == event["content"]["users"]
    assert redacted["prev_events"] == ["$p"] and redacted["signatures"] == event["signatures"]


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_redaction_is_idempotent_and_does_not_mutate_its_input(version):
    rv = get_room_version(version)
    for event_type in CONTENT:
        event = make_event(event_type)
        before = copy.deepcopy(event)
        once = redact(event, rv)
        assert redact(once, rv) == once
        assert event == before


def test_an_event_without_content_redacts_to_empty_content():
    event = make_event("m.room.message")
    del event["content"]
    assert redact(event, get_room_version("10"))["content"] == {}
