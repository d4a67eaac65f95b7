"""Typing notifications, read receipts (private, threaded) and read markers, observed through /sync."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case
from synctest.users import User

CLIENT = "/_matrix/client/v3"
TYPING = CLIENT + "/rooms/{roomId}/typing/{userId}"
RECEIPT = CLIENT + "/rooms/{roomId}/receipt/{receiptType}/{eventId}"
READ_MARKERS = CLIENT + "/rooms/{roomId}/read_markers"
SYNC = CLIENT + "/sync"
ROOM_ACCOUNT_DATA = CLIENT + "/user/{userId}/rooms/{roomId}/account_data/{type}"
# Small timelines keep the syncs cheap; ephemeral events are not limited by it.
SYNC_FILTER = json.dumps({"room": {"timeline": {"limit": 1}}})
# Synapse sweeps typing timeouts every 5 s, so an expiry can take the timeout plus that long.
EXPIRY_WAIT_SECONDS = 20.0

_txn = iter(range(1, 1_000_000))


def q(part: str) -> str:
    return quote(part, safe="@:!$")


def typing_path(room_id: str, user_id: str) -> str:
    return f"{CLIENT}/rooms/{q(room_id)}/typing/{q(user_id)}"


def receipt_path(room_id: str, event_id: str, receipt_type: str = "m.read") -> str:
    return f"{CLIENT}/rooms/{q(room_id)}/receipt/{q(receipt_type)}/{q(event_id)}"


def fully_read_path(user: User, room_id: str) -> str:
    return f"{CLIENT}/user/{q(user.user_id)}/rooms/{q(room_id)}/account_data/m.fully_read"


async def shared_room(ctx: Context) -> tuple[User, User, str]:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    created = await ctx.post(CLIENT + "/createRoom", json={"preset": "public_chat"}, token=alice.access_token)
    expect_status(created, 200)
    room_id = created.json["room_id"]
    expect_status(await ctx.post(f"{CLIENT}/join/{q(room_id)}", json={}, token=bob.access_token), 200)
    return alice, bob, room_id


async def send_message(ctx: Context, user: User, room_id: str, body: str, **extra: Any) -> str:
    path = f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/synctest{next(_txn)}-{time.monotonic_ns()}"
    sent = await ctx.put(path, json={"msgtype": "m.text", "body": body, **extra}, token=user.access_token)
    expect_status(sent, 200)
    return sent.json["event_id"]


def ephemeral_of(body: dict[str, Any], room_id: str, event_type: str) -> list[dict[str, Any]]:
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    return [e for e in room.get("ephemeral", {}).get("events", []) if e.get("type") == event_type]


async def sync_until(ctx: Context, user: User, found: Callable[[dict[str, Any]], bool], *,
                     since: str | None = None, wait_s: float = 10.0) -> tuple[dict[str, Any], str]:
    """Long-poll /sync until a response satisfies `found`; (that response, its next_batch)."""
    deadline = time.monotonic() + wait_s
    while True:
        params = {"filter": SYNC_FILTER, "timeout": "1000" if since else "0"}
        if since:
            params["since"] = since
        response = await ctx.get(SYNC, token=user.access_token, params=params)
        expect_status(response, 200)
        body = expect_schema(response, SYNC)
        if found(body):
            return body, body["next_batch"]
        since = body["next_batch"]
        expect(time.monotonic() < deadline, f"/sync of {user.user_id} never showed what was expected")


async def next_batch(ctx: Context, user: User) -> str:
    _, token = await sync_until(ctx, user, lambda body: True)
    return token


def typing_users(body: dict[str, Any], room_id: str) -> list[str] | None:
    events = ephemeral_of(body, room_id, "m.typing")
    return events[-1]["content"]["user_ids"] if events else None


def receipt_readers(body: dict[str, Any], room_id: str, event_id: str, receipt_type: str = "m.read") -> dict:
    readers: dict[str, Any] = {}
    for event in ephemeral_of(body, room_id, "m.receipt"):
        readers.update(event["content"].get(event_id, {}).get(receipt_type, {}))
    return readers


# --- typing -----------------------------------------------------------------------------------


@case
async def typing_shows_in_the_other_members_sync_until_it_expires(ctx: Context) -> None:
    alice, bob, room_id = await shared_room(ctx)
    since = await next_batch(ctx, bob)
    started = await ctx.put(typing_path(room_id, alice.user_id), json={"typing": True, "timeout": 1000},
                            token=alice.access_token)
    expect_status(started, 200)
    expect_schema(started, TYPING)
    _, since = await sync_until(ctx, bob, lambda b: typing_users(b, room_id) == [alice.user_id], since=since)
    await sync_until(ctx, bob, lambda b: typing_users(b, room_id) == [], since=since, wait_s=EXPIRY_WAIT_SECONDS)


@case
async def stopping_typing_clears_the_list(ctx: Context) -> None:
    alice, bob, room_id = await shared_room(ctx)
    path = typing_path(room_id, alice.user_id)
    expect_status(await ctx.put(path, json={"typing": True, "timeout": 30000}, token=alice.access_token), 200)
    _, since = await sync_until(ctx, bob, lambda b: typing_users(b, room_id) == [alice.user_id])
    stopped = await ctx.put(path, json={"typing": False}, token=alice.access_token)
    expect_status(stopped, 200)
    await sync_until(ctx, bob, lambda b: typing_users(b, room_id) == [], since=since)


@case
async def typing_for_another_user_is_forbidden(ctx: Context) -> None:
    alice, bob, room_id = await shared_room(ctx)
    response = await ctx.put(typing_path(room_id, bob.user_id), json={"typing": True}, token=alice.access_token)
    # The spec names no status; Synapse answers 400, we 403. Both say M_FORBIDDEN.
    expect_status(response, 400, 403)
    expect_error(response, response.status, "M_FORBIDDEN")


@case
async def typing_in_a_room_you_are_not_in_is_forbidden(ctx: Context) -> None:
    _, _, room_id = await shared_room(ctx)
    stranger = await ctx.register_user()
    response = await ctx.put(typing_path(room_id, stranger.user_id), json={"typing": True},
                             token=stranger.access_token)
    expect_error(response, 403, "M_FORBIDDEN")


@case
async def typing_without_an_access_token_is_refused(ctx: Context) -> None:
    alice, _, room_id = await shared_room(ctx)
    response = await ctx.put(typing_path(room_id, alice.user_id), json={"typing": True})
    expect_error(response, 401, "M_MISSING_TOKEN")


# --- receipts ---------------------------------------------------------------------------------


@case
async def a_read_receipt_shows_in_every_members_sync(ctx: Context) -> None:
    alice, bob, room_id = await shared_room(ctx)
    event_id = await send_message(ctx, alice, room_id, "lees mij")
    since = await next_batch(ctx, alice)
    response = await ctx.post(receipt_path(room_id, event_id), json={}, token=bob.access_token)
    expect_status(response, 200)
    expect(expect_schema(response, RECEIPT) == {}, f"{response.describe()}: {response.json}")
    body, _ = await sync_until(ctx, alice, lambda b: bob.user_id in receipt_readers(b, room_id, event_id),
                               since=since)
    receipt = receipt_readers(body, room_id, event_id)[bob.user_id]
    expect(isinstance(receipt.get("ts"), int), f"receipt without an integer ts: {receipt}")
    expect("thread_id" not in receipt, f"an unthreaded receipt has a thread_id: {receipt}")


@case
async def a_later_receipt_replaces_the_earlier_one(ctx: Context) -> None:
    alice, bob, room_id = await shared_room(ctx)
    first = await send_message(ctx, alice, room_id, "een")
    second = await send_message(ctx, alice, room_id, "twee")
    expect_status(await ctx.post(receipt_path(room_id, first), json={}, token=bob.access_token), 200)
    expect_status(await ctx.post(receipt_path(room_id, second), json={}, token=bob.access_token), 200)
    # Going back is accepted but does not move the receipt.
    expect_status(await ctx.post(receipt_path(room_id, first), json={}, token=bob.access_token), 200)
    body, _ = await sync_until(ctx, alice, lambda b: bob.user_id in receipt_readers(b, room_id, second))
    expect(bob.user_id not in receipt_readers(body, room_id, first),
           f"the replaced receipt on {first} is still listed: {ephemeral_of(body, room_id, 'm.receipt')}")


@case
async def private_receipts_are_shown_only_to_their_owner(ctx: Context) -> None:
    alice, bob, room_id = await shared_room(ctx)
    event_id = await send_message(ctx, alice, room_id, "stil gelezen")
    response = await ctx.post(receipt_path(room_id, event_id, "m.read.private"), json={}, token=bob.access_token)
    expect_status(response, 200)
    await sync_until(ctx, bob, lambda b: bob.user_id in receipt_readers(b, room_id, event_id, "m.read.private"))
    # A public receipt afterwards proves Alice's sync is up to date with Bob's receipts.
    marker = await send_message(ctx, alice, room_id, "marker")
    expect_status(await ctx.post(receipt_path(room_id, marker), json={}, token=bob.access_token), 200)
    body, _ = await sync_until(ctx, alice, lambda b: bob.user_id in receipt_readers(b, room_id, marker))
    expect(not receipt_readers(body, room_id, event_id, "m.read.private"),
           f"another member sees a private receipt: {ephemeral_of(body, room_id, 'm.receipt')}")


@case
async def threaded_receipts_carry_their_thread_id(ctx: Context) -> None:
    alice, bob, room_id = await shared_room(ctx)
    root = await send_message(ctx, alice, room_id, "root")
    reply = await send_message(ctx, alice, room_id, "reply",
                               **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    for event_id, thread_id in ((reply, root), (root, "main")):
        response = await ctx.post(receipt_path(room_id, event_id), json={"thread_id": thread_id},
                                  token=bob.access_token)
        expect_status(response, 200)
    body, _ = await sync_until(ctx, alice, lambda b: bob.user_id in receipt_readers(b, room_id, root))
    expect(receipt_readers(body, room_id, reply).get(bob.user_id, {}).get("thread_id") == root,
           f"threaded receipt on {reply}: {ephemeral_of(body, room_id, 'm.receipt')}")
    expect(receipt_readers(body, room_id, root)[bob.user_id].get("thread_id") == "main",
           f"main-timeline receipt on {root}: {ephemeral_of(body, room_id, 'm.receipt')}")


@case
async def receipts_with_a_bad_thread_id_are_refused(ctx: Context) -> None:
    alice, bob, room_id = await shared_room(ctx)
    root = await send_message(ctx, alice, room_id, "root")
    reply = await send_message(ctx, alice, room_id, "reply",
                               **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    for event_id, receipt_type, body in (
        (root, "m.read", {"thread_id": ""}),
        (root, "m.read", {"thread_id": 7}),
        (reply, "m.read", {"thread_id": "main"}),  # the reply is in a thread, not the main timeline
        (root, "m.fully_read", {"thread_id": "main"}),
    ):
        response = await ctx.post(receipt_path(room_id, event_id, receipt_type), json=body, token=bob.access_token)
        expect_error(response, 400, "M_INVALID_PARAM")


@case
async def unknown_receipt_types_are_refused(ctx: Context) -> None:
    alice, bob, room_id = await shared_room(ctx)
    event_id = await send_message(ctx, alice, room_id, "hallo")
    response = await ctx.post(receipt_path(room_id, event_id, "m.synctest"), json={}, token=bob.access_token)
    # Synapse answers M_UNKNOWN, we M_INVALID_PARAM; the status is what clients rely on.
    expect_status(response, 400)


@case
async def receipts_without_an_access_token_are_refused(ctx: Context) -> None:
    alice, _, room_id = await shared_room(ctx)
    event_id = await send_message(ctx, alice, room_id, "hallo")
    expect_error(await ctx.post(receipt_path(room_id, event_id), json={}), 401, "M_MISSING_TOKEN")


# --- read markers -----------------------------------------------------------------------------


@case
async def a_fully_read_receipt_sets_the_read_marker(ctx: Context) -> None:
    alice, bob, room_id = await shared_room(ctx)
    event_id = await send_message(ctx, alice, room_id, "hallo")
    response = await ctx.post(receipt_path(room_id, event_id, "m.fully_read"), json={}, token=bob.access_token)
    expect_status(response, 200)
    marker = await ctx.get(fully_read_path(bob, room_id), token=bob.access_token)
    expect_status(marker, 200)
    expect(expect_schema(marker, ROOM_ACCOUNT_DATA) == {"event_id": event_id}, f"{marker.describe()}: {marker.json}")


@case
async def read_markers_set_the_marker_and_the_receipt(ctx: Context) -> None:
    alice, bob, room_id = await shared_room(ctx)
    first = await send_message(ctx, alice, room_id, "een")
    second = await send_message(ctx, alice, room_id, "twee")
    response = await ctx.post(f"{CLIENT}/rooms/{q(room_id)}/read_markers",
                              json={"m.fully_read": second, "m.read": second}, token=bob.access_token)
    expect_status(response, 200)
    expect_schema(response, READ_MARKERS)
    # The marker does not move backwards.
    back = await ctx.post(f"{CLIENT}/rooms/{q(room_id)}/read_markers", json={"m.fully_read": first},
                          token=bob.access_token)
    expect_status(back, 200)
    marker = await ctx.get(fully_read_path(bob, room_id), token=bob.access_token)
    expect_status(marker, 200)
    expect(marker.json == {"event_id": second}, f"{marker.describe()}: {marker.json}")
    body, _ = await sync_until(ctx, bob, lambda b: bob.user_id in receipt_readers(b, room_id, second))
    account_data = body["rooms"]["join"][room_id].get("account_data", {}).get("events", [])
    expect({"type": "m.fully_read", "content": {"event_id": second}} in account_data,
           f"/sync room account data lacks the read marker: {account_data}")


@case
async def a_read_marker_on_an_unknown_event_is_not_found(ctx: Context) -> None:
    _, bob, room_id = await shared_room(ctx)
    server = bob.user_id.split(":", 1)[1]
    response = await ctx.post(f"{CLIENT}/rooms/{q(room_id)}/read_markers",
                              json={"m.fully_read": f"$synctest-missing:{server}"}, token=bob.access_token)
    expect_status(response, 404)
