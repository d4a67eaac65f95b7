"""OpenID: a user asks for a token for themselves; a third party resolves it on the federation API."""

from __future__ import annotations

from urllib.parse import quote

from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case

REQUEST_TOKEN = "/_matrix/client/v3/user/{userId}/openid/request_token"
USERINFO = "/_matrix/federation/v1/openid/userinfo"


@case
async def an_openid_token_names_its_user_to_a_third_party(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.post(REQUEST_TOKEN.format(userId=quote(user.user_id)), json={},
                              token=user.access_token)
    expect_status(response, 200)
    token = expect_schema(response, REQUEST_TOKEN)
    expect(token["token_type"] == "Bearer", f"{response.describe()}: token_type is not Bearer")
    info = await ctx.federation.get(USERINFO, params={"access_token": token["access_token"]})
    expect_status(info, 200)
    expect(info.json == {"sub": user.user_id}, f"{info.describe()}: expected sub {user.user_id}")


@case
async def openid_tokens_are_only_for_oneself(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    response = await ctx.post(REQUEST_TOKEN.format(userId=quote(bob.user_id)), json={},
                              token=alice.access_token)
    expect_error(response, 403, "M_FORBIDDEN")


@case
async def an_unknown_openid_token_is_401(ctx: Context) -> None:
    expect_error(await ctx.federation.get(USERINFO, params={"access_token": "synctest-not-a-token"}), 401, "M_UNKNOWN_TOKEN")
