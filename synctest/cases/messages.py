"""Room history: /messages pagination and filters, /context, /timestamp_to_event, visibility."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case
from synctest.users import User

CLIENT = "/_matrix/client/v3"
MESSAGES = CLIENT + "/rooms/{roomId}/messages"
CONTEXT = CLIENT + "/rooms/{roomId}/context/{eventId}"
TIMESTAMP = "/_matrix/client/v1/rooms/{roomId}/timestamp_to_event"

_txn = iter(range(1, 1_000_000))


def q(part: str) -> str:
    return quote(part, safe="@:!$")


async def create_room(ctx: Context, user: User, **body: Any) -> str:
    created = await ctx.post(CLIENT + "/createRoom", json=body, token=user.access_token)
    expect_status(created, 200)
    return created.json["room_id"]


async def join(ctx: Context, user: User, room_id: str) -> None:
    expect_status(await ctx.post(f"{CLIENT}/join/{q(room_id)}", json={}, token=user.access_token), 200)


async def send(ctx: Context, user: User, room_id: str, content: dict[str, Any],
               event_type: str = "m.room.message") -> str:
    path = f"{CLIENT}/rooms/{q(room_id)}/send/{event_type}/synctest-hist{next(_txn)}-{time.monotonic_ns()}"
    sent = await ctx.put(path, json=content, token=user.access_token)
    expect_status(sent, 200)
    return sent.json["event_id"]


async def send_text(ctx: Context, user: User, room_id: str, body: str) -> str:
    return await send(ctx, user, room_id, {"msgtype": "m.text", "body": body})


async def messages(ctx: Context, user: User, room_id: str, **params: Any) -> dict[str, Any]:
    path = MESSAGES.replace("{roomId}", q(room_id))
    response = await ctx.get(path, token=user.access_token, params={k: str(v) for k, v in params.items()})
    expect_status(response, 200)
    return expect_schema(response, MESSAGES)


async def paginate(ctx: Context, user: User, room_id: str, direction: str, limit: int) -> list[dict[str, Any]]:
    """Every event a user can page through, following `end` until it is absent or a page is empty."""
    events: list[dict[str, Any]] = []
    params: dict[str, Any] = {"dir": direction, "limit": limit}
    for _ in range(100):
        page = await messages(ctx, user, room_id, **params)
        events += page["chunk"]
        if "end" not in page or not page["chunk"]:
            return events
        params["from"] = page["end"]
    raise AssertionError("pagination did not end after 100 pages")


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in events]


@case
async def messages_paginate_backwards_over_the_whole_room_without_duplicates(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice)
    sent = [await send_text(ctx, alice, room_id, f"m{i}") for i in range(7)]
    events = await paginate(ctx, alice, room_id, "b", 3)
    seen = ids(events)
    expect(len(seen) == len(set(seen)), f"duplicates in {seen}")
    expect([e for e in seen if e in sent] == list(reversed(sent)), f"messages out of order: {seen} vs {sent}")
    expect(events[-1]["type"] == "m.room.create", f"the oldest event is {events[-1]['type']}, not m.room.create")


@case
async def messages_paginate_forwards_in_the_reverse_order(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice)
    for i in range(5):
        await send_text(ctx, alice, room_id, f"m{i}")
    backwards = ids(await paginate(ctx, alice, room_id, "b", 4))
    forwards = ids(await paginate(ctx, alice, room_id, "f", 3))
    expect(forwards == list(reversed(backwards)), f"forwards {forwards} != reversed backwards {backwards}")


@case
async def messages_end_token_resumes_exactly_in_either_direction(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice)
    sent = [await send_text(ctx, alice, room_id, f"m{i}") for i in range(6)]
    first = await messages(ctx, alice, room_id, dir="b", limit=2)
    expect(ids(first["chunk"]) == [sent[5], sent[4]], f"first page {ids(first['chunk'])}")
    older = await messages(ctx, alice, room_id, dir="b", limit=2, **{"from": first["end"]})
    expect(ids(older["chunk"]) == [sent[3], sent[2]], f"second page {ids(older['chunk'])}")
    newer = await messages(ctx, alice, room_id, dir="f", limit=10, **{"from": older["end"]})
    expect(ids(newer["chunk"])[:4] == sent[2:6], f"forwards from the end token gave {ids(newer['chunk'])}")


@case
async def messages_accept_a_sync_next_batch_as_from(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice)
    sent = [await send_text(ctx, alice, room_id, f"m{i}") for i in range(3)]
    synced = await ctx.get(CLIENT + "/sync", token=alice.access_token,
                           params={"filter": json.dumps({"room": {"timeline": {"limit": 1}}})})
    expect_status(synced, 200)
    page = await messages(ctx, alice, room_id, dir="b", limit=2, **{"from": synced.json["next_batch"]})
    expect(ids(page["chunk"]) == [sent[2], sent[1]], f"from next_batch gave {ids(page['chunk'])}")


@case
async def messages_filter_by_type_sender_and_url(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="public_chat")
    await join(ctx, bob, room_id)
    image = await send(ctx, alice, room_id, {"msgtype": "m.image", "body": "pic", "url": "mxc://example.org/abc"})
    text = await send_text(ctx, bob, room_id, "hoi")
    await send(ctx, alice, room_id, {"body": "custom"}, "org.synctest.custom")

    async def matching(**event_filter: Any) -> list[str]:
        page = await messages(ctx, alice, room_id, dir="b", limit=20, filter=json.dumps(event_filter))
        return ids(page["chunk"])

    found = await matching(types=["m.room.message"])
    expect(found == [text, image], f"types filter gave {found}")
    found = await matching(types=["m.room.message"], senders=[bob.user_id])
    expect(found == [text], f"senders filter gave {found}")
    found = await matching(types=["m.room.message"], not_senders=[bob.user_id])
    expect(found == [image], f"not_senders filter gave {found}")
    found = await matching(contains_url=True)
    expect(found == [image], f"contains_url filter gave {found}")
    found = await matching(not_types=["m.room.message", "m.room.member"])
    expect(text not in found and image not in found, f"not_types let messages through: {found}")


@case
async def messages_lazy_load_the_senders_members_as_state(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="public_chat")
    await join(ctx, bob, room_id)
    await send_text(ctx, bob, room_id, "from bob")
    page = await messages(ctx, alice, room_id, dir="b", limit=1, filter=json.dumps({"lazy_load_members": True}))
    state = page.get("state", [])
    members = {e["state_key"] for e in state if e["type"] == "m.room.member"}
    expect(bob.user_id in members, f"bob's member event missing from state {members}")
    expect(alice.user_id not in members, f"alice sent nothing in the chunk but is in state {members}")


@case
async def messages_of_a_private_room_are_forbidden_to_outsiders(ctx: Context) -> None:
    alice, eve = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="private_chat")
    response = await ctx.get(MESSAGES.replace("{roomId}", q(room_id)), token=eve.access_token,
                             params={"dir": "b"})
    expect_error(response, 403, "M_FORBIDDEN")


@case
async def messages_hide_history_before_the_join_when_visibility_is_joined(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}])
    secret = await send_text(ctx, alice, room_id, "before bob")
    await join(ctx, bob, room_id)
    after = await send_text(ctx, alice, room_id, "after bob")
    seen = ids(await paginate(ctx, bob, room_id, "b", 3))
    expect(after in seen, f"bob misses a message sent after his join: {seen}")
    expect(secret not in seen, "bob sees a message from before his join under 'joined' visibility")
    hidden = await ctx.get(CONTEXT.replace("{roomId}", q(room_id)).replace("{eventId}", q(secret)),
                           token=bob.access_token)
    expect_status(hidden, 403, 404)


@case
async def messages_show_history_before_the_join_when_visibility_is_shared(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "shared"}}])
    earlier = await send_text(ctx, alice, room_id, "before bob")
    await join(ctx, bob, room_id)
    seen = ids(await paginate(ctx, bob, room_id, "b", 3))
    expect(earlier in seen, f"bob cannot see shared history: {seen}")


@case
async def context_returns_the_event_its_neighbours_and_usable_tokens(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice)
    sent = [await send_text(ctx, alice, room_id, f"m{i}") for i in range(7)]
    path = CONTEXT.replace("{roomId}", q(room_id)).replace("{eventId}", q(sent[3]))
    response = await ctx.get(path, token=alice.access_token, params={"limit": "4"})
    expect_status(response, 200)
    body = expect_schema(response, CONTEXT)
    expect(body["event"]["event_id"] == sent[3], f"context event is {body['event']['event_id']}")
    before, after = ids(body["events_before"]), ids(body["events_after"])
    expect(before and before == list(reversed(sent[3 - len(before):3])), f"events_before {before}")
    expect(after and after == sent[4:4 + len(after)], f"events_after {after}")
    expect(any(e["type"] == "m.room.create" for e in body.get("state", [])), "no m.room.create in context state")
    newer = await messages(ctx, alice, room_id, dir="f", limit=10, **{"from": body["end"]})
    expect(ids(newer["chunk"])[:1] == sent[4 + len(after):5 + len(after)], f"after end: {ids(newer['chunk'])}")
    older = await messages(ctx, alice, room_id, dir="b", limit=1, **{"from": body["start"]})
    expect(ids(older["chunk"]) == [sent[2 - len(before)]], f"before start: {ids(older['chunk'])}")


@case
async def timestamp_to_event_finds_the_nearest_event(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice)
    last = await send_text(ctx, alice, room_id, "latest")
    path = TIMESTAMP.replace("{roomId}", q(room_id))
    future = int(time.time() * 1000) + 3_600_000
    response = await ctx.get(path, token=alice.access_token, params={"ts": str(future), "dir": "b"})
    expect_status(response, 200)
    body = expect_schema(response, TIMESTAMP)
    expect(body["event_id"] == last, f"closest event before the future is {body['event_id']}, not {last}")
    response = await ctx.get(path, token=alice.access_token, params={"ts": str(future), "dir": "f"})
    expect_error(response, 404, "M_NOT_FOUND")


@case
async def a_txn_id_reused_in_another_room_is_a_new_request(ctx: Context) -> None:
    # Only the room is varied: Synapse keys stored transaction IDs by room, user, device and ID,
    # so a redaction reusing a send's ID in the same room gets the sent event back there.
    user = await ctx.register_user()
    room_a, room_b = await create_room(ctx, user), await create_room(ctx, user)
    txn_id = f"synctest-scoped-{time.monotonic_ns()}"
    sent_a = await ctx.put(f"{CLIENT}/rooms/{q(room_a)}/send/m.room.message/{txn_id}",
                           json={"msgtype": "m.text", "body": "to A"}, token=user.access_token)
    expect_status(sent_a, 200)
    sent_b = await ctx.put(f"{CLIENT}/rooms/{q(room_b)}/send/m.room.message/{txn_id}",
                           json={"msgtype": "m.text", "body": "to B"}, token=user.access_token)
    expect_status(sent_b, 200)
    expect(sent_a.json["event_id"] != sent_b.json["event_id"], "the same txnId in two rooms returned one event")
    again = await ctx.put(f"{CLIENT}/rooms/{q(room_a)}/send/m.room.message/{txn_id}",
                          json={"msgtype": "m.text", "body": "to A"}, token=user.access_token)
    expect_status(again, 200)
    expect(again.json["event_id"] == sent_a.json["event_id"], "a retried send returned a new event")


async def the_legacy_post_send_without_a_transaction_id_sends_each_time(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice)
    path = f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message"
    content = {"msgtype": "m.text", "body": "legacy"}
    first = await ctx.post(path, json=content, token=alice.access_token)
    second = await ctx.post(path, json=content, token=alice.access_token)
    expect_status(first, 200)
    expect_status(second, 200)
    expect(first.json["event_id"] != second.json["event_id"],
           f"{second.describe()}: two POSTs gave one event {first.json['event_id']}")


async def messages_forwards_to_the_live_end_give_an_end_that_picks_up_new_events(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice)
    sent = [await send_text(ctx, alice, room_id, f"m{i}") for i in range(4)]
    back = await messages(ctx, alice, room_id, dir="b", limit=2)
    forward = await messages(ctx, alice, room_id, dir="f", limit=10, **{"from": back["end"]})
    ids = [e["event_id"] for e in forward["chunk"]]
    expect(ids == sent[-2:], f"forwards from the back page listed {ids}, expected {sent[-2:]}")
    expect(isinstance(forward.get("end"), str), "a forward page reaching the live end has no end")
    later = await send_text(ctx, alice, room_id, "later")
    after = await messages(ctx, alice, room_id, dir="f", limit=10, **{"from": forward["end"]})
    ids = [e["event_id"] for e in after["chunk"]]
    expect(ids == [later], f"forwards from the live end's end listed {ids}, expected [{later}]")


@case
async def a_third_party_invite_without_an_identity_server_token_is_400_missing_param(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="private_chat")
    path = f"{CLIENT}/rooms/{q(room_id)}/invite"
    for body in ({"medium": "email", "address": "synctest@example.org", "id_server": "id.example.org"},
                 {"medium": "email", "address": "synctest@example.org"}):
        expect_error(await ctx.post(path, json=body, token=alice.access_token), 400, "M_MISSING_PARAM")
