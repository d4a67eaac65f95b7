"""The legacy /events, /events/{eventId}, /initialSync and /rooms/{roomId}/initialSync, on both engines."""

from __future__ import annotations

import asyncio

from tests.support.rooms import new_user


def bodies(events):
    return [e["content"].get("body") for e in events if e["type"] == "m.room.message"]


async def test_initial_sync_lists_joined_and_invited_rooms_with_messages_state_and_account_data(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="private_chat", name="Kamer")
    for text in ("een", "twee", "drie"):
        await alice.send(room_id, text)
    await alice.call("PUT", f"/user/{alice.user_id}/rooms/{room_id}/tags/u.work", {})
    await alice.call("PUT", f"/user/{alice.user_id}/account_data/org.example.setting", {"on": True})
    invite_room = await bob.create_room(invite=[alice.user_id])
    await alice.call("PUT", f"/presence/{alice.user_id}/status", {"presence": "online"})
    body = await alice.call("GET", "/initialSync", limit=2)
    rooms = {room["room_id"]: room for room in body["rooms"]}
    joined = rooms[room_id]
    assert (joined["membership"], joined["visibility"]) == ("join", "private")
    assert bodies(joined["messages"]["chunk"]) == ["twee", "drie"]  # oldest first, the newest `limit`
    state_types = {e["type"] for e in joined["state"]}
    assert {"m.room.create", "m.room.name", "m.room.member", "m.room.power_levels"} <= state_types
    assert joined["account_data"] == [{"type": "m.tag", "content": {"tags": {"u.work": {}}}}]
    invited = rooms[invite_room]
    assert (invited["membership"], invited["inviter"]) == ("invite", bob.user_id)
    assert invited["invite"]["content"]["membership"] == "invite"
    assert {"type": "org.example.setting", "content": {"on": True}} in body["account_data"]
    assert body["end"] and isinstance(body["receipts"], list)
    # Bob shares no joined room with alice (she is only invited to his), so only she is listed.
    assert [(e["sender"], e["content"]["presence"]) for e in body["presence"]] == [(alice.user_id, "online")]
    # messages.start continues backwards through /messages.
    older = await alice.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=1,
                             **{"from": joined["messages"]["start"]})
    assert bodies(older["chunk"]) == ["een"]


