"""Rooms beyond messages: upgrades, room summaries (MSC3266) and mutual rooms (MSC2666)."""

from __future__ import annotations

import os

from synctest.cases.messages import CLIENT, create_room, join, q
from synctest.checks import expect, expect_status
from synctest.context import Context
from synctest.registry import case


def state_path(room_id: str, event_type: str, state_key: str = "") -> str:
    return f"{CLIENT}/rooms/{q(room_id)}/state/{event_type}/{q(state_key)}"


@case
async def an_upgraded_room_has_the_state_clients_wait_for(ctx: Context) -> None:
    # A public_chat room has no guest access event; like Synapse, the replacement gets the
    # private_chat preset's `can_join` while the copied join rules stay public.
    alice, bob = await ctx.register_user(), await ctx.register_user()
    old = await create_room(ctx, alice, preset="public_chat", name="Upgrade me", topic="About", room_version="10")
    await join(ctx, bob, old)
    upgraded = await ctx.post(f"{CLIENT}/rooms/{q(old)}/upgrade", json={"new_version": "11"},
                              token=alice.access_token)
    expect_status(upgraded, 200)
    new = upgraded.json["replacement_room"]
    expected = {
        "m.room.name": ("name", "Upgrade me"),
        "m.room.topic": ("topic", "About"),
        "m.room.join_rules": ("join_rule", "public"),
        "m.room.history_visibility": ("history_visibility", "shared"),
        "m.room.guest_access": ("guest_access", "can_join"),
    }
    for event_type, (key, value) in expected.items():
        response = await ctx.get(state_path(new, event_type), token=alice.access_token)
        expect_status(response, 200)
        expect(response.json.get(key) == value, f"{event_type} in the new room is {response.json}")
    create = await ctx.get(state_path(new, "m.room.create"), token=alice.access_token)
    expect(create.json.get("predecessor", {}).get("room_id") == old, f"predecessor: {create.json}")
    tombstone = await ctx.get(state_path(old, "m.room.tombstone"), token=bob.access_token)
    expect_status(tombstone, 200)
    expect(tombstone.json.get("replacement_room") == new, f"tombstone: {tombstone.json}")
    await join(ctx, bob, new)


@case
async def room_summary_describes_a_public_room_by_id_and_alias(ctx: Context) -> None:
    alice = await ctx.register_user()
    word = f"summary{os.urandom(4).hex()}"
    room_id = await create_room(ctx, alice, preset="public_chat", name="Summarised", topic="Preview me",
                                room_alias_name=word)
    response = await ctx.get(f"/_matrix/client/v1/room_summary/{q(room_id)}", token=alice.access_token)
    expect_status(response, 200)
    summary = response.json
    for key, value in (("room_id", room_id), ("name", "Summarised"), ("topic", "Preview me"),
                       ("join_rule", "public"), ("num_joined_members", 1), ("membership", "join"),
                       ("world_readable", False)):
        expect(summary.get(key) == value, f"summary {key} is {summary.get(key)!r}, not {value!r}: {summary}")
    expect(isinstance(summary.get("guest_can_join"), bool), f"no guest_can_join: {summary}")
    alias = summary.get("canonical_alias")
    expect(isinstance(alias, str) and alias.startswith(f"#{word}:"), f"canonical_alias {alias!r}")
    by_alias = await ctx.get(f"/_matrix/client/v1/room_summary/{q(alias)}", token=alice.access_token)
    expect_status(by_alias, 200)
    expect(by_alias.json.get("room_id") == room_id, f"the alias summarises {by_alias.json}")


@case
async def room_summary_of_a_private_room_is_404_to_outsiders(ctx: Context) -> None:
    alice, eve = await ctx.register_user(), await ctx.register_user()
    room_id = await create_room(ctx, alice, preset="private_chat")
    response = await ctx.get(f"/_matrix/client/v1/room_summary/{q(room_id)}", token=eve.access_token)
    expect_status(response, 404)
    expect(response.json.get("errcode") == "M_NOT_FOUND", f"{response.describe()}")


@case
async def mutual_rooms_lists_only_rooms_both_users_joined(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    shared = await create_room(ctx, alice, preset="public_chat")
    await join(ctx, bob, shared)
    await create_room(ctx, alice, preset="public_chat")  # alice alone
    response = await ctx.get("/_matrix/client/v1/mutual_rooms", token=alice.access_token,
                             params={"user_id": bob.user_id})
    expect_status(response, 200)
    expect(response.json.get("joined") == [shared], f"mutual rooms {response.json}")
    expect(response.json.get("count") == 1, f"count in {response.json}")
    response = await ctx.get("/_matrix/client/v1/mutual_rooms", token=alice.access_token,
                             params={"user_id": alice.user_id})
    expect_status(response, 400)
