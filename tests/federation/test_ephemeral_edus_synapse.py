"""Interop with a real Synapse (TLS on loopback, certificates verified both ways): typing, read
receipts (threaded) and presence travel as EDUs in both directions between our user and Synapse's
in a room on Synapse, and each side's /sync shows the other's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from tests.federation.helpers import user_with_displayname
from tests.federation.test_join_remote import call, join
from tests.federation.test_join_remote_synapse import on_synapse, synapse_room, unique
from tests.support.synapse_federation import FederatingSynapse

SYNC = "/_matrix/client/v3/sync"
DEADLINE_S = 60.0


async def ours_until(hs, ca, token: str, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Long-poll our /sync until a response satisfies `predicate`."""
    since = None
    deadline = time.monotonic() + DEADLINE_S
    while True:
        params = {"timeout": "1000" if since else "0", "set_presence": "offline"}
        if since:
            params["since"] = since
        status, response = await call(hs, ca, "GET", SYNC, token, params=params)
        assert status == 200, response
        if predicate(response):
            return response
        since = response["next_batch"]
        assert time.monotonic() < deadline, f"our /sync never showed it; last: {response}"


async def synapses_until(synapse: FederatingSynapse, token: str, predicate: Callable[[dict[str, Any]], bool]
                         ) -> dict[str, Any]:
    """Long-poll Synapse's /sync until a response satisfies `predicate`."""
    since = None
    deadline = time.monotonic() + DEADLINE_S
    while True:
        params = {"timeout": "1000" if since else "0", "set_presence": "offline"}
        if since:
            params["since"] = since
        status, response = await on_synapse(synapse, "GET", SYNC, token, params=params)
        assert status == 200, response
        if predicate(response):
            return response
        since = response["next_batch"]
        assert time.monotonic() < deadline, f"Synapse's /sync never showed it\n{synapse.log_tail()}"


def ephemeral(response: dict[str, Any], room_id: str, event_type: str) -> list[dict[str, Any]]:
    room = response.get("rooms", {}).get("join", {}).get(room_id, {})
    return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == event_type]


def typing_in(response: dict[str, Any], room_id: str) -> list[str] | None:
    events = ephemeral(response, room_id, "m.typing")
    return events[-1]["content"]["user_ids"] if events else None


def receipt_in(response: dict[str, Any], room_id: str, event_id: str, user_id: str) -> dict[str, Any] | None:
    for event in ephemeral(response, room_id, "m.receipt"):
        found = event["content"].get(event_id, {}).get("m.read", {}).get(user_id)
        if found is not None:
            return found
    return None


def presence_in(response: dict[str, Any], user_id: str) -> dict[str, Any] | None:
    events = [e for e in response.get("presence", {}).get("events", []) if e["sender"] == user_id]
    return events[-1]["content"] if events else None


async def shared_room(fed_hs, ca, synapse: FederatingSynapse) -> tuple[dict, dict, str]:
    """(bob on Synapse, dave of ours, room on Synapse both are joined to)."""
    bob = await synapse.register(unique("bob"))
    room_id = await synapse_room(synapse, bob["access_token"], preset="public_chat")
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await join(fed_hs, ca, dave["access_token"], room_id, [synapse.server_name])
    assert (status, body) == (200, {"room_id": room_id}), synapse.log_tail()
    return bob, dave, room_id


async def test_typing_is_seen_across_both_ways(fed_hs, ca, synapse):
    bob, dave, room_id = await shared_room(fed_hs, ca, synapse)
    room = quote(room_id)
    status, body = await call(fed_hs, ca, "PUT", f"/_matrix/client/v3/rooms/{room}/typing/{quote(dave['user_id'])}",
                              dave["access_token"], {"typing": True, "timeout": 30000})
    assert status == 200, body
    await synapses_until(synapse, bob["access_token"],
                         lambda r: dave["user_id"] in (typing_in(r, room_id) or []))

    status, body = await on_synapse(synapse, "PUT", f"/_matrix/client/v3/rooms/{room}/typing/{quote(bob['user_id'])}",
                                    bob["access_token"], {"typing": True, "timeout": 30000})
    assert status == 200, body
    await ours_until(fed_hs, ca, dave["access_token"], lambda r: bob["user_id"] in (typing_in(r, room_id) or []))

    # Stopping travels too.
    status, _ = await call(fed_hs, ca, "PUT", f"/_matrix/client/v3/rooms/{room}/typing/{quote(dave['user_id'])}",
                           dave["access_token"], {"typing": False})
    assert status == 200
    await synapses_until(synapse, bob["access_token"],
                         lambda r: typing_in(r, room_id) is not None and dave["user_id"] not in typing_in(r, room_id))


