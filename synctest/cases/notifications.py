"""Pushers (/pushers, /pushers/set), GET /notifications, and unread counts in /sync.

Servers may evaluate push rules after an event is sent, so cases that wait for a notification
poll for a few seconds instead of expecting it in the sender's response.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import quote

from synctest import schema
from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import CaseFailure, case
from synctest.users import User

CLIENT = "/_matrix/client/v3"
PUSHERS = CLIENT + "/pushers"
SET_PUSHER = CLIENT + "/pushers/set"
NOTIFICATIONS = CLIENT + "/notifications"
SYNC = CLIENT + "/sync"
GATEWAY = "https://push.example.org/_matrix/push/v1/notify"
POLL_SECONDS = 10.0
RECEIPT_POLL_SECONDS = 20.0

_txn = iter(range(1, 1_000_000))


def q(part: str) -> str:
    return quote(part, safe="@:!$")


def pusher(pushkey: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "http", "app_id": "org.example.synctest", "pushkey": pushkey, "app_display_name": "Synctest",
            "device_display_name": "Test phone", "lang": "en", "data": {"url": GATEWAY}, **extra}


async def list_pushers(ctx: Context, user: User) -> list[dict[str, Any]]:
    response = await ctx.get(PUSHERS, token=user.access_token)
    expect_status(response, 200)
    return expect_schema(response, PUSHERS)["pushers"]


async def set_pusher(ctx: Context, user: User, body: dict[str, Any]) -> None:
    response = await ctx.post(SET_PUSHER, json=body, token=user.access_token)
    expect_status(response, 200)
    expect_schema(response, SET_PUSHER)


async def shared_room(ctx: Context) -> tuple[User, User, str]:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    created = await ctx.post(CLIENT + "/createRoom", json={"preset": "public_chat"}, token=alice.access_token)
    expect_status(created, 200)
    room_id = created.json["room_id"]
    expect_status(await ctx.post(f"{CLIENT}/join/{q(room_id)}", json={}, token=bob.access_token), 200)
    return alice, bob, room_id


async def send_message(ctx: Context, user: User, room_id: str, body: str, **extra: Any) -> str:
    path = f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/notif{next(_txn)}-{time.monotonic_ns()}"
    sent = await ctx.put(path, json={"msgtype": "m.text", "body": body, **extra}, token=user.access_token)
    expect_status(sent, 200)
    return sent.json["event_id"]


async def notifications_until(ctx: Context, user: User, count: int, **params: str) -> dict[str, Any]:
    """GET /notifications until it lists `count` notifications (or the poll time runs out)."""
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        response = await ctx.get(NOTIFICATIONS, token=user.access_token, params=params or None)
        expect_status(response, 200)
        body = response.json
        # Synapse sends `profile_tag: null` where the schema wants a string or nothing: a quirk
        # this suite does not hold against either server.
        for notification in body.get("notifications", []):
            if isinstance(notification, dict) and notification.get("profile_tag", "") is None:
                del notification["profile_tag"]
        if body.get("next_token", "") is None:
            del body["next_token"]
        try:
            schema.validate_response("GET", NOTIFICATIONS, 200, body)
        except (schema.SchemaViolation, schema.SpecError) as error:
            raise CaseFailure(f"{response.describe()}: {error}") from None
        if len(body["notifications"]) >= count or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.2)


# --- pushers --------------------------------------------------------------------------------

@case
async def pushers_lists_a_new_users_pushers_as_empty(ctx: Context) -> None:
    user = await ctx.register_user()
    expect(await list_pushers(ctx, user) == [], "a new user has pushers")


@case
async def pushers_set_creates_updates_and_deletes_a_pusher(ctx: Context) -> None:
    user = await ctx.register_user()
    await set_pusher(ctx, user, pusher("synctest-key-1", data={"url": GATEWAY, "format": "event_id_only"}))
    listed = await list_pushers(ctx, user)
    expect(len(listed) == 1, f"expected one pusher, got {listed}")
    got = listed[0]
    expect(got["pushkey"] == "synctest-key-1" and got["kind"] == "http" and got["app_id"] == "org.example.synctest",
           f"pusher identity changed: {got}")
    expect(got["app_display_name"] == "Synctest" and got["device_display_name"] == "Test phone"
           and got["lang"] == "en", f"pusher names changed: {got}")
    expect(got["data"].get("url") == GATEWAY and got["data"].get("format") == "event_id_only",
           f"pusher data changed: {got['data']}")
    await set_pusher(ctx, user, pusher("synctest-key-1", lang="nl"))
    listed = await list_pushers(ctx, user)
    expect([p["lang"] for p in listed] == ["nl"], f"updating a pusher gave {listed}")
    await set_pusher(ctx, user, {"kind": None, "app_id": "org.example.synctest", "pushkey": "synctest-key-1"})
    expect(await list_pushers(ctx, user) == [], "kind: null did not delete the pusher")


@case
async def pushers_set_takes_a_pushkey_from_other_users_unless_appending(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    key = f"synctest-shared-{time.monotonic_ns()}"
    await set_pusher(ctx, alice, pusher(key))
    await set_pusher(ctx, bob, pusher(key, append=True))
    expect(len(await list_pushers(ctx, alice)) == 1, "append: true removed another user's pusher")
    await set_pusher(ctx, bob, pusher(key))
    expect(await list_pushers(ctx, alice) == [], "append: false kept another user's pusher of the same pushkey")
    expect(len(await list_pushers(ctx, bob)) == 1, "the setting user lost their pusher")


@case
async def pushers_set_without_required_fields_is_missing_param(ctx: Context) -> None:
    user = await ctx.register_user()
    body = pusher("synctest-key-2")
    del body["lang"]
    expect_error(await ctx.post(SET_PUSHER, json=body, token=user.access_token), 400, "M_MISSING_PARAM")
    expect_error(await ctx.post(SET_PUSHER, json={"kind": "http"}, token=user.access_token), 400,
                 "M_MISSING_PARAM")
    expect(await list_pushers(ctx, user) == [], "an invalid pusher was stored")


@case
async def pushers_require_authentication(ctx: Context) -> None:
    expect_error(await ctx.get(PUSHERS), 401, "M_MISSING_TOKEN")


# --- notifications --------------------------------------------------------------------------

@case
async def notifications_lists_notified_events_newest_first(ctx: Context) -> None:
    alice, bob, room_id = await shared_room(ctx)
    first = await send_message(ctx, alice, room_id, "first")
    second = await send_message(ctx, alice, room_id, "second, for bob", **{"m.mentions": {"user_ids": [bob.user_id]}})
    body = await notifications_until(ctx, bob, 2)
    ids = [n["event"]["event_id"] for n in body["notifications"]]
    expect(ids == [second, first], f"notifications {ids}, expected [{second}, {first}]")
    newest = body["notifications"][0]
    expect(newest["room_id"] == room_id, f"room_id {newest['room_id']}")
    expect(newest["read"] is False, "an unread event is listed as read")
    expect("notify" in newest["actions"], f"actions {newest['actions']} lack notify")
    expect(newest["event"]["content"]["body"] == "second, for bob", "the event content is missing")
    mine = await notifications_until(ctx, alice, 0)
    expect(mine["notifications"] == [], "the sender is notified of their own messages")


@case
async def notifications_only_highlight_and_pagination(ctx: Context) -> None:
    alice, bob, room_id = await shared_room(ctx)
    plain = await send_message(ctx, alice, room_id, "plain")
    mention = await send_message(ctx, alice, room_id, "hey bob", **{"m.mentions": {"user_ids": [bob.user_id]}})
    last = await send_message(ctx, alice, room_id, "plain again")
    await notifications_until(ctx, bob, 3)
    highlights = await notifications_until(ctx, bob, 1, only="highlight")
    ids = [n["event"]["event_id"] for n in highlights["notifications"]]
    expect(ids == [mention], f"only=highlight listed {ids}, expected [{mention}]")
    page = await notifications_until(ctx, bob, 2, limit="2")
    ids = [n["event"]["event_id"] for n in page["notifications"]]
    expect(ids == [last, mention], f"limit=2 listed {ids}")
    expect(isinstance(page.get("next_token"), str), "a full page has no next_token")
    rest = await notifications_until(ctx, bob, 1, limit="2", **{"from": page["next_token"]})
    ids = [n["event"]["event_id"] for n in rest["notifications"]]
    expect(ids == [plain], f"the next page listed {ids}, expected [{plain}]")


@case
async def notifications_are_marked_read_by_a_read_receipt(ctx: Context) -> None:
    alice, bob, room_id = await shared_room(ctx)
    event_id = await send_message(ctx, alice, room_id, "read me")
    await notifications_until(ctx, bob, 1)
    receipt = await ctx.post(f"{CLIENT}/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", json={},
                             token=bob.access_token)
    expect_status(receipt, 200)
    body = await notifications_until(ctx, bob, 1)
    expect([n["read"] for n in body["notifications"]] == [True], f"after a receipt: {body['notifications']}")


# --- counts in /sync -------------------------------------------------------------------------

async def room_counts(ctx: Context, user: User, room_id: str) -> dict[str, Any]:
    # A never-matching type makes each request distinct: Synapse answers a repeated identical
    # /sync from a response cache for a while.
    nonce = f"org.synctest.nonce{next(_txn)}"
    timeline = {"limit": 1, "not_types": [nonce]}
    response = await ctx.get(SYNC, token=user.access_token, params={"filter": json.dumps({"room": {"timeline": timeline}})})
    expect_status(response, 200)
    return response.json["rooms"]["join"].get(room_id, {}).get("unread_notifications", {})


@case
async def sync_counts_unread_mentions_until_a_read_receipt(ctx: Context) -> None:
    alice, bob, room_id = await shared_room(ctx)
    await send_message(ctx, alice, room_id, "plain")
    last = await send_message(ctx, alice, room_id, "bob!", **{"m.mentions": {"user_ids": [bob.user_id]}})
    await notifications_until(ctx, bob, 2)
    counts = await room_counts(ctx, bob, room_id)
    expect(counts == {"notification_count": 2, "highlight_count": 1}, f"counts before reading: {counts}")
    expect_status(await ctx.post(f"{CLIENT}/rooms/{q(room_id)}/receipt/m.read/{q(last)}", json={},
                                 token=bob.access_token), 200)
    # Servers may apply receipts to counts in the background (Synapse does): poll.
    deadline = time.monotonic() + RECEIPT_POLL_SECONDS
    while (counts := await room_counts(ctx, bob, room_id)) != {"notification_count": 0, "highlight_count": 0}:
        expect(time.monotonic() < deadline, f"counts after reading: {counts}")
        await asyncio.sleep(0.5)


@case
async def logging_out_removes_that_sessions_pushers(ctx: Context) -> None:
    from synctest.cases.devices import login_again

    user = await ctx.register_user()
    other = await login_again(ctx, user)
    other_user = User(user.user_id, other["access_token"], other["device_id"], user.password)
    await set_pusher(ctx, user, pusher("synctest-stays"))
    await set_pusher(ctx, other_user, pusher("synctest-goes", append=True))
    expect_status(await ctx.post(CLIENT + "/logout", json={}, token=other_user.access_token), 200)
    keys = [p["pushkey"] for p in await list_pushers(ctx, user)]
    expect(keys == ["synctest-stays"], f"pushers after the other session logged out: {keys}")


@case
async def notifications_carry_the_room_id_beside_the_event(ctx: Context) -> None:
    alice, bob, room_id = await shared_room(ctx)
    await send_message(ctx, alice, room_id, "for bob", **{"m.mentions": {"user_ids": [bob.user_id]}})
    body = await notifications_until(ctx, bob, 1)
    expect(body["notifications"], "no notification listed")
    notification = body["notifications"][0]
    expect(notification["room_id"] == room_id, f"notification room_id {notification['room_id']!r}")
    expect("room_id" not in notification["event"], "the notification's event repeats room_id")


async def sync_counts_neither_the_invite_nor_a_notice_once_joined(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    created = await ctx.post(CLIENT + "/createRoom", json={"preset": "private_chat", "invite": [bob.user_id]},
                             token=alice.access_token)
    expect_status(created, 200)
    room_id = created.json["room_id"]
    expect_status(await ctx.post(f"{CLIENT}/join/{q(room_id)}", json={}, token=bob.access_token), 200)
    await send_message(ctx, alice, room_id, "plain")
    await send_message(ctx, alice, room_id, "bob!", **{"m.mentions": {"user_ids": [bob.user_id]}})
    await send_message(ctx, alice, room_id, "a bot speaks", msgtype="m.notice")
    # The invite and the two messages are listed; the notice is not.
    body = await notifications_until(ctx, bob, 3)
    types = [n["event"]["type"] for n in body["notifications"]]
    expect(types == ["m.room.message", "m.room.message", "m.room.member"], f"notifications listed {types}")
    counts = await room_counts(ctx, bob, room_id)
    expect(counts == {"notification_count": 2, "highlight_count": 1}, f"counts: {counts}")
