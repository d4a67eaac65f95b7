"""GET /sync: initial and incremental syncs, long polls, filters, room sections, lazy loading."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import quote

from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case
from synctest.users import User

CLIENT = "/_matrix/client/v3"
SYNC = CLIENT + "/sync"

_txn = iter(range(1, 1_000_000))


def q(part: str) -> str:
    return quote(part, safe="@:!$")


async def sync(ctx: Context, user: User, *, sync_filter: dict[str, Any] | str | None = None,
               **params: str) -> dict[str, Any]:
    """A /sync that must succeed and match the spec's schema."""
    if sync_filter is not None:
        params["filter"] = sync_filter if isinstance(sync_filter, str) else json.dumps(sync_filter)
    response = await ctx.get(SYNC, token=user.access_token, params=params or None)
    expect_status(response, 200)
    return expect_schema(response, SYNC)


async def create_room(ctx: Context, user: User, **body: Any) -> str:
    created = await ctx.post(CLIENT + "/createRoom", json=body, token=user.access_token)
    expect_status(created, 200)
    return created.json["room_id"]


async def join(ctx: Context, user: User, room_id: str) -> None:
    expect_status(await ctx.post(f"{CLIENT}/join/{q(room_id)}", json={}, token=user.access_token), 200)


async def send_message(ctx: Context, user: User, room_id: str, body: str) -> str:
    path = f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/synctest-sync{next(_txn)}-{time.monotonic_ns()}"
    sent = await ctx.put(path, json={"msgtype": "m.text", "body": body}, token=user.access_token)
    expect_status(sent, 200)
    return sent.json["event_id"]


def timeline_bodies(room: dict[str, Any]) -> list[str]:
    return [e["content"].get("body") for e in room.get("timeline", {}).get("events", [])
            if e.get("type") == "m.room.message"]


def joined(body: dict[str, Any]) -> dict[str, Any]:
    return body.get("rooms", {}).get("join", {})


def section(body: dict[str, Any], name: str) -> dict[str, Any]:
    return body.get("rooms", {}).get(name, {})


@case
async def initial_sync_lists_joined_rooms_with_state_and_timeline(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice, name="synctest sync")
    await send_message(ctx, alice, room_id, "first")
    body = await sync(ctx, alice)
    expect(isinstance(body.get("next_batch"), str) and body["next_batch"], "next_batch missing")
    room = joined(body).get(room_id)
    expect(room is not None, f"{room_id} not in rooms.join")
    expect(timeline_bodies(room)[-1:] == ["first"], f"timeline ends with {timeline_bodies(room)[-1:]}")
    types = {e["type"] for e in room["state"]["events"] + room["timeline"]["events"]}
    for wanted in ("m.room.create", "m.room.member", "m.room.power_levels", "m.room.name"):
        expect(wanted in types, f"{wanted} in neither state nor timeline")
    expect(isinstance(room["timeline"].get("prev_batch"), str), "timeline.prev_batch missing")


@case
async def incremental_sync_returns_only_new_events(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice)
    await send_message(ctx, alice, room_id, "old")
    first = await sync(ctx, alice)
    await send_message(ctx, alice, room_id, "new")
    second = await sync(ctx, alice, since=first["next_batch"])
    room = joined(second).get(room_id)
    expect(room is not None, f"{room_id} not in the incremental sync")
    expect(timeline_bodies(room) == ["new"], f"timeline has {timeline_bodies(room)}, expected ['new']")
    expect(room["timeline"].get("limited") is not True, "a two-event gap reported as limited")
    third = await sync(ctx, alice, since=second["next_batch"])
    expect(room_id not in joined(third) or not joined(third)[room_id]["timeline"]["events"],
           "a sync with nothing new repeated events")


