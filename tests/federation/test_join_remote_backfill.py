"""Backfill on demand: after joining a room that lives on another server, paginating /messages
backwards past our join fetches the older history with /backfill from a server in the room; the
events are checked, stored as history (not woken into live syncs) and shown in order."""

from __future__ import annotations

from urllib.parse import quote

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
