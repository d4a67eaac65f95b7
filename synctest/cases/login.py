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


@case
async def a_signed_in_device_gets_a_login_token_for_a_new_one(ctx: Context) -> None:
    from synctest.cases.devices import challenge_for, password_auth

    path = "/_matrix/client/v1/login/get_token"
    user = await ctx.register_user()
    capabilities = await ctx.get("/_matrix/client/v3/capabilities", token=user.access_token)
    expect_status(capabilities, 200)
    enabled = capabilities.json["capabilities"].get("m.get_login_token", {}).get("enabled")
    expect(enabled is True, f"{capabilities.describe()}: m.get_login_token is not enabled")
    challenge = await challenge_for(ctx, "POST", path, path, user, {})
    response = await ctx.post(path, json={"auth": password_auth(user, challenge["session"])},
                              token=user.access_token)
    expect_status(response, 200)
    body = expect_schema(response, path)
    login = await ctx.post(LOGIN, json={"type": "m.login.token", "token": body["login_token"]})
    expect_status(login, 200)
    expect(login.json["user_id"] == user.user_id, f"{login.describe()}: logged in as {login.json['user_id']}")
    expect_error(await ctx.post(LOGIN, json={"type": "m.login.token", "token": body["login_token"]}), 403,
                 "M_FORBIDDEN")
