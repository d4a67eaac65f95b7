"""Content hashes, reference hashes and the three event ID formats."""

import hashlib

import pytest
from unpaddedbase64 import encode_base64

from homeserver.events.event import Event
from homeserver.events.hashing import (
    EventIdError,
    add_content_hash,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
)
from homeserver.events.room_versions import EventIdFormat, get_room_version

BASE = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
}
HASHED = add_content_hash(BASE)


def test_content_hash_of_the_appendix_minimal_event():
    assert HASHED["hashes"] == {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"}
    assert "hashes" not in BASE, "add_content_hash returns a copy"


def test_content_hash_ignores_unsigned_signatures_and_existing_hashes():
    noisy = {**BASE, "unsigned": {"age": 5}, "signatures": {"a": {}}, "hashes": {"sha256": "x"}}
    assert compute_content_hash(noisy) == compute_content_hash(BASE)


def test_content_hash_covers_content_and_every_other_top_level_key():
    assert compute_content_hash({**BASE, "content": {"body": "x"}}) != compute_content_hash(BASE)
    assert compute_content_hash({**BASE, "custom": 1}) != compute_content_hash(BASE)


def test_check_content_hash_accepts_the_right_hash_only():
    assert check_content_hash(HASHED)
    assert not check_content_hash({**HASHED, "content": {"body": "changed"}})
    assert not check_content_hash(BASE)
    assert not check_content_hash({**BASE, "hashes": "nope"})
    assert not check_content_hash({**BASE, "hashes": {"sha256": 3}})
    assert not check_content_hash({**BASE, "hashes": {"sha256": "AAAAA"}})


def _expected_reference_hash(canonical: bytes) -> str:
    return encode_base64(hashlib.sha256(canonical).digest(), urlsafe=True)


def test_reference_hash_covers_the_redacted_event_with_hashes_but_without_signatures():
    # Written out by hand from the spec's rules: the redacted event (v4: `origin` kept),
    # `signatures` and `unsigned` removed, keys sorted, no whitespace.
    event = {**HASHED, "signatures": {"domain": {"ed25519:1": "sig"}}, "unsigned": {"age": 1}}
    canonical = (
        b'{"auth_events":[],"content":{},"depth":3,'
        b'"hashes":{"sha256":"5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},"origin":"domain",'
        b'"origin_server_ts":1000000,"prev_events":[],"room_id":"!x:domain","sender":"@a:domain","type":"X"}'
    )
    assert compute_event_id(event, get_room_version("4")) == "$" + _expected_reference_hash(canonical)


def test_v11_reference_hash_no_longer_covers_origin():
    rv = get_room_version("11")
    without_origin = {k: v for k, v in HASHED.items() if k != "origin"}
    assert compute_reference_hash(HASHED, rv) == compute_reference_hash(without_origin, rv)
    v10 = get_room_version("10")
    assert compute_reference_hash(HASHED, v10) != compute_reference_hash(without_origin, v10)


def test_reference_hash_ignores_redactable_content():
    rv = get_room_version("10")
    with_body = {**HASHED, "content": {"body": "hello"}}
    assert compute_reference_hash(with_body, rv) == compute_reference_hash(HASHED, rv)


def _event_with_url_unsafe_hash():
    # Find a depth whose reference hash contains a '+' or '/' in standard base64, so the
    # two alphabets visibly differ.
    for depth in range(1, 1000):
        event = {**HASHED, "depth": depth}
        if set(encode_base64(compute_reference_hash(event, get_room_version("3")))) & {"+", "/"}:
            return event
    raise AssertionError("no such event in 1000 tries")


def test_v3_event_ids_use_standard_base64_and_v4_url_safe_base64():
    event = _event_with_url_unsafe_hash()
    v3_id = compute_event_id(event, get_room_version("3"))
    v4_id = compute_event_id(event, get_room_version("4"))
    assert len(v3_id) == len(v4_id) == 44 and v3_id[0] == v4_id[0] == "$"
    assert set(v3_id) & {"+", "/"} and not set(v4_id) & {"+", "/"}
    assert v3_id.replace("+", "-").replace("/", "_") == v4_id


@pytest.mark.parametrize("version", ["1", "2"])
def test_v1_and_v2_event_ids_are_carried_in_the_event(version):
    rv = get_room_version(version)
    assert rv.event_id_format is EventIdFormat.V1
    assert compute_event_id({**HASHED, "event_id": "$abc:domain"}, rv) == "$abc:domain"
    with pytest.raises(EventIdError):
        compute_event_id(HASHED, rv)


def test_event_computes_its_id_lazily_and_caches_it():
    rv = get_room_version("10")
    event = Event(HASHED, rv)
    assert event.event_id == compute_event_id(HASHED, rv)
    assert event.event_id is event.event_id


def test_v12_create_event_room_id_is_derived_from_its_event_id():
    rv = get_room_version("12")
    create = add_content_hash(
        {k: v for k, v in {**BASE, "type": "m.room.create", "state_key": ""}.items() if k != "room_id"}
    )
    event = Event(create, rv)
    assert event.room_id == "!" + event.event_id[1:]