@case
async def long_poll_returns_when_a_message_arrives(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="public_chat")
    await join(ctx, bob, room_id)
    since = (await sync(ctx, bob))["next_batch"]
    sync_filter = {"room": {"timeline": {"limit": 5}}}
    waiting = asyncio.create_task(sync(ctx, bob, sync_filter=sync_filter, since=since, timeout="60000"))
    await asyncio.sleep(0.5)
    await send_message(ctx, alice, room_id, "wake up")
    # Well before the 60 s timeout: the poll must end because of the message.
    body = await asyncio.wait_for(waiting, 30)
    room = joined(body).get(room_id)
    expect(room is not None and "wake up" in timeline_bodies(room), "the long poll did not deliver the message")


@case
async def limited_timeline_has_a_prev_batch_for_messages(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice)
    for i in range(5):
        await send_message(ctx, alice, room_id, f"m{i}")
    body = await sync(ctx, alice, sync_filter={"room": {"timeline": {"limit": 2}}})
    room = joined(body)[room_id]
    expect(room["timeline"].get("limited") is True, "timeline of 2 out of 5+ events not limited")
    expect(timeline_bodies(room) == ["m3", "m4"], f"timeline has {timeline_bodies(room)}")
    page = await ctx.get(f"{CLIENT}/rooms/{q(room_id)}/messages", token=alice.access_token,
                         params={"from": room["timeline"]["prev_batch"], "dir": "b", "limit": "2"})
    expect_status(page, 200)
    got = [e["content"].get("body") for e in page.json.get("chunk", [])]
    expect(got == ["m2", "m1"], f"/messages from prev_batch gave {got}, expected ['m2', 'm1']")


@case
async def invite_appears_with_stripped_state_then_join_moves_the_room(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="private_chat", name="invite-only")
    since = (await sync(ctx, bob))["next_batch"]
    invited = await ctx.post(f"{CLIENT}/rooms/{q(room_id)}/invite", json={"user_id": bob.user_id},
                             token=alice.access_token)
    expect_status(invited, 200)
    body = await sync(ctx, bob, since=since)
    invite = section(body, "invite").get(room_id)
    expect(invite is not None, f"{room_id} not in rooms.invite")
    events = invite["invite_state"]["events"]
    types = {e["type"] for e in events}
    for wanted in ("m.room.create", "m.room.join_rules", "m.room.name", "m.room.member"):
        expect(wanted in types, f"invite_state lacks {wanted}: {sorted(types)}")
    member = [e for e in events if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    expect(member and member[0]["content"].get("membership") == "invite", "no invite member event for bob")
    await join(ctx, bob, room_id)
    after = await sync(ctx, bob, since=body["next_batch"])
    expect(room_id in joined(after), f"{room_id} not in rooms.join after joining")
    expect(room_id not in section(after, "invite"), f"{room_id} still in rooms.invite after joining")


@case
async def leaving_a_room_reports_it_under_leave(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="public_chat")
    await join(ctx, bob, room_id)
    since = (await sync(ctx, bob))["next_batch"]
    await send_message(ctx, alice, room_id, "before leaving")
    expect_status(await ctx.post(f"{CLIENT}/rooms/{q(room_id)}/leave", json={}, token=bob.access_token), 200)
    body = await sync(ctx, bob, since=since)
    left = section(body, "leave").get(room_id)
    expect(left is not None, f"{room_id} not in rooms.leave")
    expect(room_id not in joined(body), f"{room_id} still in rooms.join")
    events = left["timeline"]["events"]
    expect(events and events[-1]["type"] == "m.room.member" and events[-1]["content"]["membership"] == "leave",
           "the leave is not the last timeline event")
    expect("before leaving" in timeline_bodies(left), "the message before the leave is missing")
    later = await sync(ctx, bob, since=body["next_batch"])
    expect(room_id not in section(later, "leave"), "the left room is reported again")


@case
async def include_leave_lists_left_rooms_on_an_initial_sync(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice)
    expect_status(await ctx.post(f"{CLIENT}/rooms/{q(room_id)}/leave", json={}, token=alice.access_token), 200)
    without = await sync(ctx, alice)
    expect(room_id not in section(without, "leave"), "left room listed without include_leave")
    body = await sync(ctx, alice, sync_filter={"room": {"include_leave": True}})
    expect(room_id in section(body, "leave"), "left room missing with include_leave")


@case
async def stored_and_inline_filters_shape_the_timeline(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice)
    await send_message(ctx, alice, room_id, "text")
    uploaded = await ctx.post(f"{CLIENT}/user/{q(alice.user_id)}/filter",
                              json={"room": {"timeline": {"types": ["m.room.message"]}}}, token=alice.access_token)
    expect_status(uploaded, 200)
    by_id = await sync(ctx, alice, sync_filter=uploaded.json["filter_id"])
    types = {e["type"] for e in joined(by_id)[room_id]["timeline"]["events"]}
    expect(types == {"m.room.message"}, f"stored filter let through {sorted(types)}")
    inline = await sync(ctx, alice, sync_filter={"room": {"timeline": {"not_types": ["m.room.message"]}}},
                        _cacheBuster=str(time.time_ns()))
    types = {e["type"] for e in joined(inline)[room_id]["timeline"]["events"]}
    expect(types and "m.room.message" not in types, f"inline filter let through {sorted(types)}")


@case
async def lazy_loading_sends_only_timeline_senders_members(ctx: Context) -> None:
    alice, bob, carol = await ctx.register_user(), await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="public_chat", name="lazy")
    await join(ctx, bob, room_id)
    await join(ctx, carol, room_id)
    for i in range(3):
        await send_message(ctx, alice, room_id, f"a{i}")
    lazy = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 3}}}
    body = await sync(ctx, carol, sync_filter=lazy)
    room = joined(body)[room_id]
    members = {e["state_key"] for e in room["state"]["events"] if e["type"] == "m.room.member"}
    expect(alice.user_id in members, "the timeline sender's member event is missing")
    expect(carol.user_id in members, "the syncing user's own member event is missing")
    expect(bob.user_id not in members, "a member who sent nothing was not lazy-loaded away")
    expect(room.get("summary", {}).get("m.joined_member_count") == 3,
           f"m.joined_member_count is {room.get('summary', {}).get('m.joined_member_count')}")


