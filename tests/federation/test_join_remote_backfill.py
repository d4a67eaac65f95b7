"""Backfill on demand: after joining a room that lives on another server, paginating /messages
backwards past our join fetches the older history with /backfill from a server in the room; the
events are checked, stored as history (not woken into live syncs) and shown in order."""

from __future__ import annotations

import time
from urllib.parse import quote

from homeserver.events.builder import build_event
from tests.federation.helpers import user_with_displayname
from tests.federation.test_join_remote import call, join, resident, sync_room


async def messages(hs, ca, token: str, room_id: str, from_token: str, limit: int) -> dict:
    status, body = await call(hs, ca, "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/messages", token,
                              params={"dir": "b", "from": from_token, "limit": str(limit)})
    assert status == 200, body
    return body


async def test_paging_back_past_a_remote_join_backfills_the_rooms_history(fed_hs, ca, make_remote):
    room = await resident(make_remote)
    for i in range(30):
        room.send("m.room.message", {"msgtype": "m.text", "body": f"bericht {i}"})
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    assert (await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name]))[0] == 200
    synced = await sync_room(fed_hs, ca, dave["access_token"], room.room_id)
    prev_batch = synced["timeline"]["prev_batch"]

    page = await messages(fed_hs, ca, dave["access_token"], room.room_id, prev_batch, 20)
    bodies = [e["content"].get("body") for e in page["chunk"] if e["type"] == "m.room.message"]
    assert bodies == [f"bericht {i}" for i in range(29, 9, -1)]
    assert room.backfill_requests, "no /backfill was asked"

    page = await messages(fed_hs, ca, dave["access_token"], room.room_id, page["end"], 20)
    bodies = [e["content"].get("body") for e in page["chunk"] if e["type"] == "m.room.message"]
    assert bodies == [f"bericht {i}" for i in range(9, -1, -1)]
    # Further back, the room's state events (held as outliers since the join) take their place in
    # history, down to the create event, where history ends.
    types: list[str] = [e["type"] for e in page["chunk"] if e["type"] != "m.room.message"]
    while "end" in page:
        page = await messages(fed_hs, ca, dave["access_token"], room.room_id, page["end"], 20)
        types += [e["type"] for e in page["chunk"]]
    assert types == ["m.room.name", "m.room.history_visibility", "m.room.join_rules", "m.room.power_levels",
                     "m.room.member", "m.room.create"]

    # History is older than any sync position: an incremental sync does not replay it.
    status, later = await call(fed_hs, ca, "GET", "/_matrix/client/v3/sync", dave["access_token"],
                               params={"since": (await call(fed_hs, ca, "GET", "/_matrix/client/v3/sync",
                                                            dave["access_token"]))[1]["next_batch"],
                                       "timeout": "0"})
    assert status == 200
    assert room.room_id not in later.get("rooms", {}).get("join", {})


async def test_backfilled_events_with_forged_signatures_are_left_out(fed_hs, ca, make_remote):
    room = await resident(make_remote)
    forged = room.send("m.room.message", {"msgtype": "m.text", "body": "forged"})
    room.send("m.room.message", {"msgtype": "m.text", "body": "genuine"})
    key_id = next(iter(forged.pdu["signatures"][room.remote.server_name]))
    forged.pdu["signatures"][room.remote.server_name][key_id] = "A" * 86  # type: ignore[index]
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    assert (await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name]))[0] == 200
    synced = await sync_room(fed_hs, ca, dave["access_token"], room.room_id)
    page = await messages(fed_hs, ca, dave["access_token"], room.room_id, synced["timeline"]["prev_batch"], 10)
    bodies = [e["content"].get("body") for e in page["chunk"] if e["type"] == "m.room.message"]
    assert "genuine" in bodies and "forged" not in bodies
    assert await fed_hs.event_store.get_event(forged.event_id) is None


async def all_history(hs, ca, token: str, room_id: str, limit: int = 50) -> list[dict]:
    synced = await sync_room(hs, ca, token, room_id)
    page = await messages(hs, ca, token, room_id, synced["timeline"]["prev_batch"], limit)
    events = list(page["chunk"])
    while "end" in page:
        page = await messages(hs, ca, token, room_id, page["end"], limit)
        events += page["chunk"]
    return events


async def test_backfilled_history_is_shown_by_the_visibility_of_its_own_time(fed_hs, ca, make_remote):
    # The room was members-only ("joined") for a while before it became "shared": what was said then
    # stays hidden from a later joiner, which needs the state at those events, not the state at our join.
    room = await resident(make_remote)
    room.send("m.room.history_visibility", {"history_visibility": "joined"}, state_key="")
    for i in range(3):
        room.send("m.room.message", {"msgtype": "m.text", "body": f"geheim {i}"})
    room.send("m.room.history_visibility", {"history_visibility": "shared"}, state_key="")
    for i in range(3):
        room.send("m.room.message", {"msgtype": "m.text", "body": f"openbaar {i}"})
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    assert (await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name]))[0] == 200

    # Small pages: the state before each batch's oldest event comes from the resident's /state_ids.
    events = await all_history(fed_hs, ca, dave["access_token"], room.room_id, limit=3)
    bodies = [e["content"].get("body") for e in events if e["type"] == "m.room.message"]
    assert bodies == ["openbaar 2", "openbaar 1", "openbaar 0"]
    assert room.state_ids_requests
    secret = next(e for e in room.events.values() if e.content.get("body") == "geheim 1")
    state = await fed_hs.event_store.get_state_after_event(secret.event_id)
    visibility = await fed_hs.event_store.get_event(state[("m.room.history_visibility", "")])
    assert visibility.content == {"history_visibility": "joined"}


async def test_a_backfilled_event_the_state_before_it_forbids_is_rejected(fed_hs, ca, make_remote):
    # Mallory was banned, then (on a misbehaving server) "speaks" citing her old join as auth event:
    # her auth events allow it, the state before it does not.
    room = await resident(make_remote)
    mallory = room.user("mallory")
    room.send("m.room.member", {"membership": "join"}, state_key=mallory, sender=mallory)
    mallory_join = room.state[("m.room.member", mallory)]
    room.send("m.room.member", {"membership": "ban"}, state_key=mallory)
    auth_ids = [room.state[("m.room.power_levels", "")], mallory_join]
    if not room.room_version.room_id_from_create_event:
        auth_ids.append(room.create.event_id)
    sneaky = build_event(
        room_version=room.room_version, event_type="m.room.message", sender=mallory,
        content={"msgtype": "m.text", "body": "toch nog even"}, room_id=room.room_id, state_key=None,
        prev_event_ids=list(room.extremities), auth_event_ids=sorted(auth_ids), depth=room.depth + 1,
        origin_server_ts=int(time.time() * 1000), origin=room.remote.server_name, signing_key=room.remote.signing_key)
    room.state_before[sneaky.event_id] = dict(room.state)
    room.events[sneaky.event_id] = sneaky
    room.extremities, room.depth = [sneaky.event_id], sneaky.depth
    room.send("m.room.message", {"msgtype": "m.text", "body": "daarna"})
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    assert (await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name]))[0] == 200

    events = await all_history(fed_hs, ca, dave["access_token"], room.room_id)
    bodies = [e["content"].get("body") for e in events if e["type"] == "m.room.message"]
    assert bodies == ["daarna"]
    stored = await fed_hs.event_store.get_event(sneaky.event_id)
    assert stored is not None and "state before it" in (stored.rejected_reason or "")
