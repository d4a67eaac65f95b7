"""Simplified sliding sync (MSC4186): lists, room subscriptions, positions and extensions."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from synctest.cases.sync import create_room, join, q, send_message
from synctest.checks import expect, expect_error, expect_status
from synctest.context import Context
from synctest.registry import case
from synctest.users import User

CLIENT = "/_matrix/client/v3"
SLIDING = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


def room_list(start: int = 0, end: int = 19, timeline_limit: int = 1,
              required_state: list[list[str]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"ranges": [[start, end]], "timeline_limit": timeline_limit,
            "required_state": required_state or [], **extra}


async def sliding(ctx: Context, user: User, body: dict[str, Any], pos: str | None = None,
                  timeout: int | None = None) -> dict[str, Any]:
    params = {}
    if pos is not None:
        params["pos"] = pos
    if timeout is not None:
        params["timeout"] = str(timeout)
    response = await ctx.post(SLIDING, json=body, token=user.access_token, params=params or None)
    expect_status(response, 200)
    expect(isinstance(response.json.get("pos"), str), "pos missing from the response")
    return response.json


def bodies(room: dict[str, Any]) -> list[str]:
    return [e["content"].get("body") for e in room.get("timeline", []) if e.get("type") == "m.room.message"]


def state_pairs(room: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["type"], e["state_key"]) for e in room.get("required_state", [])}


@case
async def versions_advertise_simplified_sliding_sync(ctx: Context) -> None:
    response = await ctx.get("/_matrix/client/versions")
    expect_status(response, 200)
    features = response.json.get("unstable_features", {})
    expect(features.get("org.matrix.simplified_msc3575") is True,
           "org.matrix.simplified_msc3575 not advertised in unstable_features")


@case
async def sliding_sync_list_is_sorted_by_recency_and_counted(ctx: Context) -> None:
    alice = await ctx.register_user()
    rooms = [await create_room(ctx, alice, name=f"sliding {i}") for i in range(3)]
    await send_message(ctx, alice, rooms[0], "newest")
    body = await sliding(ctx, alice, {"lists": {"all": room_list(0, 1)}})
    expect(body.get("lists", {}).get("all", {}).get("count") == 3, f"lists: {body.get('lists')}")
    expect(set(body.get("rooms", {})) == {rooms[0], rooms[2]},
           f"range 0-1 gave {sorted(body.get('rooms', {}))}, expected the two most recent rooms")
    top = body["rooms"][rooms[0]]
    expect(top["bump_stamp"] > body["rooms"][rooms[2]]["bump_stamp"], "bump_stamp does not follow recency")
    expect(bodies(top) == ["newest"], f"timeline_limit 1 gave {bodies(top)}")
    expect(top.get("initial") is True, "a room sent for the first time is not marked initial")
    expect(top.get("name") == "sliding 0", f"name is {top.get('name')!r}")
    expect(top.get("joined_count") == 1, f"joined_count is {top.get('joined_count')!r}")
    expect(top.get("limited") is True, "a one-event window on a longer room is not limited")
    expect(isinstance(top.get("prev_batch"), str), "prev_batch missing")


@case
async def sliding_sync_incremental_carries_only_the_bumped_room(ctx: Context) -> None:
    alice = await ctx.register_user()
    rooms = [await create_room(ctx, alice) for _ in range(3)]
    request = {"lists": {"all": room_list(0, 19, timeline_limit=5)}}
    first = await sliding(ctx, alice, request)
    expect(set(first.get("rooms", {})) == set(rooms), "initial response misses rooms")
    await send_message(ctx, alice, rooms[0], "bump")
    second = await sliding(ctx, alice, request, pos=first["pos"])
    expect(set(second.get("rooms", {})) == {rooms[0]},
           f"incremental response has {sorted(second.get('rooms', {}))}, expected only the bumped room")
    room = second["rooms"][rooms[0]]
    expect(bodies(room) == ["bump"], f"incremental timeline is {bodies(room)}")
    expect(not room.get("initial"), "a room the client has is marked initial again")
    expect(room.get("num_live") == 1, f"num_live is {room.get('num_live')!r}")
    expect(room["bump_stamp"] > first["rooms"][rooms[2]]["bump_stamp"], "the bumped room's bump_stamp did not grow")


@case
async def sliding_sync_long_poll_returns_when_a_message_arrives(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="public_chat")
    await join(ctx, bob, room_id)
    request = {"lists": {"all": room_list(timeline_limit=5)}}
    first = await sliding(ctx, bob, request)
    waiting = asyncio.create_task(sliding(ctx, bob, request, pos=first["pos"], timeout=60_000))
    await asyncio.sleep(0.5)
    await send_message(ctx, alice, room_id, "wake up")
    body = await asyncio.wait_for(waiting, 30)
    expect("wake up" in bodies(body.get("rooms", {}).get(room_id, {})), "the long poll did not deliver the message")


@case
async def sliding_sync_position_of_another_connection_is_unknown(ctx: Context) -> None:
    alice = await ctx.register_user()
    await create_room(ctx, alice)
    first = await sliding(ctx, alice, {"conn_id": "room-list", "lists": {"all": room_list()}})
    response = await ctx.post(SLIDING, json={"conn_id": "encryption", "lists": {}}, token=alice.access_token,
                              params={"pos": first["pos"]})
    expect_error(response, 400, "M_UNKNOWN_POS")
    again = await sliding(ctx, alice, {"conn_id": "encryption", "lists": {}})
    expect(isinstance(again["pos"], str), "a new connection after M_UNKNOWN_POS failed")


@case
async def sliding_sync_required_state_exact_keys_and_lazy_members(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="public_chat", topic="onderwerp")
    await join(ctx, bob, room_id)
    await send_message(ctx, bob, room_id, "from bob")
    required = [["m.room.topic", ""], ["m.room.member", "$LAZY"]]
    body = await sliding(ctx, alice, {"lists": {"all": room_list(required_state=required)}})
    pairs = state_pairs(body["rooms"][room_id])
    expect(pairs == {("m.room.topic", ""), ("m.room.member", bob.user_id)},
           f"required_state gave {sorted(pairs)}")


@case
async def sliding_sync_room_subscription_expands_the_timeline(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice)
    for i in range(3):
        await send_message(ctx, alice, room_id, f"m{i}")
    first = await sliding(ctx, alice, {"room_subscriptions": {room_id: {"timeline_limit": 1, "required_state": []}}})
    expect(bodies(first["rooms"][room_id]) == ["m2"], f"subscription timeline {bodies(first['rooms'][room_id])}")
    second = await sliding(ctx, alice, {"room_subscriptions": {room_id: {"timeline_limit": 3, "required_state": []}}},
                           pos=first["pos"])
    room = second.get("rooms", {}).get(room_id, {})
    expect(bodies(room) == ["m0", "m1", "m2"], f"expanded timeline {bodies(room)}")


@case
async def sliding_sync_invite_has_invite_state(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="private_chat", name="uitnodiging", invite=[bob.user_id])
    body = await sliding(ctx, bob, {"lists": {"invites": room_list(filters={"is_invite": True})}})
    expect(body["lists"]["invites"]["count"] == 1, f"invites list: {body['lists']['invites']}")
    state = body["rooms"][room_id].get("invite_state", [])
    types = {e.get("type") for e in state}
    expect({"m.room.create", "m.room.name", "m.room.member"} <= types, f"invite_state types {sorted(types)}")


@case
async def sliding_sync_extensions_deliver_to_device_and_account_data(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    sent = await ctx.put(f"{CLIENT}/sendToDevice/m.synctest/sliding-{time.monotonic_ns()}",
                         json={"messages": {bob.user_id: {bob.device_id: {"n": 1}}}}, token=alice.access_token)
    expect_status(sent, 200)
    put = await ctx.put(f"{CLIENT}/user/{q(bob.user_id)}/account_data/nl.synctest.sliding", json={"x": 1},
                        token=bob.access_token)
    expect_status(put, 200)
    request = {"extensions": {"to_device": {"enabled": True}, "account_data": {"enabled": True},
                              "e2ee": {"enabled": True}}}
    body = await sliding(ctx, bob, request)
    extensions = body.get("extensions", {})
    events = extensions.get("to_device", {}).get("events", [])
    expect([e.get("content") for e in events] == [{"n": 1}], f"to_device events {events}")
    expect(isinstance(extensions["to_device"].get("next_batch"), str), "to_device.next_batch missing")
    global_data = extensions.get("account_data", {}).get("global", [])
    expect({"type": "nl.synctest.sliding", "content": {"x": 1}} in global_data, "global account data missing")
    counts = extensions.get("e2ee", {}).get("device_one_time_keys_count")
    expect(isinstance(counts, dict), f"e2ee.device_one_time_keys_count is {counts!r}")
    acked = {"extensions": {"to_device": {"enabled": True, "since": extensions["to_device"]["next_batch"]}}}
    second = await sliding(ctx, bob, acked, pos=body["pos"])
    expect(second.get("extensions", {}).get("to_device", {}).get("events", []) == [],
           "to_device messages acknowledged with since were delivered again")


@case
async def sliding_sync_filters_select_encrypted_tagged_and_dm_rooms(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    plain = await create_room(ctx, alice, name="plain")
    encrypted = await create_room(ctx, alice, name="encrypted", initial_state=[
        {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    dm = await create_room(ctx, bob, preset="trusted_private_chat", is_direct=True, invite=[alice.user_id])
    await join(ctx, alice, dm)
    expect_status(await ctx.put(f"{CLIENT}/user/{q(alice.user_id)}/account_data/m.direct",
                                json={bob.user_id: [dm]}, token=alice.access_token), 200)
    expect_status(await ctx.put(f"{CLIENT}/user/{q(alice.user_id)}/rooms/{q(plain)}/tags/m.favourite",
                                json={}, token=alice.access_token), 200)

    async def rooms_for(filters: dict[str, Any]) -> set[str]:
        body = await sliding(ctx, alice, {"lists": {"f": room_list(0, 99, timeline_limit=0, filters=filters)}})
        found = set(body.get("rooms", {}))
        expect(body["lists"]["f"]["count"] == len(found), f"count {body['lists']['f']} for {len(found)} rooms")
        return found

    for filters, wanted in (({"is_dm": True}, {dm}), ({"is_dm": False}, {plain, encrypted}),
                            ({"is_encrypted": True}, {encrypted}), ({"tags": ["m.favourite"]}, {plain}),
                            ({"not_tags": ["m.favourite"], "is_dm": False}, {encrypted})):
        found = await rooms_for(filters)
        expect(found == wanted, f"filters {filters}: {len(found)} rooms, wanted {len(wanted)}")


@case
async def sliding_sync_room_has_name_and_avatar_or_heroes(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    named = await create_room(ctx, alice, name="genoemd", initial_state=[
        {"type": "m.room.avatar", "state_key": "", "content": {"url": "mxc://example.org/avatar"}}])
    unnamed = await create_room(ctx, alice, preset="public_chat")
    await join(ctx, bob, unnamed)
    body = await sliding(ctx, alice, {"lists": {"all": room_list()}})
    rooms = body.get("rooms", {})
    expect(rooms.get(named, {}).get("name") == "genoemd", f"name {rooms.get(named, {}).get('name')!r}")
    expect(rooms[named].get("avatar") == "mxc://example.org/avatar", f"avatar {rooms[named].get('avatar')!r}")
    heroes = [h.get("user_id") for h in rooms.get(unnamed, {}).get("heroes", [])]
    expect(heroes == [bob.user_id], f"heroes {heroes}")
    expect(rooms[unnamed].get("joined_count") == 2, f"joined_count {rooms[unnamed].get('joined_count')}")


@case
async def sliding_sync_required_state_wildcards_and_me(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="public_chat", name="sterretjes", topic="onderwerp")
    await join(ctx, bob, room_id)
    me = await sliding(ctx, bob, {"lists": {"a": room_list(required_state=[["m.room.member", "$ME"]])}})
    expect(state_pairs(me["rooms"][room_id]) == {("m.room.member", bob.user_id)},
           f"$ME gave {sorted(state_pairs(me['rooms'][room_id]))}")
    members = await sliding(ctx, bob, {"lists": {"a": room_list(required_state=[["m.room.member", "*"]])}})
    expect(state_pairs(members["rooms"][room_id]) == {("m.room.member", alice.user_id),
                                                      ("m.room.member", bob.user_id)},
           f"members wildcard gave {sorted(state_pairs(members['rooms'][room_id]))}")
    everything = await sliding(ctx, bob, {"lists": {"a": room_list(required_state=[["*", "*"]])}})
    pairs = state_pairs(everything["rooms"][room_id])
    expect({("m.room.create", ""), ("m.room.name", ""), ("m.room.topic", ""), ("m.room.power_levels", ""),
            ("m.room.member", bob.user_id)} <= pairs, f"full wildcard gave {sorted(pairs)}")


@case
async def sliding_sync_typing_and_receipts_extensions_follow_rooms_in_view(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="public_chat", name="ontvangst")
    await join(ctx, bob, room_id)
    event_id = await send_message(ctx, alice, room_id, "lees mij")
    request = {"lists": {"all": room_list()},
               "extensions": {"typing": {"enabled": True}, "receipts": {"enabled": True}}}
    first = await sliding(ctx, alice, request)
    expect_status(await ctx.put(f"{CLIENT}/rooms/{q(room_id)}/typing/{q(bob.user_id)}",
                                json={"typing": True, "timeout": 30000}, token=bob.access_token), 200)
    expect_status(await ctx.post(f"{CLIENT}/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", json={},
                                 token=bob.access_token), 200)
    deadline = time.monotonic() + 10
    pos, typing, receipts = first["pos"], None, None
    while (typing is None or receipts is None) and time.monotonic() < deadline:
        body = await sliding(ctx, alice, request, pos=pos, timeout=2000)
        pos = body["pos"]
        extensions = body.get("extensions", {})
        typing = extensions.get("typing", {}).get("rooms", {}).get(room_id) or typing
        receipts = extensions.get("receipts", {}).get("rooms", {}).get(room_id) or receipts
    expect(typing is not None and bob.user_id in typing.get("content", {}).get("user_ids", []),
           f"typing {typing}")
    readers = (receipts or {}).get("content", {}).get(event_id, {}).get("m.read", {})
    expect(bob.user_id in readers, f"receipts {receipts}")
