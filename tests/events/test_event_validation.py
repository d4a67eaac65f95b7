"""PDU validation: required fields, types, size limits in bytes, strict JSON, v12 create."""

import pytest

from homeserver.events.canonical_json import encode_canonical_json
from homeserver.events.room_versions import get_room_version
from homeserver.events.validation import EventValidationError, validate_pdu

ALL_VERSIONS = [str(v) for v in range(1, 13)]


def valid_pdu(version: str, **overrides) -> dict:
    rv = get_room_version(version)
    pdu = {
        "type": "m.room.message",
        "sender": "@alice:example.org",
        "room_id": "!room:example.org",
        "content": {"body": "hi", "msgtype": "m.text"},
        "origin_server_ts": 1_700_000_000_000,
        "depth": 5,
        "hashes": {"sha256": "abc"},
        "signatures": {"example.org": {"ed25519:1": "sig"}},
        "prev_events": ["$prev"],
        "auth_events": ["$auth1", "$auth2"],
    }
    if rv.event_id_in_event:
        pdu["event_id"] = "$ev:example.org"
        pdu["prev_events"] = [["$prev:example.org", {"sha256": "x"}]]
        pdu["auth_events"] = [["$auth:example.org", {"sha256": "y"}]]
    if rv.room_id_from_create_event:
        pdu["room_id"] = "!hashOfTheCreateEvent"
    pdu.update(overrides)
    return pdu


def expect_error(pdu, version, field, match=None, errcode="M_BAD_JSON"):
    with pytest.raises(EventValidationError, match=match) as exc:
        validate_pdu(pdu, get_room_version(version))
    assert exc.value.field == field
    assert exc.value.errcode == errcode
    return exc.value


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_well_formed_event_passes_in_every_version(version):
    validate_pdu(valid_pdu(version), get_room_version(version))
    validate_pdu(valid_pdu(version, type="m.room.topic", state_key=""), get_room_version(version))


@pytest.mark.parametrize("version", ["1", "4", "11"])
@pytest.mark.parametrize(
    "field", ["type", "sender", "room_id", "content", "origin_server_ts", "depth", "prev_events", "auth_events"]
)
def test_a_missing_required_field_is_named(version, field):
    pdu = valid_pdu(version)
    del pdu[field]
    expect_error(pdu, version, field, match=f"'{field}' is required")


def test_v1_events_must_carry_their_event_id_but_v3_events_need_not():
    pdu = valid_pdu("1")
    del pdu["event_id"]
    expect_error(pdu, "1", "event_id", match="required")
    validate_pdu(valid_pdu("3"), get_room_version("3"))


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"type": 5}, "type"),
        ({"sender": ["@a:b"]}, "sender"),
        ({"content": "text"}, "content"),
        ({"depth": "5"}, "depth"),
        ({"depth": True}, "depth"),
        ({"origin_server_ts": 1.5}, "origin_server_ts"),
        ({"state_key": 1}, "state_key"),
        ({"unsigned": []}, "unsigned"),
        ({"hashes": {}}, "hashes.sha256"),
        ({"hashes": []}, "hashes"),
        ({"signatures": {"example.org": "sig"}}, "signatures.example.org"),
        ({"signatures": {"example.org": {"ed25519:1": 3}}}, "signatures.example.org.ed25519:1"),
        ({"prev_events": "$prev"}, "prev_events"),
        ({"auth_events": [3]}, "auth_events[0]"),
        ({"auth_events": ["$a", "no-sigil"]}, "auth_events[1]"),
        ({"sender": "alice"}, "sender"),
        ({"sender": "@alice"}, "sender"),
        ({"room_id": "#room:example.org"}, "room_id"),
        ({"depth": -1}, "depth"),
    ],
)
def test_wrongly_typed_or_shaped_fields_are_named(overrides, field):
    expect_error(valid_pdu("10", **overrides), "10", field)


def test_v1_references_must_be_event_id_and_hashes_pairs():
    expect_error(valid_pdu("1", prev_events=["$p:x"]), "1", "prev_events[0]", match="pair")
    expect_error(valid_pdu("1", auth_events=[["$a:x", "h"]]), "1", "auth_events[0][1]")
    expect_error(valid_pdu("2", auth_events=[["a:x", {}]]), "2", "auth_events[0][0]", match="'\\$'")


@pytest.mark.parametrize("field", ["type", "state_key"])
def test_type_and_state_key_are_limited_to_255_bytes_not_characters(field):
    validate_pdu(valid_pdu("10", **{field: "x" * 255}), get_room_version("10"))
    expect_error(valid_pdu("10", **{field: "x" * 256}), "10", field, match="255 bytes")
    # 128 two-byte characters: 128 characters but 256 bytes.
    expect_error(valid_pdu("10", **{field: "é" * 128}), "10", field, match="255 bytes \\(256\\)")


