"""Signing JSON and events: the appendix test vectors byte for byte, verification, key files."""

import copy

import pytest
from unpaddedbase64 import decode_base64

from homeserver.events.canonical_json import encode_canonical_json
from homeserver.events.hashing import add_content_hash, check_content_hash
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, get_room_version
from homeserver.events.signing import (
    SignatureError,
    SigningKeyFileError,
    decode_verify_key,
    encode_verify_key_base64,
    event_signature_key_ids,
    format_signing_keys,
    generate_signing_key,
    get_verify_key,
    key_id_of,
    parse_signing_keys,
    read_signing_key_file,
    sign_event,
    sign_json,
    signing_key_from_seed,
    verify_event_signature,
    verify_json_signature,
    write_signing_key_file,
)

SEED = decode_base64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
KEY = signing_key_from_seed(SEED, "1")
V1 = get_room_version("1")

MINIMAL_EVENT = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {"age_ts": 1000000},
}
MINIMAL_EVENT_SIGNED = {
    "auth_events": [],
    "content": {},
    "depth": 3,
    "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "prev_events": [],
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
        }
    },
    "type": "X",
    "unsigned": {"age_ts": 1000000},
}
REDACTABLE_EVENT = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {},
    "unsigned": {"age_ts": 1000000},
}
REDACTABLE_EVENT_SIGNED = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "hashes": {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
        }
    },
    "unsigned": {"age_ts": 1000000},
}


def test_appendix_key_has_id_ed25519_1():
    assert key_id_of(KEY) == "ed25519:1"


def test_signing_an_empty_object_matches_the_appendix_byte_for_byte():
    expected = {
        "signatures": {
            "domain": {
                "ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
            }
        }
    }
    assert encode_canonical_json(sign_json({}, "domain", KEY)) == encode_canonical_json(expected)


def test_signing_an_object_with_data_matches_the_appendix_byte_for_byte():
    expected = {
        "one": 1,
        "signatures": {
            "domain": {
                "ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
            }
        },
        "two": "Two",
    }
    signed = sign_json({"one": 1, "two": "Two"}, "domain", KEY)
    assert encode_canonical_json(signed) == encode_canonical_json(expected)


@pytest.mark.parametrize(
    "event, expected",
    [(MINIMAL_EVENT, MINIMAL_EVENT_SIGNED), (REDACTABLE_EVENT, REDACTABLE_EVENT_SIGNED)],
    ids=["minimal", "redactable"],
)
def test_event_signing_matches_the_appendix_byte_for_byte(event, expected):
    original = copy.deepcopy(event)
    signed = sign_event(add_content_hash(event), V1, "domain", KEY)
    assert encode_canonical_json(signed) == encode_canonical_json(expected)
    assert event == original, "signing must not mutate its input"
    assert check_content_hash(signed)
    verify_event_signature(signed, V1, "domain", get_verify_key(KEY))


def test_signature_survives_redaction_but_content_hash_does_not():
    signed = sign_event(add_content_hash(REDACTABLE_EVENT), V1, "domain", KEY)
    redacted = {**signed, "content": {}}
    verify_event_signature(redacted, V1, "domain", get_verify_key(KEY))
    assert not check_content_hash(redacted)


@pytest.mark.parametrize("version", sorted(KNOWN_ROOM_VERSIONS, key=int))
def test_tampering_with_a_protected_field_breaks_the_signature_in_every_version(version):
    rv = get_room_version(version)
    event = {**MINIMAL_EVENT, "type": "m.room.member", "state_key": "@a:domain", "content": {"membership": "join"}}
    signed = sign_event(add_content_hash(event), rv, "domain", KEY)
    verify_event_signature(signed, rv, "domain", get_verify_key(KEY))
    tampered = {**signed, "content": {"membership": "leave"}}
    with pytest.raises(SignatureError, match="unable to verify"):
        verify_event_signature(tampered, rv, "domain", get_verify_key(KEY))


def test_verification_fails_for_other_server_key_or_garbage():
    signed = sign_json({"a": 1}, "domain", KEY)
    other = get_verify_key(generate_signing_key("1", seed=b"\x01" * 32))
    with pytest.raises(SignatureError, match="unable to verify"):
        verify_json_signature(signed, "domain", other)
    with pytest.raises(SignatureError, match="missing signature"):
        verify_json_signature(signed, "elsewhere", get_verify_key(KEY))
    with pytest.raises(SignatureError, match="no signatures"):
        verify_json_signature({"a": 1}, "domain", get_verify_key(KEY))
    garbage = {"a": 1, "signatures": {"domain": {"ed25519:1": "!!notbase64!!"}}}
    with pytest.raises(SignatureError, match="invalid signature base64"):
        verify_json_signature(garbage, "domain", get_verify_key(KEY))


def test_unsigned_is_not_covered_by_the_signature():
    signed = sign_json({"a": 1, "unsigned": {"age": 1}}, "domain", KEY)
    verify_json_signature({**signed, "unsigned": {"age": 99}}, "domain", get_verify_key(KEY))


def test_a_second_signature_is_added_alongside_the_first():
    key2 = generate_signing_key("abc", seed=b"\x02" * 32)
    signed = sign_json(sign_json({"a": 1}, "domain", KEY), "domain", key2)
    assert set(signed["signatures"]["domain"]) == {"ed25519:1", "ed25519:abc"}
    verify_json_signature(signed, "domain", get_verify_key(KEY))
    verify_json_signature(signed, "domain", get_verify_key(key2))
    assert event_signature_key_ids(signed, "domain") == ["ed25519:1", "ed25519:abc"]


def test_verify_key_round_trips_through_base64_and_key_id():
    vk = get_verify_key(KEY)
    decoded = decode_verify_key("ed25519:1", encode_verify_key_base64(vk))
    assert decoded.encode() == vk.encode()
    assert key_id_of(decoded) == "ed25519:1"
    with pytest.raises(ValueError, match="unsupported key ID"):
        decode_verify_key("curve25519:1", encode_verify_key_base64(vk))
    with pytest.raises(ValueError, match="32"):
        decode_verify_key("ed25519:1", "AAAA")


def test_key_file_text_matches_synapses_format_and_round_trips():
    text = format_signing_keys([KEY])
    assert text == "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0\n"
    (parsed,) = parse_signing_keys("\n" + text + "\n")
    assert parsed.encode() == KEY.encode() and key_id_of(parsed) == "ed25519:1"


def test_key_files_are_written_owner_only_and_read_back(tmp_path):
    path = tmp_path / "signing.key"
    keys = [generate_signing_key("a_1"), generate_signing_key("b_2")]
    write_signing_key_file(path, keys)
    assert path.stat().st_mode & 0o777 == 0o600
    assert [(k.version, k.encode()) for k in read_signing_key_file(path)] == [
        (k.version, k.encode()) for k in keys
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("ed25519 1\n", "line 1: expected"),
        ("\nrsa 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0\n", "line 2: unsupported algorithm"),
        ("ed25519 1 AAAA\n", "line 1: the seed is 3 bytes"),
        ("ed25519 1 AAAAA\n", "line 1: the seed is not valid base64"),
        ("ed25519 bad-version YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0\n", "invalid key version"),
    ],
)
def test_malformed_key_files_name_the_line(text, message):
    with pytest.raises(SigningKeyFileError, match=message):
        parse_signing_keys(text)
