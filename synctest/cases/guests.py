"""Guest access (client-server API, "Guest Access"): both harnesses allow guests.

Guests register without authentication, may use only the listed endpoints, may join only rooms
whose `m.room.guest_access` is `can_join`, and leave when the room stops allowing them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

from synctest.checks import expect, expect_error, expect_status
from synctest.context import Context
from synctest.registry import case
from synctest.users import User

CLIENT = "/_matrix/client/v3"
REGISTER = CLIENT + "/register"
POLL_SECONDS = 10.0


def q(part: str) -> str:
    return quote(part, safe="@:!$")


async def register_guest(ctx: Context) -> dict[str, Any]:
    response = await ctx.post(REGISTER + "?kind=guest", json={})
    expect_status(response, 200)
    body = response.json
    expect(body.get("access_token") and body.get("user_id"), f"{response.describe()}: no guest credentials")
    return body


async def guest_room(ctx: Context, owner: User, guest_access: str) -> str:
    created = await ctx.post(CLIENT + "/createRoom", token=owner.access_token, json={
        "preset": "public_chat",
        "initial_state": [{"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": guest_access}}],
    })
    expect_status(created, 200)
    return created.json["room_id"]


@case
async def a_guest_is_told_it_is_a_guest(ctx: Context) -> None:
    guest = await register_guest(ctx)
    whoami = await ctx.get(CLIENT + "/account/whoami", token=guest["access_token"])
    expect_status(whoami, 200)
    expect(whoami.json.get("is_guest") is True, f"{whoami.describe()}: is_guest is not true")


@case
async def a_guest_may_not_create_rooms(ctx: Context) -> None:
    guest = await register_guest(ctx)
    expect_error(await ctx.post(CLIENT + "/createRoom", json={}, token=guest["access_token"]), 403,
                 "M_GUEST_ACCESS_FORBIDDEN")


@case
async def a_guest_joins_a_can_join_room_and_sends(ctx: Context) -> None:
    owner = await ctx.register_user()
    room_id = await guest_room(ctx, owner, "can_join")
    guest = await register_guest(ctx)
    expect_status(await ctx.post(f"{CLIENT}/rooms/{q(room_id)}/join", json={}, token=guest["access_token"]), 200)
    sent = await ctx.put(f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/guest{time.monotonic_ns()}",
                         json={"msgtype": "m.text", "body": "hello"}, token=guest["access_token"])
    expect_status(sent, 200)
    messages = await ctx.get(f"{CLIENT}/rooms/{q(room_id)}/messages", params={"dir": "b"},
                             token=guest["access_token"])
    expect_status(messages, 200)
    expect(sent.json["event_id"] in [e["event_id"] for e in messages.json["chunk"]],
           f"{messages.describe()}: the guest's own message is missing")


@case
async def a_guest_cannot_join_a_room_that_forbids_guests(ctx: Context) -> None:
    owner = await ctx.register_user()
    room_id = await guest_room(ctx, owner, "forbidden")
    guest = await register_guest(ctx)
    expect_status(await ctx.post(f"{CLIENT}/rooms/{q(room_id)}/join", json={}, token=guest["access_token"]), 403)


@case
async def guests_leave_when_the_room_forbids_guests(ctx: Context) -> None:
    owner = await ctx.register_user()
    room_id = await guest_room(ctx, owner, "can_join")
    guest = await register_guest(ctx)
    expect_status(await ctx.post(f"{CLIENT}/rooms/{q(room_id)}/join", json={}, token=guest["access_token"]), 200)
    expect_status(await ctx.put(f"{CLIENT}/rooms/{q(room_id)}/state/m.room.guest_access",
                                json={"guest_access": "forbidden"}, token=owner.access_token), 200)
    path = f"{CLIENT}/rooms/{q(room_id)}/state/m.room.member/{q(guest['user_id'])}"
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        member = await ctx.get(path, token=owner.access_token)
        expect_status(member, 200)
        if member.json.get("membership") == "leave" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    expect(member.json.get("membership") == "leave", f"{member.describe()}: the guest is still in the room")


@case
async def a_guest_upgrades_to_a_full_account(ctx: Context) -> None:
    guest = await register_guest(ctx)
    localpart = guest["user_id"][1:].split(":", 1)[0]
    body = {"username": localpart, "password": "upgraded password", "guest_access_token": guest["access_token"],
            "auth": {"type": "m.login.dummy"}}
    response = await ctx.post(REGISTER, json=body)
    if response.status == 401:  # a server that answers the first round with the flows
        session = response.json["session"]
        response = await ctx.post(REGISTER, json={**body, "auth": {"type": "m.login.dummy", "session": session}})
    expect_status(response, 200)
    expect(response.json["user_id"] == guest["user_id"],
           f"{response.describe()}: upgraded to {response.json['user_id']}, not {guest['user_id']}")
    whoami = await ctx.get(CLIENT + "/account/whoami", token=response.json["access_token"])
    expect_status(whoami, 200)
    expect(whoami.json.get("is_guest") is False, f"{whoami.describe()}: still a guest after upgrading")


@case
async def a_guest_reads_a_world_readable_room_without_joining(ctx: Context) -> None:
    owner = await ctx.register_user()
    created = await ctx.post(CLIENT + "/createRoom", token=owner.access_token, json={
        "preset": "public_chat",
        "initial_state": [{"type": "m.room.history_visibility", "state_key": "",
                           "content": {"history_visibility": "world_readable"}}],
    })
    expect_status(created, 200)
    room_id = created.json["room_id"]
    sent = await ctx.put(f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/wr{time.monotonic_ns()}",
                         json={"msgtype": "m.text", "body": "public"}, token=owner.access_token)
    expect_status(sent, 200)
    guest = await register_guest(ctx)
    messages = await ctx.get(f"{CLIENT}/rooms/{q(room_id)}/messages", params={"dir": "b"},
                             token=guest["access_token"])
    expect_status(messages, 200)
    expect(sent.json["event_id"] in [e["event_id"] for e in messages.json["chunk"]],
           f"{messages.describe()}: the guest does not see the world-readable message")
