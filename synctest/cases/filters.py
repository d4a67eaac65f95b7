"""Sync filters: upload, download, validation and ownership."""

from __future__ import annotations

from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case

UPLOAD = "/_matrix/client/v3/user/{userId}/filter"
DOWNLOAD = "/_matrix/client/v3/user/{userId}/filter/{filterId}"

FILTER = {
    "event_fields": ["type", "content", "sender"],
    "event_format": "client",
    "presence": {"not_types": ["*"]},
    "room": {
        "state": {"lazy_load_members": True},
        "timeline": {"limit": 20, "not_types": ["m.call.*"]},
        "ephemeral": {"not_types": ["m.typing"]},
        "include_leave": False,
    },
}


@case
async def uploaded_filter_downloads_unchanged(ctx: Context) -> None:
    user = await ctx.register_user()
    uploaded = await ctx.post(
        f"/_matrix/client/v3/user/{user.user_id}/filter", json=FILTER, token=user.access_token
    )
    expect_status(uploaded, 200)
    filter_id = expect_schema(uploaded, UPLOAD)["filter_id"]
    expect(not filter_id.startswith("{"), f"filter_id {filter_id!r} starts with '{{'")
    downloaded = await ctx.get(
        f"/_matrix/client/v3/user/{user.user_id}/filter/{filter_id}", token=user.access_token
    )
    expect_status(downloaded, 200)
    body = expect_schema(downloaded, DOWNLOAD)
    for key, value in FILTER.items():
        expect(
            body.get(key) == value, f"{downloaded.describe()}: {key} is {body.get(key)!r}, uploaded {value!r}"
        )


@case
async def filter_with_a_wrongly_typed_field_is_400(ctx: Context) -> None:
    user = await ctx.register_user()
    for bad in (
        {"room": {"timeline": {"types": "m.room.message"}}},
        {"room": {"rooms": ["#not-a-room-id"]}},
        {"presence": {"senders": [5]}},
    ):
        response = await ctx.post(
            f"/_matrix/client/v3/user/{user.user_id}/filter", json=bad, token=user.access_token
        )
        expect_status(response, 400)
        # The spec names no errcode for this; any well-formed error will do.
        expect_error(response, 400, response.json.get("errcode", ""))


@case
async def unknown_filter_id_is_404(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.get(f"/_matrix/client/v3/user/{user.user_id}/filter/987654", token=user.access_token)
    expect_error(response, 404, "M_NOT_FOUND")


@case
async def another_users_filter_is_403(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    uploaded = await ctx.post(
        f"/_matrix/client/v3/user/{bob.user_id}/filter", json={}, token=bob.access_token
    )
    expect_status(uploaded, 200)
    filter_id = uploaded.json["filter_id"]
    response = await ctx.get(
        f"/_matrix/client/v3/user/{bob.user_id}/filter/{filter_id}", token=alice.access_token
    )
    expect_error(response, 403, "M_FORBIDDEN")
    response = await ctx.post(
        f"/_matrix/client/v3/user/{bob.user_id}/filter", json={}, token=alice.access_token
    )
    expect_error(response, 403, "M_FORBIDDEN")


@case
async def filter_upload_without_a_token_is_missing_token(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.post(f"/_matrix/client/v3/user/{user.user_id}/filter", json={})
    expect_error(response, 401, "M_MISSING_TOKEN")
