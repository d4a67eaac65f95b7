"""The legacy endpoints older clients, bots and test tools still use: /events, /initialSync."""

from __future__ import annotations

from typing import Any

from synctest.cases.messages import CLIENT, create_room, join, q, send_text
from synctest.checks import expect, expect_status
from synctest.context import Context
from synctest.registry import case
from synctest.users import User


async def initial_sync(ctx: Context, user: User, **params: str) -> dict[str, Any]:
    response = await ctx.get(f"{CLIENT}/initialSync", token=user.access_token, params=params or None)
    expect_status(response, 200)
    return response.json


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e.get("content", {}).get("body") for e in events if e.get("type") == "m.room.message"]


@case
async def initial_sync_snapshots_joined_rooms(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice, name="Snapshot")
    await send_text(ctx, alice, room_id, "first")
    await send_text(ctx, alice, room_id, "second")
    body = await initial_sync(ctx, alice, limit="10")
    expect(isinstance(body.get("end"), str), f"no end token: {body.get('end')!r}")
    rooms = {room.get("room_id"): room for room in body.get("rooms", [])}
    expect(room_id in rooms, f"{room_id} missing from {list(rooms)}")
    room = rooms[room_id]
    expect(room.get("membership") == "join", f"membership {room.get('membership')!r}")
    messages = room.get("messages", {})
    expect(bodies(messages.get("chunk", []))[-2:] == ["first", "second"],
           f"messages are not the newest, oldest first: {bodies(messages.get('chunk', []))}")
    expect(isinstance(messages.get("start"), str) and isinstance(messages.get("end"), str), f"tokens: {messages}")
    names = [e["content"].get("name") for e in room.get("state", []) if e.get("type") == "m.room.name"]
    expect(names == ["Snapshot"], f"state names {names}")


@case
async def room_initial_sync_snapshots_one_room_and_peeks_world_readable_ones(ctx: Context) -> None:
    alice, eve = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable"}}])
    await send_text(ctx, alice, room_id, "hello peekers")
    response = await ctx.get(f"{CLIENT}/rooms/{q(room_id)}/initialSync", token=alice.access_token)
    expect_status(response, 200)
    mine = response.json
    expect(mine.get("room_id") == room_id and mine.get("membership") == "join", f"snapshot {mine}")
    expect("hello peekers" in bodies(mine.get("messages", {}).get("chunk", [])), f"messages {mine.get('messages')}")
    response = await ctx.get(f"{CLIENT}/rooms/{q(room_id)}/initialSync", token=eve.access_token)
    expect_status(response, 200)
    peek = response.json
    expect("hello peekers" in bodies(peek.get("messages", {}).get("chunk", [])), f"peek {peek.get('messages')}")
    expect("membership" not in peek, f"a peek reports membership {peek.get('membership')!r}")


@case
async def an_event_is_fetched_by_its_id_alone(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice)
    event_id = await send_text(ctx, alice, room_id, "by id")
    response = await ctx.get(f"{CLIENT}/events/{q(event_id)}", token=alice.access_token)
    expect_status(response, 200)
    expect(response.json.get("event_id") == event_id and response.json.get("content", {}).get("body") == "by id",
           f"got {response.json}")


@case
async def the_event_stream_delivers_events_after_the_initial_sync(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="public_chat")
    await join(ctx, bob, room_id)
    start = (await initial_sync(ctx, bob, limit="0"))["end"]
    event_id = await send_text(ctx, alice, room_id, "streamed")
    seen: list[str] = []
    token = start
    for _ in range(5):  # other kinds of events may come first
        response = await ctx.get(f"{CLIENT}/events", token=bob.access_token,
                                 params={"from": token, "timeout": "5000"})
        expect_status(response, 200)
        expect(isinstance(response.json.get("end"), str), f"no end token: {response.json}")
        seen += [e.get("event_id") for e in response.json.get("chunk", [])]
        token = response.json["end"]
        if event_id in seen:
            break
    expect(event_id in seen, f"the message never came through /events: {seen}")