@case
async def summary_names_heroes_of_an_unnamed_room(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="trusted_private_chat", invite=[bob.user_id], is_direct=True)
    body = await sync(ctx, alice, sync_filter={"room": {"state": {"lazy_load_members": True}}})
    summary = joined(body)[room_id].get("summary", {})
    expect(summary.get("m.heroes") == [bob.user_id], f"m.heroes is {summary.get('m.heroes')}")
    expect(summary.get("m.joined_member_count") == 1, f"joined count {summary.get('m.joined_member_count')}")
    expect(summary.get("m.invited_member_count") == 1, f"invited count {summary.get('m.invited_member_count')}")


@case
async def account_data_arrives_through_sync(ctx: Context) -> None:
    alice = await ctx.register_user()
    since = (await sync(ctx, alice))["next_batch"]
    put = await ctx.put(f"{CLIENT}/user/{q(alice.user_id)}/account_data/org.synctest.sync",
                        json={"answer": 42}, token=alice.access_token)
    expect_status(put, 200)
    body = await sync(ctx, alice, since=since)
    events = body.get("account_data", {}).get("events", [])
    expect({"type": "org.synctest.sync", "content": {"answer": 42}} in events,
           f"account data not delivered: {events}")
    initial = await sync(ctx, alice)
    types = {e["type"] for e in initial.get("account_data", {}).get("events", [])}
    expect("m.push_rules" in types, "an initial sync carries no m.push_rules account data")


@case
async def ignored_users_messages_are_not_delivered(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="public_chat")
    await join(ctx, bob, room_id)
    put = await ctx.put(f"{CLIENT}/user/{q(alice.user_id)}/account_data/m.ignored_user_list",
                        json={"ignored_users": {bob.user_id: {}}}, token=alice.access_token)
    expect_status(put, 200)
    await send_message(ctx, bob, room_id, "ignore me")
    await send_message(ctx, alice, room_id, "mine")
    body = await sync(ctx, alice)
    bodies = timeline_bodies(joined(body)[room_id])
    expect("ignore me" not in bodies, "an ignored user's message was delivered")
    expect("mine" in bodies, "the user's own message is missing")


