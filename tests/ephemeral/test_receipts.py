"""Read receipts, private and threaded receipts, read markers, and the receipts sync provider."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.ephemeral.receipts import parse_read_markers, parse_thread_id
from homeserver.errors import MatrixError
from homeserver.streams.updates import ReadReceiptStored
from tests.support.rooms import new_user


def receipt_path(room_id: str, event_id: str, receipt_type: str = "m.read") -> str:
    return f"/rooms/{room_id}/receipt/{receipt_type}/{event_id}"


def fully_read_path(user_id: str, room_id: str) -> str:
    return f"/user/{user_id}/rooms/{room_id}/account_data/m.fully_read"


async def room_with_two(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    return alice, bob, room_id


async def receipts_seen_by(hs, user_id: str, room_id: str, since: int = 0) -> dict:
    """The content of the room's m.receipt event as `user_id` sees it ({} when none)."""
    position = await hs.receipts.current_position()
    events = (await hs.receipts.events_for_rooms(user_id, [room_id], since, position)).get(room_id)
    if events is None:
        return {}
    assert [e["type"] for e in events] == ["m.receipt"]
    return events[0]["content"]


def readers(content: dict, event_id: str, receipt_type: str = "m.read") -> dict:
    return content.get(event_id, {}).get(receipt_type, {})


@pytest.mark.parametrize(("body", "receipt_type", "expected"), [
    ({}, "m.read", None),
    ({"thread_id": "main"}, "m.read", "main"),
    ({"thread_id": "$root"}, "m.read.private", "$root"),
])
def test_thread_ids_are_main_or_an_event_id(body, receipt_type, expected):
    assert parse_thread_id(body, receipt_type) == expected


@pytest.mark.parametrize(("body", "receipt_type"), [
    ({"thread_id": ""}, "m.read"),
    ({"thread_id": 5}, "m.read"),
    ({"thread_id": None}, "m.read"),
    ({"thread_id": "thread"}, "m.read"),
    ({"thread_id": "main"}, "m.fully_read"),
])
def test_bad_thread_ids_are_invalid_params(body, receipt_type):
    with pytest.raises(MatrixError) as caught:
        parse_thread_id(body, receipt_type)
    assert caught.value.errcode == "M_INVALID_PARAM" and "thread_id" in caught.value.message


def test_read_marker_bodies_keep_the_known_markers_and_check_them():
    assert parse_read_markers({"m.fully_read": "$a", "m.read": "$b", "m.read.private": None, "x": 1}) == {
        "m.fully_read": "$a", "m.read": "$b"}
    with pytest.raises(MatrixError) as caught:
        parse_read_markers({"m.read": 42})
    assert caught.value.errcode == "M_INVALID_PARAM" and "m.read" in caught.value.message


async def test_a_read_receipt_reaches_every_member_in_the_edu_format(hs, client):
    alice, bob, room_id = await room_with_two(client)
    event_id = await alice.send(room_id, "hallo")
    before = await hs.receipts.current_position()
    assert await bob.call("POST", receipt_path(room_id, event_id), {}) == {}
    assert await hs.receipts.current_position() > before
    for viewer in (alice, bob):
        content = await receipts_seen_by(hs, viewer.user_id, room_id, since=before)
        assert list(content) == [event_id]
        receipt = readers(content, event_id)[bob.user_id]
        assert isinstance(receipt["ts"], int) and "thread_id" not in receipt


async def test_a_later_receipt_replaces_the_earlier_one_but_never_moves_back(hs, client):
    alice, bob, room_id = await room_with_two(client)
    first = await alice.send(room_id, "een")
    second = await alice.send(room_id, "twee")
    await bob.call("POST", receipt_path(room_id, first), {})
    await bob.call("POST", receipt_path(room_id, second), {})
    content = await receipts_seen_by(hs, alice.user_id, room_id)
    assert bob.user_id in readers(content, second) and readers(content, first) == {}

    position = await hs.receipts.current_position()
    await bob.call("POST", receipt_path(room_id, first), {})  # older: ignored
    await bob.call("POST", receipt_path(room_id, second), {})  # same: ignored
    assert await hs.receipts.current_position() == position
    assert await receipts_seen_by(hs, alice.user_id, room_id, since=position) == {}


async def test_only_receipts_written_in_the_requested_range_are_returned(hs, client):
    alice, bob, room_id = await room_with_two(client)
    first = await alice.send(room_id, "een")
    await alice.call("POST", receipt_path(room_id, first), {})
    middle = await hs.receipts.current_position()
    await bob.call("POST", receipt_path(room_id, first), {})
    end = await hs.receipts.current_position()
    early = await hs.receipts.events_for_rooms(bob.user_id, [room_id], 0, middle)
    assert set(readers(early[room_id][0]["content"], first)) == {alice.user_id}
    late = await hs.receipts.events_for_rooms(bob.user_id, [room_id], middle, end)
    assert set(readers(late[room_id][0]["content"], first)) == {bob.user_id}
    assert await hs.receipts.events_for_rooms(bob.user_id, [room_id], end, end) == {}


