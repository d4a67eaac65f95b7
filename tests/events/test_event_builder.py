"""Building local events: hashed, signed, valid, with the right ID for each room version."""

import random

import pytest
from unpaddedbase64 import decode_base64

from homeserver.events.builder import MAX_DEPTH, build_event
from homeserver.events.hashing import check_content_hash, compute_event_id
from homeserver.events.room_versions import get_room_version
from homeserver.events.signing import get_verify_key, signing_key_from_seed, verify_event_signature
from homeserver.events.validation import validate_pdu

KEY = signing_key_from_seed(decode_base64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"), "1")
ALL_VERSIONS = [str(v) for v in range(1, 13)]


def build(version: str, **overrides):
    kwargs = dict(
        room_version=get_room_version(version),
        event_type="m.room.message",
        sender="@alice:example.org",
        content={"body": "hello", "msgtype": "m.text"},
        room_id="!room:example.org" if version != "12" else "!roomhash",
        prev_event_ids=["$prev:example.org"] if version in ("1", "2") else ["$prev"],
        auth_event_ids=["$auth:example.org"] if version in ("1", "2") else ["$auth"],
        depth=7,
        origin_server_ts=1_700_000_000_000,
        origin="example.org",
        signing_key=KEY,
        rng=random.Random(42),
    )
    kwargs.update(overrides)
    return build_event(**kwargs)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_built_events_are_valid_hashed_and_signed_in_every_version(version):
    rv = get_room_version(version)
    event = build(version)
    validate_pdu(event.pdu, rv)
    assert check_content_hash(event.pdu)
    verify_event_signature(event.pdu, rv, "example.org", get_verify_key(KEY))
    assert event.event_id == compute_event_id(event.pdu, rv)
    assert event.sender == "@alice:example.org" and event.depth == 7


@pytest.mark.parametrize("version", ["1", "2"])
def test_v1_and_v2_ids_are_a_random_token_at_the_origin_and_reproducible_from_the_rng(version):
    first, second = build(version), build(version)
    assert first.event_id == second.event_id
    assert first.event_id.startswith("$") and first.event_id.endswith(":example.org")
    assert build(version, rng=random.Random(7)).event_id != first.event_id
    assert build(version, event_id_token="fixed").event_id == "$fixed:example.org"


def test_v1_references_are_pairs_carrying_the_hashes_supplied():
    event = build("1", event_hashes={"$prev:example.org": {"sha256": "abc"}})
    assert event.pdu["prev_events"] == [["$prev:example.org", {"sha256": "abc"}]]
    assert event.pdu["auth_events"] == [["$auth:example.org", {}]]
    assert event.prev_event_ids == ["$prev:example.org"]


def test_v3_and_later_ids_are_hashes_and_the_pdu_carries_none():
    event = build("4")
    assert "event_id" not in event.pdu
    assert len(event.event_id) == 44


def test_state_key_is_included_only_for_state_events():
    assert not build("10").is_state()
    state = build("10", event_type="m.room.topic", state_key="", content={"topic": "t"})
    assert state.is_state() and state.state_tuple() == ("m.room.topic", "")


@pytest.mark.parametrize("version, where", [("10", "top"), ("11", "content"), ("12", "content")])
def test_redacts_goes_top_level_before_v11_and_into_content_after(version, where):
    event = build(version, event_type="m.room.redaction", content={}, redacts="$target")
    assert event.redacts == "$target"
    assert ("redacts" in event.pdu) == (where == "top")
    assert ("redacts" in event.content) == (where == "content")


def test_v12_create_has_no_room_id_and_derives_one():
    event = build("12", event_type="m.room.create", state_key="", content={}, room_id=None,
                  prev_event_ids=[], auth_event_ids=[])  # fmt: skip
    assert "room_id" not in event.pdu
    assert event.room_id == "!" + event.event_id[1:]
    validate_pdu(event.pdu, get_room_version("12"))
    with pytest.raises(ValueError, match="no room_id"):
        build("12", event_type="m.room.create", state_key="", content={}, room_id="!x")
    with pytest.raises(ValueError, match="room_id is required"):
        build("11", room_id=None)


def test_depth_is_capped_at_the_canonical_json_maximum():
    assert build("10", depth=2**60).depth == MAX_DEPTH == 2**53 - 1


def test_the_callers_content_is_not_mutated():
    content = {}
    build("11", event_type="m.room.redaction", content=content, redacts="$t")
    assert content == {}


def test_unsigned_data_is_kept_outside_the_hash_and_signature():
    event = build("10", unsigned={"transaction_id": "t1"})
    assert event.unsigned == {"transaction_id": "t1"}
    assert event.event_id == build("10").event_id
