"""Typing and receipts as clients see them: in the rooms' `ephemeral` section of /sync."""

from __future__ import annotations

from tests.support.rooms import new_user


async def test_typing_and_receipts_arrive_in_an_incremental_sync(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    event_id = await alice.send(room_id, "hallo")
    since = (await bob.call("GET", "/sync", timeout=0))["next_batch"]
    await alice.call("PUT", f"/rooms/{room_id}/typing/{alice.user_id}", {"typing": True})
    await alice.call("POST", f"/rooms/{room_id}/receipt/m.read/{event_id}", {})
    body = await bob.call("GET", "/sync", since=since, timeout=5000)
    ephemeral = body["rooms"]["join"][room_id]["ephemeral"]["events"]
    by_type = {e["type"]: e["content"] for e in ephemeral}
    assert by_type["m.typing"] == {"user_ids": [alice.user_id]}
    assert alice.user_id in by_type["m.receipt"][event_id]["m.read"]