def test_sender_room_id_and_event_id_are_limited_to_255_bytes():
    long_domain = "d" * 250
    expect_error(valid_pdu("10", sender=f"@alice:{long_domain}"), "10", "sender", match="255")
    expect_error(valid_pdu("10", room_id=f"!room:{long_domain}"), "10", "room_id", match="255")
    expect_error(valid_pdu("1", event_id=f"$event:{long_domain}"), "1", "event_id", match="255")


def test_the_whole_event_is_limited_to_65536_bytes_of_canonical_json():
    pdu = valid_pdu("10")
    overhead = len(encode_canonical_json({**pdu, "content": {"body": ""}}))
    at_limit = valid_pdu("10", content={"body": "x" * (65536 - overhead)})
    validate_pdu(at_limit, get_room_version("10"))
    over = valid_pdu("10", content={"body": "x" * (65536 - overhead + 1)})
    err = expect_error(over, "10", None, match="65537 bytes", errcode="M_TOO_LARGE")
    assert "65536" in err.message


def test_the_size_limit_counts_utf8_bytes():
    pdu = valid_pdu("10", content={"body": "日" * 22000})  # 22000 characters, 66000 bytes
    expect_error(pdu, "10", None, errcode="M_TOO_LARGE")


@pytest.mark.parametrize("version", ["6", "10", "12"])
@pytest.mark.parametrize(
    "content, path",
    [
        ({"n": 1.5}, "content.n"),
        ({"n": 2**53}, "content.n"),
        ({"deep": [{"x": float("nan")}]}, "content.deep[0].x"),
    ],
)
def test_v6_and_later_reject_non_canonical_numbers_naming_the_path(version, content, path):
    expect_error(valid_pdu(version, content=content), version, path, match="not canonical JSON")


@pytest.mark.parametrize("version", ["1", "5"])
def test_v1_to_v5_tolerate_floats_and_big_integers(version):
    validate_pdu(valid_pdu(version, content={"n": 1.5, "big": 2**60}), get_room_version(version))


def test_v1_to_v5_still_reject_nan_which_is_not_json_at_all():
    expect_error(valid_pdu("5", content={"n": float("nan")}), "5", None, match="canonical JSON")


def test_v6_depth_limit_is_the_canonical_json_maximum():
    validate_pdu(valid_pdu("5", depth=2**60), get_room_version("5"))
    expect_error(valid_pdu("6", depth=2**60), "6", "depth")


def test_lone_surrogates_are_rejected():
    expect_error(valid_pdu("10", state_key="\ud800"), "10", "state_key", match="UTF-8")


def v12_create(**overrides) -> dict:
    pdu = valid_pdu("12", type="m.room.create", state_key="", content={"room_version": "12"})
    del pdu["room_id"]
    pdu.update(prev_events=[], auth_events=[])
    pdu.update(overrides)
    return pdu


def test_a_v12_create_event_has_no_room_id_and_no_references():
    validate_pdu(v12_create(), get_room_version("12"))
    expect_error(v12_create(room_id="!x"), "12", "room_id", match="absent")
    expect_error(v12_create(prev_events=["$p"]), "12", "prev_events", match="empty")
    expect_error(v12_create(auth_events=["$a"]), "12", "auth_events", match="empty")


def test_v12_room_ids_have_no_domain_but_earlier_ones_do():
    validate_pdu(valid_pdu("12", room_id="!abc"), get_room_version("12"))
    expect_error(valid_pdu("11", room_id="!abc"), "11", "room_id", match="server name")


def test_redacts_must_be_a_string_where_the_room_version_puts_it():
    expect_error(valid_pdu("10", type="m.room.redaction", redacts=5), "10", "redacts")
    expect_error(
        valid_pdu("11", type="m.room.redaction", content={"redacts": ["$x"]}), "11", "content.redacts"
    )


def test_a_non_object_event_is_rejected():
    with pytest.raises(EventValidationError, match="JSON object"):
        validate_pdu(["not", "an", "event"], get_room_version("10"))


def test_validation_errors_become_matrix_errors_with_the_right_status():
    too_large = valid_pdu("10", content={"body": "x" * 70000})
    with pytest.raises(EventValidationError) as exc:
        validate_pdu(too_large, get_room_version("10"))
    assert (exc.value.to_matrix_error().http_status, exc.value.to_matrix_error().errcode) == (413, "M_TOO_LARGE")
    with pytest.raises(EventValidationError) as exc:
        validate_pdu(valid_pdu("10", depth="x"), get_room_version("10"))
    matrix_error = exc.value.to_matrix_error()
    assert (matrix_error.http_status, matrix_error.errcode) == (400, "M_BAD_JSON")
    assert "'depth'" in matrix_error.message
