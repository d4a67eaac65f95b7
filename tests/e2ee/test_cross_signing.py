"""Cross-signing keys (/keys/device_signing/upload) and signatures (/keys/signatures/upload)."""

from __future__ import annotations

from tests.e2ee.helpers import (
    cross_signing_key,
    second_device,
    set_up_cross_signing,
    signed_copy,
    upload_device_keys,
)
from tests.support.rooms import new_user

PASSWORD_AUTH = {"type": "m.login.password", "password": "correct horse"}


def password_auth(user_id: str, session: str | None = None) -> dict:
    auth = {**PASSWORD_AUTH, "identifier": {"type": "m.id.user", "user": user_id}}
    if session is not None:
        auth["session"] = session
    return auth


async def test_first_cross_signing_upload_needs_no_password_and_query_shows_the_keys(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    keys = await set_up_cross_signing(alice)
    mine = await alice.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    assert mine["master_keys"][alice.user_id]["keys"] == keys["master"][0]["keys"]
    assert mine["self_signing_keys"][alice.user_id] == keys["self_signing"][0]
    assert mine["user_signing_keys"][alice.user_id] == keys["user_signing"][0]
    theirs = await bob.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    assert alice.user_id in theirs["master_keys"]
    assert theirs["user_signing_keys"] == {}


async def test_replacing_cross_signing_keys_requires_the_password(client):
    alice = await new_user(client, "alice")
    await set_up_cross_signing(alice)
    master, _ = cross_signing_key(alice, "master")
    challenge = await alice.call("POST", "/keys/device_signing/upload", {"master_key": master}, expect=401)
    assert challenge["flows"] == [{"stages": ["m.login.password"]}]
    await alice.call("POST", "/keys/device_signing/upload",
                     {"master_key": master, "auth": password_auth(alice.user_id, challenge["session"])})
    mine = await alice.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    assert mine["master_keys"][alice.user_id]["keys"] == master["keys"]


async def test_reuploading_the_same_cross_signing_keys_needs_no_password(client):
    alice = await new_user(client, "alice")
    keys = await set_up_cross_signing(alice)
    await alice.call("POST", "/keys/device_signing/upload", {"master_key": keys["master"][0]})


async def test_subkeys_not_signed_by_the_master_key_are_refused(client):
    alice = await new_user(client, "alice")
    master, _ = cross_signing_key(alice, "master")
    unsigned, _ = cross_signing_key(alice, "self_signing")
    body = await alice.call("POST", "/keys/device_signing/upload",
                            {"master_key": master, "self_signing_key": unsigned}, expect=400)
    assert body["errcode"] == "M_INVALID_SIGNATURE"
    assert body["error"].startswith("self_signing_key")


async def test_cross_signing_keys_with_the_wrong_usage_or_owner_name_the_field(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    master, _ = cross_signing_key(alice, "self_signing")
    body = await alice.call("POST", "/keys/device_signing/upload", {"master_key": master}, expect=400)
    assert body["error"].startswith("master_key.usage")
    bobs, _ = cross_signing_key(bob, "master")
    body = await alice.call("POST", "/keys/device_signing/upload", {"master_key": bobs}, expect=400)
    assert body["error"].startswith("master_key.user_id")


async def test_a_device_signed_by_the_self_signing_key_shows_the_signature(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    device, _ = await upload_device_keys(alice)
    keys = await set_up_cross_signing(alice)
    ssk_pub = next(iter(keys["self_signing"][0]["keys"].values()))
    signed = signed_copy(device, alice.user_id, keys["self_signing"][1])
    body = await alice.call("POST", "/keys/signatures/upload", {alice.user_id: {alice.device_id: signed}})
    assert body == {"failures": {}}
    served = (await bob.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
              )["device_keys"][alice.user_id][alice.device_id]
    assert f"ed25519:{ssk_pub}" in served["signatures"][alice.user_id]
    assert f"ed25519:{alice.device_id}" in served["signatures"][alice.user_id]


async def test_signing_another_users_master_key_with_the_user_signing_key(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    alice_keys = await set_up_cross_signing(alice)
    bob_keys = await set_up_cross_signing(bob)
    bob_master = bob_keys["master"][0]
    bob_master_pub = next(iter(bob_master["keys"].values()))
    signed = signed_copy(bob_master, alice.user_id, alice_keys["user_signing"][1])
    body = await alice.call("POST", "/keys/signatures/upload", {bob.user_id: {bob_master_pub: signed}})
    assert body == {"failures": {}}
    seen_by_alice = await alice.call("POST", "/keys/query", {"device_keys": {bob.user_id: []}})
    assert alice.user_id in seen_by_alice["master_keys"][bob.user_id]["signatures"]
    carol = await new_user(client, "carol")
    seen_by_carol = await carol.call("POST", "/keys/query", {"device_keys": {bob.user_id: []}})
    assert alice.user_id not in seen_by_carol["master_keys"][bob.user_id].get("signatures", {})


async def test_bad_signatures_are_reported_per_key_and_good_ones_still_stored(client):
    alice = await new_user(client, "alice")
    phone = await second_device(client, alice)
    laptop_keys, _ = await upload_device_keys(alice)
    phone_keys, _ = await upload_device_keys(phone)
    keys = await set_up_cross_signing(alice)
    good = signed_copy(laptop_keys, alice.user_id, keys["self_signing"][1])
    forged = signed_copy(phone_keys, alice.user_id, keys["user_signing"][1])  # wrong key for devices
    body = await alice.call("POST", "/keys/signatures/upload", {alice.user_id: {
        alice.device_id: good, phone.device_id: forged, "NOSUCHDEVICE": good}})
    failures = body["failures"][alice.user_id]
    assert set(failures) == {phone.device_id, "NOSUCHDEVICE"}
    assert failures[phone.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    assert failures["NOSUCHDEVICE"]["errcode"] == "M_NOT_FOUND"


async def test_a_device_may_sign_its_owners_master_key(client):
    alice = await new_user(client, "alice")
    _, device_key = await upload_device_keys(alice)
    keys = await set_up_cross_signing(alice)
    master = keys["master"][0]
    master_pub = next(iter(master["keys"].values()))
    signed = signed_copy(master, alice.user_id, device_key)
    body = await alice.call("POST", "/keys/signatures/upload", {alice.user_id: {master_pub: signed}})
    assert body == {"failures": {}}
    mine = await alice.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    assert f"ed25519:{alice.device_id}" in mine["master_keys"][alice.user_id]["signatures"][alice.user_id]


async def test_a_signed_object_that_differs_from_the_stored_key_is_refused(client):
    alice = await new_user(client, "alice")
    device, _ = await upload_device_keys(alice)
    keys = await set_up_cross_signing(alice)
    altered = {**device, "algorithms": ["evil"]}
    signed = signed_copy(altered, alice.user_id, keys["self_signing"][1])
    body = await alice.call("POST", "/keys/signatures/upload", {alice.user_id: {alice.device_id: signed}})
    assert body["failures"][alice.user_id][alice.device_id]["errcode"] == "M_INVALID_SIGNATURE"


async def test_cross_signing_upload_is_served_under_unstable(client):
    alice = await new_user(client, "alice")
    master, _ = cross_signing_key(alice, "master")
    await alice.call("POST", "/_matrix/client/unstable/keys/device_signing/upload", {"master_key": master})