@case
async def full_state_returns_the_whole_state_on_an_incremental_sync(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice, name="full")
    since = (await sync(ctx, alice))["next_batch"]
    body = await sync(ctx, alice, since=since, full_state="true")
    room = joined(body).get(room_id)
    expect(room is not None, "full_state sync left out the room")
    types = {e["type"] for e in room["state"]["events"]}
    for wanted in ("m.room.create", "m.room.name", "m.room.member"):
        expect(wanted in types, f"full_state lacks {wanted}")


@case
async def malformed_since_and_filter_are_400(ctx: Context) -> None:
    alice = await ctx.register_user()
    for params in ({"since": "not-a-token"}, {"filter": "{not json"}):
        response = await ctx.get(SYNC, token=alice.access_token, params=params)
        expect_status(response, 400)
        expect(isinstance(response.json.get("errcode"), str), f"{response.describe()}: no errcode")
    unknown = await ctx.get(SYNC, token=alice.access_token, params={"filter": "987654321"})
    expect_error(unknown, 400, "M_INVALID_PARAM")


@case
async def a_knock_appears_under_knock_with_stripped_state(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, room_version="10", name="knock knock", initial_state=[
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}])
    since = (await sync(ctx, bob))["next_batch"]
    knocked = await ctx.post(f"{CLIENT}/knock/{q(room_id)}", json={"reason": "let me in"}, token=bob.access_token)
    expect_status(knocked, 200)
    body = await sync(ctx, bob, since=since)
    knock = section(body, "knock").get(room_id)
    expect(knock is not None, f"{room_id} not in rooms.knock")
    events = knock["knock_state"]["events"]
    types = {e["type"] for e in events}
    for wanted in ("m.room.create", "m.room.join_rules", "m.room.name"):
        expect(wanted in types, f"knock_state lacks {wanted}: {sorted(types)}")
    mine = [e for e in events if e["type"] == "m.room.member" and e.get("state_key") == bob.user_id]
    expect(mine and mine[0]["content"].get("membership") == "knock", "no knock member event for the knocker")


@case
async def rejoining_a_joined_only_room_syncs_who_joined_while_away(ctx: Context) -> None:
    alice, bob, carol = await ctx.register_user(), await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}])
    await join(ctx, bob, room_id)
    since = (await sync(ctx, bob))["next_batch"]
    expect_status(await ctx.post(f"{CLIENT}/rooms/{q(room_id)}/leave", json={}, token=bob.access_token), 200)
    await join(ctx, carol, room_id)
    await send_message(ctx, alice, room_id, "while bob was away")
    await join(ctx, bob, room_id)
    room = joined(await sync(ctx, bob, since=since)).get(room_id)
    expect(room is not None, f"{room_id} not in rooms.join after rejoining")
    expect(room["timeline"]["limited"] is True, "the timeline after a rejoin is not limited")
    expect("while bob was away" not in timeline_bodies(room), "a message sent while away was shown")
    members = {e["state_key"]: e["content"].get("membership")
               for e in room["state"]["events"] + room["timeline"]["events"] if e["type"] == "m.room.member"}
    expect(members.get(carol.user_id) == "join", f"carol's join is missing: members {members}")
    expect(members.get(bob.user_id) == "join", f"bob's own join is missing: members {members}")


@case
async def a_filtered_timeline_with_exactly_limit_matching_events_is_not_limited(ctx: Context) -> None:
    alice = await ctx.register_user()
    room_id = await create_room(ctx, alice, name="synctest one message")
    await send_message(ctx, alice, room_id, "the only message")
    only_messages = {"room": {"timeline": {"limit": 1, "types": ["m.room.message"]}}}
    room = joined(await sync(ctx, alice, sync_filter=only_messages)).get(room_id)
    expect(room is not None, f"{room_id} not in rooms.join")
    expect(timeline_bodies(room) == ["the only message"], f"timeline {timeline_bodies(room)}")
    expect(room["timeline"]["limited"] is False, "one matching event under limit 1 is marked limited")
