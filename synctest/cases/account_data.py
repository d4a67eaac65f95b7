"""Account data, global and per room, and room tags."""

from __future__ import annotations

from urllib.parse import quote

from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case
from synctest.users import User

GLOBAL = "/_matrix/client/v3/user/{userId}/account_data/{type}"
ROOM = "/_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}"
TAGS = "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags"
TAG = "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}"


def q(part: str) -> str:
    return quote(part, safe="@:!")


def global_path(user_id: str, data_type: str) -> str:
    return f"/_matrix/client/v3/user/{q(user_id)}/account_data/{q(data_type)}"


def room_path(user_id: str, room_id: str, data_type: str) -> str:
    return f"/_matrix/client/v3/user/{q(user_id)}/rooms/{q(room_id)}/account_data/{q(data_type)}"


def tags_path(user_id: str, room_id: str, tag: str | None = None) -> str:
    path = f"/_matrix/client/v3/user/{q(user_id)}/rooms/{q(room_id)}/tags"
    return path if tag is None else f"{path}/{q(tag)}"


async def room_of(ctx: Context, user: User) -> str:
    """A room the user is in; servers without /createRoom yet get a made-up room ID.

    Synapse only lets members tag a room; a server that cannot create rooms cannot check that.
    """
    response = await ctx.post("/_matrix/client/v3/createRoom", json={}, token=user.access_token)
    if response.status == 200:
        return response.json["room_id"]
    expect_status(response, 404)
    return f"!synctest{user.device_id}:{user.user_id.split(':', 1)[1]}"


@case
async def global_account_data_round_trips(ctx: Context) -> None:
    user = await ctx.register_user()
    path = global_path(user.user_id, "org.synctest.config")
    put = await ctx.put(path, json={"theme": "dark", "list": [1, 2]}, token=user.access_token)
    expect_status(put, 200)
    expect_schema(put, GLOBAL)
    got = await ctx.get(path, token=user.access_token)
    expect_status(got, 200)
    expect(expect_schema(got, GLOBAL) == {"theme": "dark", "list": [1, 2]}, f"{got.describe()}: {got.json}")


@case
async def room_account_data_round_trips_apart_from_global(ctx: Context) -> None:
    user = await ctx.register_user()
    room_id = f"!synctest:{user.user_id.split(':', 1)[1]}"
    put = await ctx.put(
        room_path(user.user_id, room_id, "org.synctest.x"), json={"a": 1}, token=user.access_token
    )
    expect_status(put, 200)
    expect_schema(put, ROOM)
    got = await ctx.get(room_path(user.user_id, room_id, "org.synctest.x"), token=user.access_token)
    expect_status(got, 200)
    expect(expect_schema(got, ROOM) == {"a": 1}, f"{got.describe()}: {got.json}")
    expect_error(
        await ctx.get(global_path(user.user_id, "org.synctest.x"), token=user.access_token),
        404,
        "M_NOT_FOUND",
    )


@case
async def unset_account_data_is_404(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.get(global_path(user.user_id, "org.synctest.never"), token=user.access_token)
    expect_error(response, 404, "M_NOT_FOUND")
    expect_schema(response, GLOBAL)


@case
async def fully_read_and_push_rules_are_refused_with_405(ctx: Context) -> None:
    user = await ctx.register_user()
    room_id = f"!synctest:{user.user_id.split(':', 1)[1]}"
    for path, template in [
        (global_path(user.user_id, "m.push_rules"), GLOBAL),
        (room_path(user.user_id, room_id, "m.fully_read"), ROOM),
    ]:
        response = await ctx.put(path, json={"event_id": "$x"}, token=user.access_token)
        expect_error(response, 405, "M_BAD_JSON")
        expect_schema(response, template)


@case
async def another_users_account_data_is_403(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    put = await ctx.put(global_path(bob.user_id, "org.synctest.x"), json={}, token=alice.access_token)
    expect_error(put, 403, "M_FORBIDDEN")
    expect_schema(put, GLOBAL)
    get = await ctx.get(global_path(bob.user_id, "org.synctest.x"), token=alice.access_token)
    expect_error(get, 403, "M_FORBIDDEN")


@case
async def account_data_that_is_not_an_object_is_400(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.put(global_path(user.user_id, "org.synctest.x"), json=[1], token=user.access_token)
    expect_status(response, 400)
    expect(expect_schema(response, GLOBAL)["errcode"] in ("M_BAD_JSON", "M_NOT_JSON"), response.json)


@case
async def room_account_data_with_an_invalid_room_id_is_invalid_param(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.get(room_path(user.user_id, "not-a-room", "org.synctest.x"), token=user.access_token)
    expect_error(response, 400, "M_INVALID_PARAM")
    expect_schema(response, ROOM)


@case
async def account_data_without_a_token_is_missing_token(ctx: Context) -> None:
    user = await ctx.register_user()
    expect_error(await ctx.put(global_path(user.user_id, "org.synctest.x"), json={}), 401, "M_MISSING_TOKEN")


@case
async def tags_are_added_listed_and_removed(ctx: Context) -> None:
    user = await ctx.register_user()
    room_id = await room_of(ctx, user)
    for tag, body in (("m.favourite", {"order": 0.25}), ("u.synctest", {})):
        put = await ctx.put(tags_path(user.user_id, room_id, tag), json=body, token=user.access_token)
        expect_status(put, 200)
        expect_schema(put, TAG)
    listed = await ctx.get(tags_path(user.user_id, room_id), token=user.access_token)
    expect_status(listed, 200)
    tags = expect_schema(listed, TAGS)["tags"]
    expect(tags == {"m.favourite": {"order": 0.25}, "u.synctest": {}}, f"{listed.describe()}: {tags}")
    deleted = await ctx.delete(tags_path(user.user_id, room_id, "m.favourite"), token=user.access_token)
    expect_status(deleted, 200)
    expect_schema(deleted, TAG)
    listed = await ctx.get(tags_path(user.user_id, room_id), token=user.access_token)
    expect(expect_schema(listed, TAGS)["tags"] == {"u.synctest": {}}, f"{listed.describe()}: {listed.json}")


@case
async def tag_over_255_bytes_is_400(ctx: Context) -> None:
    user = await ctx.register_user()
    room_id = await room_of(ctx, user)
    response = await ctx.put(
        tags_path(user.user_id, room_id, "u." + "x" * 254), json={}, token=user.access_token
    )
    expect_error(response, 400, "M_INVALID_PARAM")


@case
async def another_users_tags_are_403(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = f"!synctest:{bob.user_id.split(':', 1)[1]}"
    expect_error(await ctx.get(tags_path(bob.user_id, room_id), token=alice.access_token), 403, "M_FORBIDDEN")
    expect_error(
        await ctx.put(tags_path(bob.user_id, room_id, "u.x"), json={}, token=alice.access_token),
        403,
        "M_FORBIDDEN",
    )
