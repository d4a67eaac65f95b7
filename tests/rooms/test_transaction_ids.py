"""Transaction IDs are scoped to the device and the request path, as the spec says."""

from __future__ import annotations

from urllib.parse import quote

from homeserver.rooms.transactions import client_txn_id, scoped_txn_id
from tests.accounts.helpers import login
from tests.support.rooms import User, new_user


def message(body: str) -> dict[str, str]:
    return {"msgtype": "m.text", "body": body}


async def timeline_bodies(user: User, room_id: str) -> list[str]:
    chunk = (await user.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=50))["chunk"]
    return [e["content"].get("body") for e in chunk if e["type"] == "m.room.message"]


async def test_the_same_txn_id_in_two_rooms_sends_two_events(client):
    alice = await new_user(client, "alice")
    room_a, room_b = await alice.create_room(), await alice.create_room()
    first = await alice.call("PUT", f"/rooms/{room_a}/send/m.room.message/same", message("to A"))
    second = await alice.call("PUT", f"/rooms/{room_b}/send/m.room.message/same", message("to B"))
    assert first["event_id"] != second["event_id"]
    assert await timeline_bodies(alice, room_a) == ["to A"]
    assert await timeline_bodies(alice, room_b) == ["to B"]


async def test_the_same_txn_id_with_two_event_types_sends_two_events(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    first = await alice.call("PUT", f"/rooms/{room_id}/send/m.room.message/same", message("message"))
    second = await alice.call("PUT", f"/rooms/{room_id}/send/m.reaction/same", {})
    assert first["event_id"] != second["event_id"]
    event = await alice.call("GET", f"/rooms/{room_id}/event/{second['event_id']}")
    assert event["type"] == "m.reaction"


async def test_a_redaction_reusing_a_send_txn_id_redacts(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    sent = await alice.call("PUT", f"/rooms/{room_id}/send/m.room.message/same", message("oops"))
    redaction = await alice.call("PUT", f"/rooms/{room_id}/redact/{sent['event_id']}/same", {})
    assert redaction["event_id"] != sent["event_id"]
    event = await alice.call("GET", f"/rooms/{room_id}/event/{sent['event_id']}")
    assert event["content"] == {}
    assert event["unsigned"]["redacted_because"]["event_id"] == redaction["event_id"]


async def test_retries_on_the_same_path_still_return_the_first_event_under_either_prefix(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    path = f"/rooms/{room_id}/send/m.room.message/retry"
    first = await alice.call("PUT", path, message("once"))
    again = await alice.call("PUT", path, message("once"))
    legacy = await alice.call("PUT", "/_matrix/client/r0" + path, message("once"))
    assert first == again == legacy
    sent = first["event_id"]
    redaction = await alice.call("PUT", f"/rooms/{room_id}/redact/{sent}/r", {})
    assert await alice.call("PUT", f"/rooms/{room_id}/redact/{sent}/r", {}) == redaction
    assert await timeline_bodies(alice, room_id) == [None]  # one message, redacted


async def test_another_device_of_the_same_user_gets_its_own_transaction(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    other = User(client, await login(client, alice.user_id))
    first = await alice.call("PUT", f"/rooms/{room_id}/send/m.room.message/same", message("one"))
    second = await other.call("PUT", f"/rooms/{room_id}/send/m.room.message/same", message("two"))
    assert first["event_id"] != second["event_id"]


async def test_the_sender_sees_its_own_txn_id_as_transaction_id(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    txn_id = "a:b|c 9:"  # characters of the stored key's own syntax
    sent = await alice.call("PUT", f"/rooms/{room_id}/send/m.room.message/{quote(txn_id)}", message("hi"))
    response = await alice.call("GET", "/sync")
    events = response["rooms"]["join"][room_id]["timeline"]["events"]
    mine = next(e for e in events if e["event_id"] == sent["event_id"])
    assert mine["unsigned"]["transaction_id"] == txn_id


def test_a_scoped_key_gives_back_the_clients_own_txn_id_whatever_it_contains():
    for txn_id in ("plain", "5:x|y:z", ":", "with space", "é"):
        for action, room, target in (("send", "!r:x", "m.room.message"), ("redact", "!r:x", "$e:x|y")):
            key = scoped_txn_id(action, room, target, txn_id)
            assert client_txn_id(key) == txn_id
    keys = {scoped_txn_id("send", "!a:x", "t", "1"), scoped_txn_id("send", "!b:x", "t", "1"),
            scoped_txn_id("redact", "!a:x", "t", "1"), scoped_txn_id("send", "!a:x|t", "", "1")}
    assert len(keys) == 4
