"""Device-list changes through /sync and /keys/changes, and the pure candidate rules."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.e2ee.device_lists import candidate_users
from storage.stores.e2ee import DeviceListDelta, E2eeKeyStore, MembershipChange
from tests.e2ee.helpers import second_device, set_up_cross_signing, signed_key, upload_device_keys
from tests.support.rooms import new_user


@pytest.mark.parametrize(("changes", "expected"), [
    # Someone joins a room of mine: they may be new to me.
    ([MembershipChange("!mine", "@b", True)], ({"@b"}, set(), set(), set())),
    # Someone leaves a room of mine: they may have left my world.
    ([MembershipChange("!mine", "@b", False)], (set(), set(), {"@b"}, set())),
    # Membership changes in rooms I am not in do not concern me.
    ([MembershipChange("!other", "@b", True)], (set(), set(), set(), set())),
    # My own joins and leaves bring in or drop a whole room's members.
    ([MembershipChange("!new", "@me", True), MembershipChange("!old", "@me", False)],
     (set(), {"!new"}, set(), {"!old"})),
])
def test_membership_changes_pick_the_users_to_check(changes, expected):
    delta = DeviceListDelta(frozenset(), tuple(changes))
    assert candidate_users("@me", delta, {"!mine", "!new"}) == expected


async def sync(user, since=None):
    params = {"timeout": "0"}
    if since:
        params["since"] = since
    return await user.call("GET", "/sync", **params)


async def test_key_changes_of_a_room_mate_show_in_changed_and_strangers_do_not(client):
    alice, bob, carol = await new_user(client, "alice"), await new_user(client, "bob"), await new_user(client, "carol")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    since = (await sync(alice))["next_batch"]
    await upload_device_keys(bob)
    await upload_device_keys(carol)
    body = await sync(alice, since)
    assert body["device_lists"]["changed"] == [bob.user_id]
    assert body["device_lists"]["left"] == []


async def test_own_changes_show_in_changed(client):
    alice = await new_user(client, "alice")
    phone = await second_device(client, alice)
    since = (await sync(alice))["next_batch"]
    await upload_device_keys(phone)
    assert (await sync(alice, since))["device_lists"]["changed"] == [alice.user_id]
    since = (await sync(alice, since))["next_batch"]
    await set_up_cross_signing(alice)
    assert (await sync(alice, since))["device_lists"]["changed"] == [alice.user_id]


async def test_joining_and_leaving_move_users_between_changed_and_left(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    since = (await sync(alice))["next_batch"]
    await bob.join(room_id)
    body = await sync(alice, since)
    assert bob.user_id in body["device_lists"]["changed"]
    since = body["next_batch"]
    await bob.call("POST", f"/rooms/{room_id}/leave", {})
    body = await sync(alice, since)
    assert body["device_lists"]["left"] == [bob.user_id]
    assert bob.user_id not in body["device_lists"]["changed"]


async def test_a_user_still_sharing_another_room_is_not_left(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_a = await alice.create_room(preset="public_chat")
    room_b = await alice.create_room(preset="public_chat")
    await bob.join(room_a)
    await bob.join(room_b)
    since = (await sync(alice))["next_batch"]
    await bob.call("POST", f"/rooms/{room_a}/leave", {})
    assert (await sync(alice, since))["device_lists"]["left"] == []


async def test_the_joiner_sees_the_rooms_members_as_changed(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    since = (await sync(bob))["next_batch"]
    await bob.join(room_id)
    assert alice.user_id in (await sync(bob, since))["device_lists"]["changed"]


async def test_keys_changes_between_two_tokens(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    start = (await sync(alice))["next_batch"]
    await upload_device_keys(bob)
    end = (await sync(alice, start))["next_batch"]
    body = await alice.call("GET", "/keys/changes", **{"from": start, "to": end})
    assert body == {"changed": [bob.user_id], "left": []}
    assert await alice.call("GET", "/keys/changes", **{"from": end, "to": end}) == {"changed": [], "left": []}
    bad = await alice.call("GET", "/keys/changes", expect=400, **{"from": "garbage", "to": end})
    assert bad["error"].startswith("from")


async def test_deleting_a_device_is_a_device_list_change(client, hs):
    alice = await new_user(client, "alice")
    phone = await second_device(client, alice)
    await upload_device_keys(phone)
    since = (await sync(alice))["next_batch"]
    await hs.devices.delete_devices(alice.user_id, [phone.device_id])
    assert (await sync(alice, since))["device_lists"]["changed"] == [alice.user_id]


async def test_a_long_poll_wakes_when_a_room_mate_uploads_keys(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    since = (await sync(alice))["next_batch"]
    poll = asyncio.create_task(alice.call("GET", "/sync", timeout="10000", since=since))
    await asyncio.sleep(0.2)
    await upload_device_keys(bob)
    body = await asyncio.wait_for(poll, 5)
    assert bob.user_id in body["device_lists"]["changed"]


async def test_every_sync_carries_the_one_time_key_count(client):
    alice = await new_user(client, "alice")
    first = await sync(alice)
    assert first["device_one_time_keys_count"] == {"signed_curve25519": 0}
    await alice.call("POST", "/keys/upload", {"one_time_keys": {"signed_curve25519:a": signed_key("x")}})
    second = await sync(alice, first["next_batch"])
    assert second["device_one_time_keys_count"] == {"signed_curve25519": 1}
    third = await sync(alice, second["next_batch"])
    assert third["device_one_time_keys_count"] == {"signed_curve25519": 1}


async def test_a_new_login_and_a_logout_are_device_list_changes_and_logout_drops_the_keys(client, hs):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    since = (await sync(alice))["next_batch"]
    bob_phone = await second_device(client, bob)
    body = await sync(alice, since)
    assert body["device_lists"]["changed"] == [bob.user_id]
    await upload_device_keys(bob_phone)
    since = body["next_batch"]
    await bob_phone.call("POST", "/logout", {})
    body = await sync(alice, since)
    assert body["device_lists"]["changed"] == [bob.user_id]
    keys = await alice.call("POST", "/keys/query", {"device_keys": {bob.user_id: []}})
    assert bob_phone.device_id not in keys["device_keys"][bob.user_id]
    assert await E2eeKeyStore(hs.db).get_device_keys(bob.user_id, bob_phone.device_id) is None
