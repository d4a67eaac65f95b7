"""Profiles: the whole profile, display name and avatar, and extended fields (spec v1.16)."""

from __future__ import annotations

from urllib.parse import quote

from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case

PROFILE = "/_matrix/client/v3/profile/{userId}"
FIELD = "/_matrix/client/v3/profile/{userId}/{keyName}"


def profile_path(user_id: str, key: str | None = None) -> str:
    path = f"/_matrix/client/v3/profile/{quote(user_id, safe='@:')}"
    return path if key is None else f"{path}/{quote(key, safe='')}"


@case
async def set_display_name_is_returned_by_both_lookups(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.put(
        profile_path(user.user_id, "displayname"),
        json={"displayname": "Synctest Naam"},
        token=user.access_token,
    )
    expect_status(response, 200)
    expect_schema(response, FIELD)
    field = await ctx.get(profile_path(user.user_id, "displayname"))
    expect_status(field, 200)
    expect(
        expect_schema(field, FIELD) == {"displayname": "Synctest Naam"}, f"{field.describe()}: {field.json}"
    )
    whole = await ctx.get(profile_path(user.user_id))
    expect_status(whole, 200)
    expect(
        expect_schema(whole, PROFILE).get("displayname") == "Synctest Naam",
        f"{whole.describe()}: {whole.json}",
    )


@case
async def set_avatar_url_shows_in_the_profile(ctx: Context) -> None:
    user = await ctx.register_user()
    mxc = "mxc://example.org/SynctestAvatar"
    response = await ctx.put(
        profile_path(user.user_id, "avatar_url"), json={"avatar_url": mxc}, token=user.access_token
    )
    expect_status(response, 200)
    whole = await ctx.get(profile_path(user.user_id))
    expect_status(whole, 200)
    expect(expect_schema(whole, PROFILE).get("avatar_url") == mxc, f"{whole.describe()}: {whole.json}")


@case
async def custom_profile_field_can_be_set_read_and_deleted(ctx: Context) -> None:
    user = await ctx.register_user()
    key, value = "org.synctest.birthday", {"year": 1990, "month": 4}
    response = await ctx.put(profile_path(user.user_id, key), json={key: value}, token=user.access_token)
    expect_status(response, 200)
    field = await ctx.get(profile_path(user.user_id, key))
    expect_status(field, 200)
    expect(expect_schema(field, FIELD) == {key: value}, f"{field.describe()}: {field.json}")
    whole = await ctx.get(profile_path(user.user_id))
    expect(expect_schema(whole, PROFILE).get(key) == value, f"{whole.describe()}: {whole.json}")
    deleted = await ctx.delete(profile_path(user.user_id, key), token=user.access_token)
    expect_status(deleted, 200)
    expect_schema(deleted, FIELD)
    expect_error(await ctx.get(profile_path(user.user_id, key)), 404, "M_NOT_FOUND")


@case
async def changing_another_users_profile_field_is_403(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    key = "org.synctest.job"
    response = await ctx.put(profile_path(bob.user_id, key), json={key: "x"}, token=alice.access_token)
    expect_error(response, 403, "M_FORBIDDEN")
    expect_schema(response, FIELD)


@case
async def profile_key_over_255_bytes_is_key_too_large(ctx: Context) -> None:
    user = await ctx.register_user()
    key = "a" * 256
    response = await ctx.put(profile_path(user.user_id, key), json={key: "x"}, token=user.access_token)
    expect_error(response, 400, "M_KEY_TOO_LARGE")


@case
async def profile_over_64_kib_is_profile_too_large(ctx: Context) -> None:
    user = await ctx.register_user()
    chunk = "x" * 40_000
    first = await ctx.put(
        profile_path(user.user_id, "org.synctest.one"),
        json={"org.synctest.one": chunk},
        token=user.access_token,
    )
    expect_status(first, 200)
    second = await ctx.put(
        profile_path(user.user_id, "org.synctest.two"),
        json={"org.synctest.two": chunk},
        token=user.access_token,
    )
    expect_error(second, 400, "M_PROFILE_TOO_LARGE")
    expect_schema(second, FIELD)


@case
async def profile_put_without_the_key_in_the_body_is_missing_param(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.put(
        profile_path(user.user_id, "displayname"), json={"other": "x"}, token=user.access_token
    )
    expect_error(response, 400, "M_MISSING_PARAM")


@case
async def display_name_that_is_not_a_string_is_400(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.put(
        profile_path(user.user_id, "displayname"), json={"displayname": 42}, token=user.access_token
    )
    expect_error(response, 400, "M_INVALID_PARAM")


@case
async def profile_change_without_a_token_is_missing_token(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.put(profile_path(user.user_id, "displayname"), json={"displayname": "x"})
    expect_error(response, 401, "M_MISSING_TOKEN")


@case
async def profile_of_an_invalid_user_id_is_invalid_param(ctx: Context) -> None:
    expect_error(await ctx.get(profile_path("not-a-user-id")), 400, "M_INVALID_PARAM")


@case
async def profile_of_an_unknown_local_user_is_404(ctx: Context) -> None:
    user = await ctx.register_user()
    server_name = user.user_id.split(":", 1)[1]
    response = await ctx.get(profile_path(f"@synctest-nobody-{user.device_id}:{server_name}".lower()))
    # The spec's example says M_NOT_FOUND, but only the status is required (Synapse sends M_UNKNOWN).
    expect_status(response, 404)
    expect_schema(response, PROFILE)