async def test_read_receipts_are_seen_across_both_ways_threaded_too(fed_hs, ca, synapse):
    bob, dave, room_id = await shared_room(fed_hs, ca, synapse)
    room = quote(room_id)
    status, sent = await on_synapse(synapse, "PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/r1",
                                    bob["access_token"], {"msgtype": "m.text", "body": "lees mij"})
    assert status == 200, sent
    bobs_event = sent["event_id"]
    await ours_until(fed_hs, ca, dave["access_token"], lambda r: bobs_event in [
        e["event_id"] for e in r.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {}).get("events", [])])
    status, body = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/rooms/{room}/receipt/m.read/{quote(bobs_event)}",
                              dave["access_token"], {"thread_id": "main"})
    assert status == 200, body
    synced = await synapses_until(synapse, bob["access_token"],
                                  lambda r: receipt_in(r, room_id, bobs_event, dave["user_id"]) is not None)
    assert receipt_in(synced, room_id, bobs_event, dave["user_id"])["thread_id"] == "main"

    status, sent = await call(fed_hs, ca, "PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/r2",
                              dave["access_token"], {"msgtype": "m.text", "body": "gelezen"})
    assert status == 200, sent
    daves_event = sent["event_id"]
    deadline = time.monotonic() + DEADLINE_S
    while True:  # Synapse accepts a receipt for an event it does not have yet, but sends it nowhere
        status, body = await on_synapse(synapse, "GET", f"/_matrix/client/v3/rooms/{room}/event/{quote(daves_event)}",
                                        bob["access_token"])
        if status == 200:
            break
        assert time.monotonic() < deadline, (status, body, synapse.log_tail())
        await asyncio.sleep(0.2)
    status, body = await on_synapse(synapse, "POST",
                                    f"/_matrix/client/v3/rooms/{room}/receipt/m.read/{quote(daves_event)}",
                                    bob["access_token"], {})
    assert status == 200, body
    synced = await ours_until(fed_hs, ca, dave["access_token"],
                              lambda r: receipt_in(r, room_id, daves_event, bob["user_id"]) is not None)
    assert isinstance(receipt_in(synced, room_id, daves_event, bob["user_id"])["ts"], int)


async def test_presence_is_seen_across_both_ways(fed_hs, ca, synapse):
    bob, dave, room_id = await shared_room(fed_hs, ca, synapse)
    status, body = await call(fed_hs, ca, "PUT", f"/_matrix/client/v3/presence/{quote(dave['user_id'])}/status",
                              dave["access_token"], {"presence": "online", "status_msg": "thuis"})
    assert status == 200, body
    synced = await synapses_until(synapse, bob["access_token"],
                                  lambda r: (presence_in(r, dave["user_id"]) or {}).get("status_msg") == "thuis")
    assert presence_in(synced, dave["user_id"])["presence"] == "online"

    status, body = await on_synapse(synapse, "PUT", f"/_matrix/client/v3/presence/{quote(bob['user_id'])}/status",
                                    bob["access_token"], {"presence": "unavailable", "status_msg": "even weg"})
    assert status == 200, body
    synced = await ours_until(fed_hs, ca, dave["access_token"],
                              lambda r: (presence_in(r, bob["user_id"]) or {}).get("status_msg") == "even weg")
    assert presence_in(synced, bob["user_id"])["presence"] == "unavailable"