async def test_initial_sync_lists_left_rooms_only_when_archived(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await bob.call("POST", f"/rooms/{room_id}/leave", {})
    assert room_id not in [r["room_id"] for r in (await bob.call("GET", "/initialSync"))["rooms"]]
    archived = {r["room_id"]: r for r in (await bob.call("GET", "/initialSync", archived="true"))["rooms"]}
    assert archived[room_id]["membership"] == "leave"


async def test_room_initial_sync_for_members_former_members_and_world_readable_peeks(client):
    alice, bob, eve = await new_user(client, "alice"), await new_user(client, "bob"), await new_user(client, "eve")
    room_id = await alice.create_room(preset="public_chat", name="Eerst")
    await bob.join(room_id)
    await alice.send(room_id, "voor")
    await bob.call("POST", f"/rooms/{room_id}/leave", {})
    await alice.send(room_id, "na")
    await alice.call("PUT", f"/rooms/{room_id}/state/m.room.name/", {"name": "Later"})
    for user in (alice, bob, eve):
        await user.call("PUT", f"/presence/{user.user_id}/status", {"presence": "online"})
    mine = await alice.call("GET", f"/rooms/{room_id}/initialSync")
    assert mine["membership"] == "join" and bodies(mine["messages"]["chunk"])[-2:] == ["voor", "na"]
    assert mine["receipts"] == [] and mine["account_data"] == []
    assert [e["sender"] for e in mine["presence"]] == [alice.user_id]  # bob left; eve was never in
    departed = await bob.call("GET", f"/rooms/{room_id}/initialSync")
    assert departed["membership"] == "leave"
    assert "na" not in bodies(departed["messages"]["chunk"])
    names = [e["content"]["name"] for e in departed["state"] if e["type"] == "m.room.name"]
    assert names == ["Eerst"]  # the room as it was when bob left
    denied = await eve.call("GET", f"/rooms/{room_id}/initialSync", expect=403)
    assert denied["errcode"] == "M_FORBIDDEN"
    await alice.call("PUT", f"/rooms/{room_id}/state/m.room.history_visibility/",
                     {"history_visibility": "world_readable"})
    await alice.send(room_id, "open")
    peek = await eve.call("GET", f"/rooms/{room_id}/initialSync")
    # Each event keeps the visibility it was sent under: only the world-readable part shows.
    assert "membership" not in peek and bodies(peek["messages"]["chunk"]) == ["open"]


async def test_get_event_by_id_for_members_and_world_readable_peeks_only(client):
    alice, eve = await new_user(client, "alice"), await new_user(client, "eve")
    room_id = await alice.create_room(preset="private_chat")
    event_id = await alice.send(room_id, "geheim")
    got = await alice.call("GET", f"/events/{event_id}")
    assert (got["event_id"], got["room_id"], got["content"]["body"]) == (event_id, room_id, "geheim")
    assert (await eve.call("GET", f"/events/{event_id}", expect=404))["errcode"] == "M_NOT_FOUND"
    assert (await eve.call("GET", "/events/$nothere", expect=404))["errcode"] == "M_NOT_FOUND"
    await alice.call("PUT", f"/rooms/{room_id}/state/m.room.history_visibility/",
                     {"history_visibility": "world_readable"})
    public_id = await alice.send(room_id, "openbaar")
    assert (await eve.call("GET", f"/events/{public_id}"))["content"]["body"] == "openbaar"
    await eve.call("GET", f"/events/{event_id}", expect=404)  # sent before the room was world-readable


async def test_the_event_stream_returns_new_events_after_from_and_an_end_to_continue(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    start = (await alice.call("GET", "/initialSync", limit=0))["end"]
    empty = await alice.call("GET", "/events", timeout=0, **{"from": start})
    assert empty["chunk"] == [] and empty["start"] == start
    first = await alice.send(room_id, "nieuw")
    page = await alice.call("GET", "/events", timeout=0, **{"from": start})
    assert [e["event_id"] for e in page["chunk"]] == [first]
    assert page["chunk"][0]["room_id"] == room_id
    again = await alice.call("GET", "/events", timeout=0, **{"from": page["end"]})
    assert again["chunk"] == []


async def test_the_event_stream_pages_by_limit_in_stream_order(client):
    alice = await new_user(client, "alice")
    rooms = [await alice.create_room(), await alice.create_room()]
    start = (await alice.call("GET", "/initialSync", limit=0))["end"]
    sent = [await alice.send(rooms[i % 2], f"m{i}") for i in range(5)]
    seen, token = [], start
    for _ in range(5):
        page = await alice.call("GET", "/events", timeout=0, limit=2, **{"from": token})
        seen += [e["event_id"] for e in page["chunk"]]
        token = page["end"]
        if not page["chunk"]:
            break
    assert seen == sent


async def test_a_waiting_event_stream_wakes_for_a_new_event(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    start = (await alice.call("GET", "/initialSync", limit=0))["end"]
    waiting = asyncio.create_task(alice.call("GET", "/events", timeout=30000, **{"from": start}))
    await asyncio.sleep(0.2)
    event_id = await alice.send(room_id, "wakker")
    page = await asyncio.wait_for(waiting, 20)
    assert [e["event_id"] for e in page["chunk"]] == [event_id]


async def test_the_event_stream_peeks_world_readable_rooms_only(client):
    alice, eve = await new_user(client, "alice"), await new_user(client, "eve")
    room_id = await alice.create_room(preset="public_chat")
    start = (await eve.call("GET", "/initialSync", limit=0))["end"]
    denied = await eve.call("GET", "/events", timeout=0, room_id=room_id, expect=403)
    assert denied["errcode"] == "M_FORBIDDEN"
    await alice.call("PUT", f"/rooms/{room_id}/state/m.room.history_visibility/",
                     {"history_visibility": "world_readable"})
    event_id = await alice.send(room_id, "voor iedereen")
    page = await eve.call("GET", "/events", timeout=0, room_id=room_id, **{"from": start})
    assert event_id in [e["event_id"] for e in page["chunk"]]


async def test_malformed_event_stream_parameters_are_400(client):
    alice = await new_user(client, "alice")
    assert (await alice.call("GET", "/events", expect=400, **{"from": "nonsense"}))["errcode"] == "M_INVALID_PARAM"
    assert (await alice.call("GET", "/events", expect=400, timeout="soon"))["errcode"] == "M_INVALID_PARAM"


async def test_state_members_and_events_of_a_world_readable_room_can_be_peeked(client):
    alice, eve = await new_user(client, "alice"), await new_user(client, "eve")
    room_id = await alice.create_room(preset="public_chat", name="Etalage")
    await eve.call("GET", f"/rooms/{room_id}/state", expect=403)
    await eve.call("GET", f"/rooms/{room_id}/members", expect=403)
    await alice.call("PUT", f"/rooms/{room_id}/state/m.room.history_visibility/",
                     {"history_visibility": "world_readable"})
    event_id = await alice.send(room_id, "kijk maar")
    assert (await eve.call("GET", f"/rooms/{room_id}/state/m.room.name/")) == {"name": "Etalage"}
    assert {e["type"] for e in await eve.call("GET", f"/rooms/{room_id}/state")} >= {"m.room.create", "m.room.name"}
    members = await eve.call("GET", f"/rooms/{room_id}/members")
    assert [m["state_key"] for m in members["chunk"]] == [alice.user_id]
    assert (await eve.call("GET", f"/rooms/{room_id}/event/{event_id}"))["content"]["body"] == "kijk maar"


async def test_the_event_stream_carries_typing_and_receipts_with_their_room(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    event_id = await alice.send(room_id, "lees mij")
    start = (await bob.call("GET", "/initialSync", limit=0))["end"]
    await alice.call("PUT", f"/rooms/{room_id}/typing/{alice.user_id}", {"typing": True, "timeout": 30000})
    await bob.call("POST", f"/rooms/{room_id}/receipt/m.read/{event_id}", {})
    page = await bob.call("GET", "/events", timeout=0, **{"from": start})
    by_type = {e["type"]: e for e in page["chunk"]}
    assert by_type["m.typing"] == {"type": "m.typing", "room_id": room_id, "content": {"user_ids": [alice.user_id]}}
    receipt = by_type["m.receipt"]
    assert receipt["room_id"] == room_id and bob.user_id in receipt["content"][event_id]["m.read"]
    after = await bob.call("GET", "/events", timeout=0, **{"from": page["end"]})
    assert after["chunk"] == []
