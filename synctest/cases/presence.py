"""Presence: GET/PUT /presence/{userId}/status and m.presence delivery through /sync."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from synctest.cases.messages import CLIENT, create_room, join, q
from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case
from synctest.users import User

STATUS = CLIENT + "/presence/{userId}/status"
SYNC = CLIENT + "/sync"
SYNC_FILTER = json.dumps({"room": {"timeline": {"limit": 1}}})


def status_path(user_id: str) -> str:
    return STATUS.replace("{userId}", q(user_id))


async def get_status(ctx: Context, observer: User, user_id: str) -> dict[str, Any]:
    response = await ctx.get(status_path(user_id), token=observer.access_token)
    expect_status(response, 200)
    return expect_schema(response, STATUS)


@case
async def users_set_and_read_their_presence_and_status_message(ctx: Context) -> None:
    alice = await ctx.register_user()
    put = await ctx.put(status_path(alice.user_id), json={"presence": "online", "status_msg": "lunch"},
                        token=alice.access_token)
    expect_status(put, 200)
    status = await get_status(ctx, alice, alice.user_id)
    expect(status["presence"] == "online" and status.get("status_msg") == "lunch", f"status {status}")
    expect_status(await ctx.put(status_path(alice.user_id), json={"presence": "unavailable"},
                                token=alice.access_token), 200)
    expect((await get_status(ctx, alice, alice.user_id))["presence"] == "unavailable", "unavailable after PUT")


@case
async def nobody_sets_the_presence_of_another_user(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    response = await ctx.put(status_path(alice.user_id), json={"presence": "online"}, token=bob.access_token)
    expect_error(response, 403, "M_FORBIDDEN")
    bad = await ctx.put(status_path(alice.user_id), json={"presence": "asleep"}, token=alice.access_token)
    expect_status(bad, 400)


@case
async def room_mates_receive_presence_through_sync(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="public_chat")
    await join(ctx, bob, room_id)
    first = await ctx.get(SYNC, token=bob.access_token, params={"filter": SYNC_FILTER, "timeout": "0"})
    expect_status(first, 200)
    since = first.json["next_batch"]
    put = await ctx.put(status_path(alice.user_id), json={"presence": "online", "status_msg": "here"},
                        token=alice.access_token)
    expect_status(put, 200)
    deadline = time.monotonic() + 15
    while True:
        response = await ctx.get(SYNC, token=bob.access_token,
                                 params={"filter": SYNC_FILTER, "timeout": "1000", "since": since})
        expect_status(response, 200)
        body = expect_schema(response, SYNC)
        events = [e for e in body.get("presence", {}).get("events", []) if e.get("sender") == alice.user_id]
        if any(e["content"].get("status_msg") == "here" for e in events):
            expect(events[-1]["type"] == "m.presence", f"presence event {events[-1]}")
            return
        expect(time.monotonic() < deadline, f"bob's sync never delivered alice's presence: {events}")
        since = body["next_batch"]


@case
async def set_presence_on_sync_takes_effect(ctx: Context) -> None:
    alice = await ctx.register_user()
    response = await ctx.get(SYNC, token=alice.access_token,
                             params={"filter": SYNC_FILTER, "timeout": "0", "set_presence": "unavailable"})
    expect_status(response, 200)
    expect((await get_status(ctx, alice, alice.user_id))["presence"] == "unavailable",
           "set_presence=unavailable set the user unavailable")


async def presence_since(ctx: Context, user: User, since: str | None, attempt: int = 0) -> tuple[dict[str, Any], str]:
    """{sender: content} of a sync's presence events, and its next_batch."""
    # A never-matching type makes each request distinct (Synapse caches identical syncs briefly).
    sync_filter = json.dumps({"room": {"timeline": {"limit": 1, "not_types": [f"org.synctest.nonce{attempt}"]}}})
    params = {"filter": sync_filter, "timeout": "0", **({"since": since} if since else {})}
    response = await ctx.get(SYNC, token=user.access_token, params=params)
    expect_status(response, 200)
    body = expect_schema(response, SYNC)
    return {e.get("sender"): e.get("content", {}) for e in body.get("presence", {}).get("events", [])}, \
        body["next_batch"]


@case
async def users_who_come_to_share_a_room_see_each_others_presence(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    for user, status in ((alice, "alice here"), (bob, "bob here")):
        expect_status(await ctx.put(status_path(user.user_id), json={"presence": "online", "status_msg": status},
                                    token=user.access_token), 200)
    _, alice_since = await presence_since(ctx, alice, None)
    _, bob_since = await presence_since(ctx, bob, None)
    room_id = await create_room(ctx, alice, preset="public_chat")
    await join(ctx, bob, room_id)
    for observer, since, other, status in ((bob, bob_since, alice, "alice here"),
                                           (alice, alice_since, bob, "bob here")):
        deadline = time.monotonic() + 10
        attempt = 0
        while True:
            attempt += 1
            seen, _ = await presence_since(ctx, observer, since, attempt)
            if seen.get(other.user_id, {}).get("status_msg") == status:
                break
            expect(time.monotonic() < deadline, f"the sync after sharing a room lacks the other's presence: {seen}")
            await asyncio.sleep(0.5)
