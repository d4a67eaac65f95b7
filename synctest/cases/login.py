"""GET and POST /_matrix/client/v3/login."""

from __future__ import annotations

from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case

LOGIN = "/_matrix/client/v3/login"
WHOAMI = "/_matrix/client/v3/account/whoami"


@case
async def flows_match_schema_and_offer_password(ctx: Context) -> None:
    response = await ctx.get(LOGIN)
    expect_status(response, 200)
    flows = expect_schema(response, LOGIN)["flows"]
    types = [flow["type"] for flow in flows]
    expect("m.login.password" in types, f"m.login.password not among login flows {types}")


@case
async def password_login_with_a_user_identifier_returns_a_working_token(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.post(
        LOGIN,
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": user.password,
        },
    )
    expect_status(response, 200)
    body = expect_schema(response, LOGIN)
    expect(body["user_id"] == user.user_id, f"logged in as {body['user_id']}, expected {user.user_id}")
    expect(body.get("device_id"), f"{response.describe()}: no device_id")
    expect(body["access_token"] != user.access_token, "login reused the registration's access token")
    whoami = await ctx.get(WHOAMI, token=body["access_token"])
    expect_status(whoami, 200)
    expect(expect_schema(whoami, WHOAMI)["user_id"] == user.user_id, "whoami names another user")


@case
async def password_login_with_a_wrong_password_is_403_forbidden(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.post(
        LOGIN,
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": user.password + "-wrong",
        },
    )
    expect_error(response, 403, "M_FORBIDDEN")
    expect_schema(response, LOGIN)
