"""Rooms beyond messages: upgrades, room summaries (MSC3266) and mutual rooms (MSC2666)."""

from __future__ import annotations

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
