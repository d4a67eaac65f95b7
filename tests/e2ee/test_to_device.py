"""To-device messages: sending, delivery through /sync, acknowledgement, batching, idempotence."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.e2ee.to_device import MAX_PER_SYNC, parse_messages
from homeserver.errors import MatrixError
from storage.stores.to_device import ToDeviceStore
from tests.e2ee.helpers import second_device
from tests.support.rooms import new_user


def test_messages_must_map_users_to_devices_to_objects():
    assert parse_messages({"messages": {"@a:test": {"D": {"x": 1}, "*": {}}}}) == [
        ("@a:test", "D", {"x": 1}), ("@a:test", "*", {})]
    for body, field in [({}, "messages"), ({"messages": {"@a:test": []}}, "messages.@a:test"),
                        ({"messages": {"@a:test": {"D": "x"}}}, "messages.@a:test.D"),
                        ({"messages": {"nobody": {}}}, "messages")]:
        with pytest.raises(MatrixError) as caught:
            parse_messages(body)
        assert caught.value.message.startswith(field)


async def send(sender, txn_id, messages, event_type="m.test"):
    await sender.call("PUT", f"/sendToDevice/{event_type}/{txn_id}", {"messages": messages})


async def test_a_message_reaches_the_named_device_only_and_once_acknowledged_is_gone(client, hs):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    bob_phone = await second_device(client, bob)
    await send(alice, "t1", {bob.user_id: {bob.device_id: {"hello": "laptop"}}})
    first = await bob.call("GET", "/sync", timeout="0")
    assert first["to_device"]["events"] == [{"type": "m.test", "sender": alice.user_id,
                                             "content": {"hello": "laptop"}}]
    assert (await bob_phone.call("GET", "/sync", timeout="0"))["to_device"]["events"] == []
    # Not acknowledged yet: a sync from scratch sees it again.
    again = await bob.call("GET", "/sync", timeout="0")
    assert len(again["to_device"]["events"]) == 1
    ack = await bob.call("GET", "/sync", timeout="0", since=first["next_batch"])
    assert ack["to_device"]["events"] == []
    assert await ToDeviceStore(hs.db).count_messages(bob.user_id, bob.device_id) == 0


async def test_a_star_message_reaches_every_device_of_the_user(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    bob_phone = await second_device(client, bob)
    await send(alice, "t1", {bob.user_id: {"*": {"all": True}}})
    for device in (bob, bob_phone):
        events = (await device.call("GET", "/sync", timeout="0"))["to_device"]["events"]
        assert [e["content"] for e in events] == [{"all": True}]


async def test_a_retried_transaction_is_delivered_once(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    for _ in range(2):
        await send(alice, "same", {bob.user_id: {bob.device_id: {"n": 1}}})
    assert len((await bob.call("GET", "/sync", timeout="0"))["to_device"]["events"]) == 1


async def test_a_long_poll_wakes_for_a_to_device_message(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    since = (await bob.call("GET", "/sync", timeout="0"))["next_batch"]
    poll = asyncio.create_task(bob.call("GET", "/sync", timeout="10000", since=since))
    await asyncio.sleep(0.2)
    await send(alice, "wake", {bob.user_id: {bob.device_id: {"n": 1}}})
    body = await asyncio.wait_for(poll, 5)
    assert len(body["to_device"]["events"]) == 1


async def test_a_backlog_is_delivered_in_bounded_batches_without_losing_any(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    total = MAX_PER_SYNC + 30
    for i in range(total):
        await send(alice, f"b{i}", {bob.user_id: {bob.device_id: {"n": i}}})
    first = await bob.call("GET", "/sync", timeout="0")
    assert [e["content"]["n"] for e in first["to_device"]["events"]] == list(range(MAX_PER_SYNC))
    second = await bob.call("GET", "/sync", timeout="0", since=first["next_batch"])
    assert [e["content"]["n"] for e in second["to_device"]["events"]] == list(range(MAX_PER_SYNC, total))
    third = await bob.call("GET", "/sync", timeout="0", since=second["next_batch"])
    assert third["to_device"]["events"] == []


async def test_deleting_a_device_empties_its_inbox(client, hs):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    bob_phone = await second_device(client, bob)
    await send(alice, "t", {bob.user_id: {bob_phone.device_id: {"n": 1}}})
    await hs.devices.delete_devices(bob.user_id, [bob_phone.device_id])
    assert await ToDeviceStore(hs.db).count_messages(bob.user_id, bob_phone.device_id) == 0


async def test_messages_for_remote_users_are_accepted_and_not_stored_for_local_delivery(client, hs):
    alice = await new_user(client, "alice")
    await send(alice, "r", {"@x:elsewhere.example": {"D": {"n": 1}}})
    assert await ToDeviceStore(hs.db).count_messages("@x:elsewhere.example", "D") == 0
