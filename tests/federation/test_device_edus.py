"""The device EDUs' checks (pure): what an origin may say about whom, and the shapes the spec gives."""

from __future__ import annotations

import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from federation.device_edus import (
    EduRejected,
    parse_device_list_update,
    parse_direct_to_device,
    parse_signing_key_update,
)
from homeserver.e2ee.remote_devices import checked_cross_signing_keys

ORIGIN = "remote.example"
US = "us.example"
BOB = f"@bob:{ORIGIN}"


def keys_of(device_id: str, user_id: str = BOB, key=None) -> dict:
    key = key or generate_signing_key(device_id)
    public = encode_verify_key_base64(get_verify_key(key))
    return sign_json({"user_id": user_id, "device_id": device_id, "algorithms": [],
                      "keys": {f"ed25519:{device_id}": public}}, user_id, key)


def update(**content) -> dict:
    return {"user_id": BOB, "device_id": "PHONE", "stream_id": 3, "prev_id": [2], **content}


def test_a_well_formed_device_list_update_is_parsed():
    keys = keys_of("PHONE")
    parsed = parse_device_list_update(ORIGIN, update(keys=keys, device_display_name="Phone"))
    assert (parsed.user_id, parsed.device_id, parsed.stream_id, parsed.prev_ids) == (BOB, "PHONE", 3, (2,))
    assert parsed.keys == keys and parsed.display_name == "Phone" and not parsed.deleted


def test_a_deleted_device_needs_no_keys_and_prev_id_may_be_absent():
    parsed = parse_device_list_update(ORIGIN, {"user_id": BOB, "device_id": "OLD", "stream_id": 9, "deleted": True})
    assert parsed.deleted and parsed.prev_ids == () and parsed.keys is None


@pytest.mark.parametrize(("content", "field"), [
    (update(user_id="@carol:elsewhere.example"), "user_id"),
    (update(user_id="not a user"), "user_id"),
    (update(device_id=""), "device_id"),
    (update(stream_id="3"), "stream_id"),
    (update(stream_id=True), "stream_id"),
    (update(prev_id=2), "prev_id"),
    (update(prev_id=["2"]), "prev_id"),
    (update(deleted="yes"), "deleted"),
    (update(device_display_name=5), "device_display_name"),
    (update(keys=keys_of("OTHER")), "keys"),
    (update(keys={**keys_of("PHONE"), "signatures": keys_of("PHONE", key=generate_signing_key("X"))["signatures"]}),
     "keys"),
    ("not an object", "content"),
])
def test_a_malformed_or_foreign_device_list_update_is_rejected_naming_the_field(content, field):
    with pytest.raises(EduRejected, match=field):
        parse_device_list_update(ORIGIN, content)


def to_device(**content) -> dict:
    return {"sender": BOB, "type": "m.room_key", "message_id": "abc",
            "messages": {f"@alice:{US}": {"DEV": {"x": 1}, "*": {"y": 2}}}, **content}


def test_a_direct_to_device_edu_is_parsed_into_deliveries_for_our_users():
    sender, event_type, message_id, messages = parse_direct_to_device(ORIGIN, US, to_device())
    assert (sender, event_type, message_id) == (BOB, "m.room_key", "abc")
    assert messages == [(f"@alice:{US}", "DEV", {"x": 1}), (f"@alice:{US}", "*", {"y": 2})]


@pytest.mark.parametrize(("content", "field"), [
    (to_device(sender="@mallory:elsewhere.example"), "sender"),
    (to_device(type=""), "type"),
    (to_device(message_id=""), "message_id"),
    (to_device(message_id="x" * 256), "message_id"),
    (to_device(messages=[]), "messages"),
    (to_device(messages={"@carol:elsewhere.example": {"D": {}}}), "messages"),
    (to_device(messages={f"@alice:{US}": {"D": "text"}}), "messages"),
])
def test_a_malformed_or_misaddressed_direct_to_device_edu_is_rejected(content, field):
    with pytest.raises(EduRejected, match=field):
        parse_direct_to_device(ORIGIN, US, content)


def cross_signing(user_id: str = BOB) -> tuple[dict, dict]:
    master_key = generate_signing_key("")
    master_public = encode_verify_key_base64(get_verify_key(master_key))
    master_key.version = master_public
    master = {"user_id": user_id, "usage": ["master"], "keys": {f"ed25519:{master_public}": master_public}}
    ssk = generate_signing_key("")
    ssk_public = encode_verify_key_base64(get_verify_key(ssk))
    self_signing = sign_json({"user_id": user_id, "usage": ["self_signing"],
                              "keys": {f"ed25519:{ssk_public}": ssk_public}}, user_id, master_key)
    return master, self_signing


def test_signing_key_updates_are_checked_for_their_owner_and_the_master_signature():
    master, self_signing = cross_signing()
    user_id, keys = parse_signing_key_update(ORIGIN, {"user_id": BOB, "master_key": master,
                                                      "self_signing_key": self_signing})
    assert user_id == BOB and keys == {"master": master, "self_signing": self_signing}
    assert checked_cross_signing_keys(keys, BOB) == keys
    other_master, _ = cross_signing()
    assert checked_cross_signing_keys({"master": other_master, "self_signing": self_signing}, BOB) == {
        "master": other_master}
    with pytest.raises(EduRejected, match="user_id"):
        parse_signing_key_update(ORIGIN, {"user_id": "@eve:elsewhere.example", "master_key": master})
    with pytest.raises(EduRejected, match="master_key"):
        parse_signing_key_update(ORIGIN, {"user_id": BOB, "master_key": cross_signing("@eve:x.example")[0]})