async def test_private_receipts_are_only_shown_to_their_owner(hs, client):
    alice, bob, room_id = await room_with_two(client)
    event_id = await alice.send(room_id, "geheim")
    async with hs.notifier.listen(alice.user_id, [room_id]) as alice_listener:
        await bob.call("POST", receipt_path(room_id, event_id, "m.read.private"), {})
        assert not await alice_listener.wait(0.2), "a private receipt woke another member"
    assert bob.user_id in readers(await receipts_seen_by(hs, bob.user_id, room_id), event_id, "m.read.private")
    assert await receipts_seen_by(hs, alice.user_id, room_id) == {}


async def test_threaded_receipts_are_kept_apart_from_unthreaded_ones(hs, client):
    alice, bob, room_id = await room_with_two(client)
    root = await alice.send(room_id, "root")
    reply = await alice.send(room_id, "in thread", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    reaction = await alice.call("PUT", f"/rooms/{room_id}/send/m.reaction/r1", {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": reply, "key": "x"}})
    plain = await alice.send(room_id, "main again")
    await bob.call("POST", receipt_path(room_id, reply), {"thread_id": root})
    await bob.call("POST", receipt_path(room_id, reaction["event_id"]), {"thread_id": root})
    await bob.call("POST", receipt_path(room_id, root), {"thread_id": "main"})
    await bob.call("POST", receipt_path(room_id, plain), {})
    content = await receipts_seen_by(hs, alice.user_id, room_id)
    assert readers(content, reaction["event_id"])[bob.user_id]["thread_id"] == root
    assert readers(content, root)[bob.user_id]["thread_id"] == "main"
    assert "thread_id" not in readers(content, plain)[bob.user_id]
    assert readers(content, reply) == {}  # replaced by the later receipt in the same thread


async def test_a_receipt_naming_the_wrong_thread_is_refused(client):
    alice, bob, room_id = await room_with_two(client)
    root = await alice.send(room_id, "root")
    reply = await alice.send(room_id, "in thread", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    other = await alice.send(room_id, "elsewhere")
    for event_id, thread_id in ((reply, "main"), (other, root), (reply, other)):
        body = await bob.call("POST", receipt_path(room_id, event_id), {"thread_id": thread_id}, expect=400)
        assert body["errcode"] == "M_INVALID_PARAM"
    body = await bob.call("POST", receipt_path(room_id, reply), {"thread_id": "thread"}, expect=400)
    assert body["errcode"] == "M_INVALID_PARAM"


async def test_the_fully_read_marker_is_room_account_data_that_only_moves_forwards(client):
    alice, bob, room_id = await room_with_two(client)
    first = await alice.send(room_id, "een")
    second = await alice.send(room_id, "twee")
    await bob.call("POST", receipt_path(room_id, second, "m.fully_read"), {})
    assert await bob.call("GET", fully_read_path(bob.user_id, room_id)) == {"event_id": second}
    await bob.call("POST", f"/rooms/{room_id}/read_markers", {"m.fully_read": first})
    assert await bob.call("GET", fully_read_path(bob.user_id, room_id)) == {"event_id": second}
    body = await bob.call("POST", receipt_path(room_id, second, "m.fully_read"), {"thread_id": "main"}, expect=400)
    assert body["errcode"] == "M_INVALID_PARAM"
    # Clients still cannot write it directly.
    await bob.call("PUT", fully_read_path(bob.user_id, room_id), {"event_id": first}, expect=405)


async def test_read_markers_set_the_marker_and_both_receipts_at_once(hs, client):
    alice, bob, room_id = await room_with_two(client)
    first = await alice.send(room_id, "een")
    second = await alice.send(room_id, "twee")
    await bob.call("POST", f"/rooms/{room_id}/read_markers",
                   {"m.fully_read": first, "m.read": second, "m.read.private": second})
    assert await bob.call("GET", fully_read_path(bob.user_id, room_id)) == {"event_id": first}
    own = await receipts_seen_by(hs, bob.user_id, room_id)
    assert bob.user_id in readers(own, second) and bob.user_id in readers(own, second, "m.read.private")
    assert "m.read.private" not in (await receipts_seen_by(hs, alice.user_id, room_id))[second]


async def test_read_markers_write_nothing_when_one_event_is_unknown(hs, client):
    alice, bob, room_id = await room_with_two(client)
    event_id = await alice.send(room_id, "een")
    position = await hs.receipts.current_position()
    body = await bob.call("POST", f"/rooms/{room_id}/read_markers",
                          {"m.read": event_id, "m.fully_read": "$nope"}, expect=404)
    assert body["errcode"] == "M_NOT_FOUND"
    assert await hs.receipts.current_position() == position
    await bob.call("GET", fully_read_path(bob.user_id, room_id), expect=404)


async def test_stored_read_receipts_are_published_on_the_bus(hs, client):
    alice, bob, room_id = await room_with_two(client)
    calls = []
    hs.bus.subscribe(ReadReceiptStored,
                     lambda u: calls.append((u.room_id, u.user_id, u.event_id, u.thread_id)))
    root = await alice.send(room_id, "root")
    await bob.call("POST", receipt_path(room_id, root), {})
    await bob.call("POST", receipt_path(room_id, root, "m.read.private"), {"thread_id": "main"})
    await bob.call("POST", receipt_path(room_id, root), {})  # not newer: no callback
    await bob.call("POST", receipt_path(room_id, root, "m.fully_read"), {})  # a marker, not a receipt
    assert calls == [(room_id, bob.user_id, root, None), (room_id, bob.user_id, root, "main")]
    assert {(r.receipt_type, r.thread_id) for r in await hs.receipts.get_read_receipts(bob.user_id, room_id)} == {
        ("m.read", None), ("m.read.private", "main")}


async def test_a_public_receipt_wakes_the_other_members_syncs(hs, client):
    alice, bob, room_id = await room_with_two(client)
    event_id = await alice.send(room_id, "hallo")
    async with hs.notifier.listen(alice.user_id, [room_id]) as listener:
        await bob.call("POST", receipt_path(room_id, event_id), {})
        assert await listener.wait(2)


async def test_receipts_need_a_known_receipt_type_and_event_of_the_room(client):
    alice, bob, room_id = await room_with_two(client)
    other_room = await alice.create_room()
    elsewhere = await alice.send(other_room, "elders")
    event_id = await alice.send(room_id, "hier")
    body = await bob.call("POST", receipt_path(room_id, event_id, "m.unknown"), {}, expect=400)
    assert body["errcode"] == "M_INVALID_PARAM"
    for missing in ("$doesnotexist", elsewhere):
        assert (await bob.call("POST", receipt_path(room_id, missing), {}, expect=404))["errcode"] == "M_NOT_FOUND"
    assert (await bob.call("POST", receipt_path(room_id, "notanevent"), {}, expect=400))["errcode"] == (
        "M_INVALID_PARAM")
    # Bob is not in the other room: he cannot acknowledge its events.
    assert (await bob.call("POST", receipt_path(other_room, elsewhere), {}, expect=403))["errcode"] == "M_FORBIDDEN"
    unknown_room = "!nowhere:" + alice.user_id.split(":", 1)[1]
    await bob.call("POST", receipt_path(unknown_room, event_id), {}, expect=404)
    async with client.post("/_matrix/client/v3" + receipt_path(room_id, event_id), json={}) as resp:
        assert resp.status == 401 and (await resp.json())["errcode"] == "M_MISSING_TOKEN"


async def test_receipts_for_history_hidden_from_the_user_are_refused(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await alice.call("PUT", f"/rooms/{room_id}/state/m.room.history_visibility", {"history_visibility": "joined"})
    hidden = await alice.send(room_id, "voor bob er was")
    await bob.join(room_id)
    await bob.call("POST", receipt_path(room_id, hidden), {}, expect=404)
    shown = await alice.send(room_id, "nu wel")
    await bob.call("POST", receipt_path(room_id, shown), {})


async def test_a_receipt_without_a_body_is_m_not_json_as_in_synapse(client):
    alice, bob, room_id = await room_with_two(client)
    event_id = await alice.send(room_id, "hallo")
    async with client.post("/_matrix/client/v3" + receipt_path(room_id, event_id),
                           headers={"Authorization": f"Bearer {bob.token}"}) as resp:
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["errcode"] == "M_NOT_JSON"


async def test_an_initial_sync_gets_every_current_receipt(hs, client):
    alice, bob, room_id = await room_with_two(client)
    event_id = await alice.send(room_id, "hallo")
    await alice.call("POST", receipt_path(room_id, event_id), {})
    await bob.call("POST", receipt_path(room_id, event_id), {})
    events = await hs.receipts.events_for_rooms(bob.user_id, [room_id], None, await hs.receipts.current_position())
    assert set(readers(events[room_id][0]["content"], event_id)) == {alice.user_id, bob.user_id}


async def test_concurrent_receipts_settle_on_the_latest_event(hs, client):
    alice, bob, room_id = await room_with_two(client)
    event_ids = [await alice.send(room_id, f"bericht {i}") for i in range(8)]
    await asyncio.gather(*(bob.call("POST", receipt_path(room_id, e), {}) for e in reversed(event_ids)))
    content = await receipts_seen_by(hs, alice.user_id, room_id)
    assert [e for e in content if bob.user_id in readers(content, e)] == [event_ids[-1]]
