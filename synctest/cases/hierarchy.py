"""Spaces: GET /rooms/{roomId}/hierarchy over m.space.child links between rooms of one server."""

from __future__ import annotations

from typing import Any

from synctest.cases.messages import CLIENT, create_room, join, q
from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case
from synctest.users import User

HIERARCHY = "/_matrix/client/v1/rooms/{roomId}/hierarchy"
SPACE = {"type": "m.space"}


def server_of(user: User) -> str:
    return user.user_id.split(":", 1)[1]


async def add_child(ctx: Context, user: User, space: str, child: str, **content: Any) -> None:
    response = await ctx.put(f"{CLIENT}/rooms/{q(space)}/state/m.space.child/{q(child)}",
                             json={"via": [server_of(user)], **content}, token=user.access_token)
    expect_status(response, 200)


async def hierarchy(ctx: Context, user: User, space: str, status: int = 200, **params: Any) -> dict[str, Any]:
    response = await ctx.get(HIERARCHY.replace("{roomId}", q(space)), token=user.access_token,
                             params={k: str(v) for k, v in params.items()} or None)
    if status != 200:
        expect_error(response, status, "M_INVALID_PARAM" if status == 400 else "M_FORBIDDEN")
        return response.json
    expect_status(response, 200)
    return expect_schema(response, HIERARCHY)


def ids(result: dict[str, Any]) -> list[str]:
    return [room["room_id"] for room in result["rooms"]]


@case
async def hierarchy_walks_a_space_depth_first_in_child_order(ctx: Context) -> None:
    alice = await ctx.register_user()
    space = await create_room(ctx, alice, name="Top space", creation_content=SPACE, preset="public_chat")
    sub = await create_room(ctx, alice, name="Sub space", creation_content=SPACE, preset="public_chat")
    first, nested, last = [await create_room(ctx, alice, preset="public_chat") for _ in range(3)]
    await add_child(ctx, alice, space, last, order="z")
    await add_child(ctx, alice, space, sub, order="m")
    await add_child(ctx, alice, space, first, order="a")
    await add_child(ctx, alice, sub, nested)
    result = await hierarchy(ctx, alice, space)
    expect(ids(result) == [space, first, sub, nested, last], f"depth-first in `order` order: {ids(result)}")
    top = result["rooms"][0]
    expect(top.get("room_type") == "m.space" and top.get("name") == "Top space", "the space's summary")
    expect(top["num_joined_members"] == 1, "the space's member count")
    expect([c["state_key"] for c in top["children_state"]] == [first, sub, last],
           "children_state holds the space's child links in order")
    expect(result["rooms"][1]["children_state"] == [], "a plain room has no children_state")
    expect("next_batch" not in result, "no next_batch when everything fitted")


@case
async def hierarchy_honours_max_depth_suggested_only_and_paginates(ctx: Context) -> None:
    alice = await ctx.register_user()
    space = await create_room(ctx, alice, creation_content=SPACE)
    sub = await create_room(ctx, alice, creation_content=SPACE)
    nested, plain = await create_room(ctx, alice), await create_room(ctx, alice)
    await add_child(ctx, alice, space, sub, suggested=True, order="a")
    await add_child(ctx, alice, space, plain, order="b")
    await add_child(ctx, alice, sub, nested, suggested=True)
    expect(ids(await hierarchy(ctx, alice, space, max_depth=0)) == [space], "max_depth=0 gives the root only")
    expect(ids(await hierarchy(ctx, alice, space, max_depth=1)) == [space, sub, plain], "max_depth=1")
    suggested = await hierarchy(ctx, alice, space, suggested_only="true")
    expect(ids(suggested) == [space, sub, nested], f"suggested rooms only: {ids(suggested)}")

    first = await hierarchy(ctx, alice, space, limit=1)
    expect(ids(first) == [space] and "next_batch" in first, "limit=1 gives one room and a next_batch")
    await hierarchy(ctx, alice, space, 400, limit=1, suggested_only="true", **{"from": first["next_batch"]})
    seen, token = ids(first), first["next_batch"]
    for _ in range(10):
        page = await hierarchy(ctx, alice, space, limit=1, **{"from": token})
        seen += ids(page)
        token = page.get("next_batch")
        if not token:
            break
    expect(seen == [space, sub, nested, plain], f"pages give every room once, in order: {seen}")


@case
async def hierarchy_shows_only_rooms_the_requester_may_preview(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    space = await create_room(ctx, alice, creation_content=SPACE, preset="public_chat")
    private = await create_room(ctx, alice, preset="private_chat")
    public = await create_room(ctx, alice, preset="public_chat")
    restricted = await create_room(ctx, alice, room_version="10", initial_state=[{
        "type": "m.room.join_rules", "state_key": "",
        "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}}])
    await add_child(ctx, alice, space, private, order="a")
    await add_child(ctx, alice, space, public, order="b")
    await add_child(ctx, alice, space, restricted, order="c")
    expect(ids(await hierarchy(ctx, bob, space)) == [space, public],
           "private and restricted children are hidden from a non-member of the space")
    await hierarchy(ctx, bob, private, 403)
    await join(ctx, bob, space)
    seen = await hierarchy(ctx, bob, space)
    expect(ids(seen) == [space, public, restricted], f"joining the space satisfies the restricted rule: {ids(seen)}")
    expect(seen["rooms"][2].get("allowed_room_ids") == [space], "a restricted room lists its allowed rooms")
    expect(ids(await hierarchy(ctx, alice, space)) == [space, private, public, restricted],
           "members see every child")
