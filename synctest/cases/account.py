"""Account management: /account/password, /account/deactivate, /account/3pid and 3PID token requests.

Both servers under test deliver no e-mail or SMS and bind nothing on identity servers, so the
3PID cases check that such requests are refused cleanly (a client error, never a 500).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

from synctest.cases.devices import challenge_for, login_again, password_auth
from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case
from synctest.users import User

V3 = "/_matrix/client/v3"
PASSWORD = f"{V3}/account/password"
DEACTIVATE = f"{V3}/account/deactivate"
THREEPIDS = f"{V3}/account/3pid"
THREEPID_ADD = f"{V3}/account/3pid/add"
THREEPID_BIND = f"{V3}/account/3pid/bind"
THREEPID_UNBIND = f"{V3}/account/3pid/unbind"
THREEPID_DELETE = f"{V3}/account/3pid/delete"
LOGIN = f"{V3}/login"
WHOAMI = f"{V3}/account/whoami"

EMAIL_TOKEN_REQUEST = {"client_secret": "synctest-secret", "email": "synctest@example.org", "send_attempt": 1}
MSISDN_TOKEN_REQUEST = {"client_secret": "synctest-secret", "country": "NL", "phone_number": "0612345678",
                        "send_attempt": 1}
# Synapse answers M_UNKNOWN where no error code fits; the spec offers these for a refused medium.
REFUSAL_CODES = {"M_THREEPID_MEDIUM_NOT_SUPPORTED", "M_THREEPID_DENIED", "M_UNKNOWN"}


async def password_login_status(ctx: Context, user: User, password: str) -> int:
    response = await ctx.post(LOGIN, json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.user_id}, "password": password,
    })
    return response.status


async def with_password(ctx: Context, path: str, user: User, body: dict[str, Any]) -> Any:
    """POST through the password UIA stage; returns the final response."""
    challenge = await challenge_for(ctx, "POST", path, path, user, body)
    return await ctx.post(path, json={**body, "auth": password_auth(user, challenge["session"])},
                          token=user.access_token)


# --- password ----------------------------------------------------------------------


@case
async def changing_the_password_logs_out_other_devices_and_keeps_this_one(ctx: Context) -> None:
    user = await ctx.register_user()
    other = await login_again(ctx, user)
    new_password = user.password + "-new"
    response = await with_password(ctx, PASSWORD, user, {"new_password": new_password})
    expect_status(response, 200)
    expect_schema(response, PASSWORD)
    expect_error(await ctx.get(WHOAMI, token=other["access_token"]), 401, "M_UNKNOWN_TOKEN")
    expect_status(await ctx.get(WHOAMI, token=user.access_token), 200)
    expect(await password_login_status(ctx, user, new_password) == 200, "the new password does not log in")
    expect(await password_login_status(ctx, user, user.password) == 403, "the old password still logs in")


@case
async def logout_devices_false_keeps_other_sessions(ctx: Context) -> None:
    user = await ctx.register_user()
    other = await login_again(ctx, user)
    response = await with_password(ctx, PASSWORD, user,
                                   {"new_password": user.password + "-new", "logout_devices": False})
    expect_status(response, 200)
    expect_status(await ctx.get(WHOAMI, token=other["access_token"]), 200)


@case
async def a_wrong_current_password_is_401_forbidden(ctx: Context) -> None:
    user = await ctx.register_user()
    body = {"new_password": user.password + "-new"}
    challenge = await challenge_for(ctx, "POST", PASSWORD, PASSWORD, user, body)
    auth = password_auth(user, challenge["session"], password=user.password + "-wrong")
    response = await ctx.post(PASSWORD, json={**body, "auth": auth}, token=user.access_token)
    expect_status(response, 401)
    result = expect_schema(response, PASSWORD)
    expect(result.get("errcode") == "M_FORBIDDEN", f"{response.describe()}: errcode {result.get('errcode')!r}")
    expect(await password_login_status(ctx, user, user.password) == 200, "the password changed anyway")


# --- deactivation ------------------------------------------------------------------------


@case
async def deactivation_ends_the_session_and_the_login(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await with_password(ctx, DEACTIVATE, user, {})
    expect_status(response, 200)
    body = expect_schema(response, DEACTIVATE)
    expect("id_server_unbind_result" in body, f"{response.describe()}: no id_server_unbind_result")
    expect_error(await ctx.get(WHOAMI, token=user.access_token), 401, "M_UNKNOWN_TOKEN")
    expect(await password_login_status(ctx, user, user.password) == 403, "a deactivated account still logs in")


def q(part: str) -> str:
    return quote(part, safe="@:!$")


async def room_with(ctx: Context, owner: User, member: User) -> str:
    created = await ctx.post(f"{V3}/createRoom", token=owner.access_token, json={
        "preset": "public_chat",
        "initial_state": [{"type": "m.room.history_visibility", "state_key": "",
                           "content": {"history_visibility": "shared"}}]})
    expect_status(created, 200)
    room_id = created.json["room_id"]
    expect_status(await ctx.post(f"{V3}/join/{q(room_id)}", json={}, token=member.access_token), 200)
    return room_id


@case
async def deactivation_leaves_joined_rooms_and_rejects_invites(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    joined = await room_with(ctx, alice, bob)
    invited = await ctx.post(f"{V3}/createRoom", json={"invite": [bob.user_id]}, token=alice.access_token)
    expect_status(invited, 200)
    expect_status(await with_password(ctx, DEACTIVATE, bob, {}), 200)
    # Synapse leaves the rooms in the background after answering; allow it a moment.
    for room_id in (joined, invited.json["room_id"]):
        deadline = time.monotonic() + 10.0
        while True:
            member = await ctx.get(f"{V3}/rooms/{q(room_id)}/state/m.room.member/{q(bob.user_id)}",
                                   token=alice.access_token)
            expect_status(member, 200)
            if member.json.get("membership") == "leave" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        expect(member.json.get("membership") == "leave",
               f"{member.describe()}: membership {member.json.get('membership')!r} after deactivation")


@case
async def later_joiners_see_an_erased_users_messages_without_content(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    room_id = await room_with(ctx, alice, bob)
    sent = await ctx.put(f"{V3}/rooms/{q(room_id)}/send/m.room.message/erase{time.monotonic_ns()}",
                         json={"msgtype": "m.text", "body": "to be erased"}, token=bob.access_token)
    expect_status(sent, 200)
    expect_status(await with_password(ctx, DEACTIVATE, bob, {"erase": True}), 200)
    carol = await ctx.register_user()
    expect_status(await ctx.post(f"{V3}/join/{q(room_id)}", json={}, token=carol.access_token), 200)
    event_id = sent.json["event_id"]
    seen = await ctx.get(f"{V3}/rooms/{q(room_id)}/event/{q(event_id)}", token=carol.access_token)
    expect_status(seen, 200)
    expect(seen.json.get("content") == {}, f"{seen.describe()}: a later joiner sees {seen.json.get('content')}")
    kept = await ctx.get(f"{V3}/rooms/{q(room_id)}/event/{q(event_id)}", token=alice.access_token)
    expect_status(kept, 200)
    expect(kept.json.get("content", {}).get("body") == "to be erased",
           f"{kept.describe()}: a member at the time lost the content")


@case
async def deactivating_without_a_token_is_401_missing_token(ctx: Context) -> None:
    expect_error(await ctx.post(DEACTIVATE, json={}), 401, "M_MISSING_TOKEN")


# --- third-party identifiers -------------------------------------------------------------


@case
async def a_new_account_lists_no_third_party_identifiers(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.get(THREEPIDS, token=user.access_token)
    expect_status(response, 200)
    body = expect_schema(response, THREEPIDS)
    expect(body["threepids"] == [], f"a new account has 3PIDs: {body['threepids']}")
    expect_error(await ctx.get(THREEPIDS), 401, "M_MISSING_TOKEN")


@case
async def adding_an_email_is_refused_as_unsupported(ctx: Context) -> None:
    path = f"{V3}/account/3pid/email/requestToken"
    response = await ctx.post(path, json=EMAIL_TOKEN_REQUEST)
    expect_error(response, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
    expect_schema(response, path)


@case
async def adding_a_phone_number_is_refused_as_unsupported(ctx: Context) -> None:
    path = f"{V3}/account/3pid/msisdn/requestToken"
    response = await ctx.post(path, json=MSISDN_TOKEN_REQUEST)
    expect_error(response, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
    expect_schema(response, path)


@case
async def email_registration_and_password_reset_are_refused(ctx: Context) -> None:
    for path in (f"{V3}/register/email/requestToken", f"{V3}/account/password/email/requestToken",
                 f"{V3}/register/msisdn/requestToken"):
        request = MSISDN_TOKEN_REQUEST if "msisdn" in path else EMAIL_TOKEN_REQUEST
        response = await ctx.post(path, json=request)
        expect_status(response, 400)
        body = expect_schema(response, path)
        expect(body.get("errcode") in REFUSAL_CODES, f"{response.describe()}: errcode {body.get('errcode')!r}")


@case
async def adding_a_3pid_without_a_validated_session_fails_after_auth(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await with_password(ctx, THREEPID_ADD, user, {"client_secret": "synctest-secret", "sid": "nope"})
    expect_error(response, 400, "M_THREEPID_AUTH_FAILED")


@case
async def binding_with_a_missing_field_is_400_missing_param(ctx: Context) -> None:
    user = await ctx.register_user()
    body = {"client_secret": "synctest-secret", "sid": "1", "id_server": "id.example.org"}
    response = await ctx.post(THREEPID_BIND, json=body, token=user.access_token)
    expect_error(response, 400, "M_MISSING_PARAM")


@case
async def unbinding_or_deleting_an_unknown_3pid_reports_no_support(ctx: Context) -> None:
    user = await ctx.register_user()
    for path in (THREEPID_UNBIND, THREEPID_DELETE):
        response = await ctx.post(path, json={"medium": "email", "address": "synctest@example.org"},
                                  token=user.access_token)
        expect_status(response, 200)
        body = expect_schema(response, path)
        expect(body["id_server_unbind_result"] == "no-support",
               f"{response.describe()}: id_server_unbind_result {body['id_server_unbind_result']!r}")
