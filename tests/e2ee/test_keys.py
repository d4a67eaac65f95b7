"""Device keys, one-time and fallback keys: /keys/upload, /keys/query, /keys/claim."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.e2ee.keys import parse_claim, parse_device_keys, parse_key_map
from homeserver.errors import MatrixError
from tests.e2ee.helpers import (
    device_keys,
    one_time_keys,
    second_device,
    set_up_cross_signing,
    signed_key,
    upload_device_keys,
)
from tests.support.rooms import User, new_user


class FakeUser:
    user_id = "@alice:test"
    device_id = "DEV"


def test_device_keys_signed_by_their_own_device_key_are_accepted():
    keys, _ = device_keys(FakeUser())  # type: ignore[arg-type]
    assert parse_device_keys(keys, "@alice:test", "DEV")["keys"] == keys["keys"]


@pytest.mark.parametrize("tamper", [
    lambda k: k.update(algorithms=["other"]),
    lambda k: k["keys"].update({"curve25519:DEV": "swapped"}),
    lambda k: k["signatures"]["@alice:test"].update({"ed25519:DEV": "AAAA"}),
])
def test_device_keys_whose_self_signature_does_not_verify_are_kept_for_clients_to_judge(tamper):
    keys, _ = device_keys(FakeUser())  # type: ignore[arg-type]
    tamper(keys)
    assert parse_device_keys(keys, "@alice:test", "DEV")["signatures"] == keys["signatures"]


@pytest.mark.parametrize("tamper", [
    lambda k: k.pop("signatures"),
    lambda k: k.update(signatures={"@alice:test": "AAAA"}),
    lambda k: k.update(signatures={"@alice:test": {"ed25519:DEV": 5}}),
])
def test_device_keys_without_a_signatures_object_are_bad_json(tamper):
    keys, _ = device_keys(FakeUser())  # type: ignore[arg-type]
    tamper(keys)
    with pytest.raises(MatrixError) as caught:
        parse_device_keys(keys, "@alice:test", "DEV")
    assert caught.value.errcode == "M_BAD_JSON"
    assert caught.value.message.startswith("device_keys.signatures")


@pytest.mark.parametrize(("user_id", "device_id", "field"), [
    ("@bob:test", "DEV", "device_keys.user_id"),
    ("@alice:test", "OTHER", "device_keys.device_id"),
])
def test_device_keys_for_someone_else_name_the_field(user_id, device_id, field):
    keys, _ = device_keys(FakeUser())  # type: ignore[arg-type]
    with pytest.raises(MatrixError) as caught:
        parse_device_keys(keys, user_id, device_id)
    assert caught.value.message.startswith(field)


@pytest.mark.parametrize("value", [{"nocolon": "x"}, {"alg:": "x"}, {"alg:id": 5}, [], {"alg:id": {"key": "k"}},
                                   {"alg:id": {"key": 1, "signatures": {}}}])
def test_malformed_one_time_keys_are_bad_json(value):
    with pytest.raises(MatrixError) as caught:
        parse_key_map(value, "one_time_keys")
    assert caught.value.errcode == "M_BAD_JSON"


def test_claims_must_name_an_algorithm_per_device():
    with pytest.raises(MatrixError):
        parse_claim({"one_time_keys": {"@a:test": {"DEV": 5}}})
    assert len(parse_claim({"one_time_keys": {"@a:test": {"D1": "x", "D2": "y"}}})) == 2


async def test_uploaded_device_keys_are_returned_by_query_with_the_display_name(client):
    alice = await new_user(client, "alice")
    await alice.call("PUT", f"/devices/{alice.device_id}", {"display_name": "Phone"})
    keys, _ = await upload_device_keys(alice)
    bob = await new_user(client, "bob")
    body = await bob.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    served = body["device_keys"][alice.user_id][alice.device_id]
    assert served["keys"] == keys["keys"]
    assert served["signatures"] == keys["signatures"]
    assert served["unsigned"] == {"device_display_name": "Phone"}
    assert body["failures"] == {}


async def test_device_keys_with_a_bad_self_signature_are_stored_and_served_as_uploaded(client):
    alice = await new_user(client, "alice")
    keys, _ = device_keys(alice)
    keys["signatures"][alice.user_id][f"ed25519:{alice.device_id}"] = "bm90IGEgc2lnbmF0dXJl"
    await alice.call("POST", "/keys/upload", {"device_keys": keys})
    body = await alice.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    assert body["device_keys"][alice.user_id][alice.device_id]["signatures"] == keys["signatures"]


async def test_query_for_unknown_and_remote_users(client):
    alice = await new_user(client, "alice")
    body = await alice.call("POST", "/keys/query",
                            {"device_keys": {"@nobody:localhost": [], "@x:elsewhere.example": []}})
    assert "@x:elsewhere.example" not in body["device_keys"]
    assert "elsewhere.example" in body["failures"]


async def test_query_of_named_devices_returns_only_those(client):
    alice = await new_user(client, "alice")
    phone = await second_device(client, alice)
    await upload_device_keys(alice)
    await upload_device_keys(phone)
    body = await alice.call("POST", "/keys/query", {"device_keys": {alice.user_id: [phone.device_id]}})
    assert list(body["device_keys"][alice.user_id]) == [phone.device_id]


async def test_one_query_answers_whole_users_named_devices_and_cross_signing_keys_together(client):
    alice = await new_user(client, "alice")
    alice_phone = await second_device(client, alice)
    bob = await new_user(client, "bob")
    bob_phone = await second_device(client, bob)
    for user in (alice, alice_phone, bob, bob_phone):
        await upload_device_keys(user)
    await set_up_cross_signing(bob)
    body = await alice.call("POST", "/keys/query",
                            {"device_keys": {alice.user_id: [], bob.user_id: [bob_phone.device_id]}})
    assert set(body["device_keys"][alice.user_id]) == {alice.device_id, alice_phone.device_id}
    assert list(body["device_keys"][bob.user_id]) == [bob_phone.device_id]
    assert set(body["master_keys"]) == set(body["self_signing_keys"]) == {bob.user_id}
    assert body["user_signing_keys"] == {}


async def test_keys_uploaded_again_with_more_signatures_and_a_new_name_are_what_the_next_query_serves(client):
    alice = await new_user(client, "alice")
    keys, _ = await upload_device_keys(alice)
    bob = await new_user(client, "bob")
    query = {"device_keys": {alice.user_id: []}}
    first = (await bob.call("POST", "/keys/query", query))["device_keys"][alice.user_id][alice.device_id]
    assert first["signatures"] == keys["signatures"]
    more = {**keys, "signatures": {**keys["signatures"], "@carol:test": {"ed25519:CAROL": "c2lnbmF0dXJl"}}}
    await alice.call("POST", "/keys/upload", {"device_keys": more})
    await alice.call("PUT", f"/devices/{alice.device_id}", {"display_name": "Laptop"})
    served = (await bob.call("POST", "/keys/query", query))["device_keys"][alice.user_id][alice.device_id]
    assert served["signatures"] == more["signatures"]
    assert served["unsigned"] == {"device_display_name": "Laptop"}


async def test_changing_an_existing_devices_identity_keys_is_refused(client):
    alice = await new_user(client, "alice")
    keys, key = await upload_device_keys(alice)
    await alice.call("POST", "/keys/upload", {"device_keys": keys})  # the same again is fine
    other, _ = device_keys(alice)
    body = await alice.call("POST", "/keys/upload", {"device_keys": other}, expect=400)
    assert body["error"].startswith("device_keys.keys")


async def test_one_time_key_counts_are_reported_and_signed_curve25519_is_always_there(client):
    alice = await new_user(client, "alice")
    body = await alice.call("POST", "/keys/upload", {})
    assert body == {"one_time_key_counts": {"signed_curve25519": 0}}
    body = await alice.call("POST", "/keys/upload", {"one_time_keys": {**one_time_keys("a", 3),
                                                                        "curve25519:x": "plain"}})
    assert body["one_time_key_counts"] == {"signed_curve25519": 3, "curve25519": 1}


async def test_reuploading_a_one_time_key_id_with_other_content_is_refused(client):
    alice = await new_user(client, "alice")
    await alice.call("POST", "/keys/upload", {"one_time_keys": {"signed_curve25519:A": signed_key("1")}})
    await alice.call("POST", "/keys/upload", {"one_time_keys": {"signed_curve25519:A": signed_key("1")}})
    body = await alice.call("POST", "/keys/upload", {"one_time_keys": {"signed_curve25519:A": signed_key("2")}},
                            expect=400)
    assert "signed_curve25519:A" in body["error"]


async def test_claim_hands_out_each_one_time_key_once_then_the_fallback_key(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    await alice.call("POST", "/keys/upload", {"one_time_keys": one_time_keys("a", 2),
                                              "fallback_keys": {"signed_curve25519:fb": signed_key("fb", fallback=True)}})
    sync = await alice.call("GET", "/sync", timeout="0")
    assert sync["device_unused_fallback_key_types"] == ["signed_curve25519"]
    claim = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
    got = []
    for _ in range(3):
        body = await bob.call("POST", "/keys/claim", claim)
        got.append(next(iter(body["one_time_keys"][alice.user_id][alice.device_id])))
    assert sorted(got[:2]) == ["signed_curve25519:a0", "signed_curve25519:a1"]
    assert got[2] == "signed_curve25519:fb"
    sync = await alice.call("GET", "/sync", timeout="0")
    assert sync["device_unused_fallback_key_types"] == []
    assert sync["device_one_time_keys_count"] == {"signed_curve25519": 0}


async def test_one_time_keys_are_claimed_in_the_order_they_were_uploaded(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    await alice.call("POST", "/keys/upload", {"one_time_keys": one_time_keys("z", 1)})
    await asyncio.sleep(0.01)  # the next upload is a later millisecond
    await alice.call("POST", "/keys/upload", {"one_time_keys": one_time_keys("a", 1)})
    claim = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
    got = [next(iter((await bob.call("POST", "/keys/claim", claim))["one_time_keys"][alice.user_id][alice.device_id]))
           for _ in range(2)]
    assert got == ["signed_curve25519:z0", "signed_curve25519:a0"]


async def test_claiming_from_a_device_without_keys_returns_nothing(client):
    alice = await new_user(client, "alice")
    body = await alice.call("POST", "/keys/claim", {"one_time_keys": {alice.user_id: {"NOPE": "signed_curve25519"}}})
    assert body == {"one_time_keys": {}, "failures": {}}


async def test_concurrent_claims_never_hand_out_a_key_twice(client):
    alice = await new_user(client, "alice")
    await alice.call("POST", "/keys/upload", {"one_time_keys": one_time_keys("c", 10)})
    claimers = [await new_user(client, f"claimer{i}") for i in range(4)]
    claim = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}

    async def claim_one(user: User) -> list[str]:
        body = await user.call("POST", "/keys/claim", claim)
        return list(body["one_time_keys"].get(alice.user_id, {}).get(alice.device_id, {}))

    results = await asyncio.gather(*(claim_one(claimers[i % 4]) for i in range(20)))
    handed_out = [key for keys in results for key in keys]
    assert len(handed_out) == 10
    assert len(set(handed_out)) == 10


async def test_deleting_a_device_deletes_its_keys(client):
    alice = await new_user(client, "alice")
    phone = await second_device(client, alice)
    await upload_device_keys(phone, one_time_keys=one_time_keys("p", 2))
    await alice.call("DELETE", f"/devices/{phone.device_id}",
                     {"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
                               "password": "correct horse"}})
    body = await alice.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    assert body["device_keys"][alice.user_id] == {}
    claim = {"one_time_keys": {alice.user_id: {phone.device_id: "signed_curve25519"}}}
    assert (await alice.call("POST", "/keys/claim", claim))["one_time_keys"] == {}


async def test_keys_endpoints_answer_under_r0_and_unstable_too(client):
    alice = await new_user(client, "alice")
    for prefix in ("/_matrix/client/r0", "/_matrix/client/unstable"):
        await alice.call("POST", prefix + "/keys/query", {"device_keys": {alice.user_id: []}})


async def test_bad_bodies_name_the_field(client):
    alice = await new_user(client, "alice")
    body = await alice.call("POST", "/keys/query", {"device_keys": {alice.user_id: "DEV"}}, expect=400)
    assert body["error"].startswith(f"device_keys.{alice.user_id}")
    body = await alice.call("POST", "/keys/claim", {}, expect=400)
    assert body["error"].startswith("one_time_keys")
    body = await alice.call("POST", "/keys/upload", {"one_time_keys": []}, expect=400)
    assert body["error"].startswith("one_time_keys")
