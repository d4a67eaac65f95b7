"""Creating accounts: the ways synctest makes its own users must themselves work."""

from __future__ import annotations

import os

from synctest.checks import expect, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case
from synctest.users import unique_localpart

REGISTER = "/_matrix/client/v3/register"
WHOAMI = "/_matrix/client/v3/account/whoami"


@case
async def register_without_auth_returns_a_dummy_flow_challenge(ctx: Context) -> None:
    response = await ctx.post(
        REGISTER, json={"username": unique_localpart(), "password": os.urandom(8).hex()}
    )
    expect_status(response, 401)
    body = expect_schema(response, REGISTER)
    expect(body.get("session"), f"{response.describe()}: no session in the challenge")
    stages = [flow["stages"] for flow in body["flows"]]
    expect(["m.login.dummy"] in stages, f"no m.login.dummy-only flow in {stages}")


@case
async def register_with_dummy_auth_gives_a_working_token(ctx: Context) -> None:
    localpart = unique_localpart()
    user = await ctx.register_user(localpart)
    expect(user.user_id.startswith(f"@{localpart}:"), f"registered {user.user_id}, asked for {localpart}")
    whoami = await ctx.get(WHOAMI, token=user.access_token)
    expect_status(whoami, 200)
    body = expect_schema(whoami, WHOAMI)
    expect(body["user_id"] == user.user_id, f"whoami says {body['user_id']}, expected {user.user_id}")
    expect(
        body.get("device_id") == user.device_id, f"whoami device {body.get('device_id')} != {user.device_id}"
    )


@case
async def shared_secret_registration_gives_a_working_token(ctx: Context) -> None:
    user = await ctx.register_admin_user()
    whoami = await ctx.get(WHOAMI, token=user.access_token)
    expect_status(whoami, 200)
    expect(expect_schema(whoami, WHOAMI)["user_id"] == user.user_id, "whoami names another user")


@case
async def taken_username_is_400_user_in_use(ctx: Context) -> None:
    user = await ctx.register_user()
    localpart = user.user_id[1:].split(":", 1)[0]
    response = await ctx.post(REGISTER, json={"username": localpart, "password": "x" * 12})
    expect_status(response, 400)
    body = expect_schema(response, REGISTER)
    expect(body["errcode"] == "M_USER_IN_USE", f"errcode {body['errcode']!r}, expected 'M_USER_IN_USE'")


@case
async def a_username_with_a_trailing_newline_is_invalid(ctx: Context) -> None:
    localpart = unique_localpart() + "-\n"
    response = await ctx.post(REGISTER, json={"username": localpart, "password": os.urandom(8).hex(),
                                              "auth": {"type": "m.login.dummy"}})
    expect_status(response, 400)
    expect(response.json.get("errcode") == "M_INVALID_USERNAME",
           f"{response.describe()}: errcode {response.json.get('errcode')!r}, expected M_INVALID_USERNAME")


@case
async def a_completed_registration_session_replayed_returns_the_same_user(ctx: Context) -> None:
    localpart = unique_localpart()
    first = await ctx.post(REGISTER, json={"username": localpart, "password": os.urandom(8).hex()})
    expect_status(first, 401)
    complete = {"username": localpart, "auth": {"type": "m.login.dummy", "session": first.json["session"]}}
    done = await ctx.post(REGISTER, json=complete)
    expect_status(done, 200)
    again = await ctx.post(REGISTER, json=complete)
    expect_status(again, 200)
    expect(again.json["user_id"] == done.json["user_id"],
           f"{again.describe()}: replay registered {again.json['user_id']}, first {done.json['user_id']}")
