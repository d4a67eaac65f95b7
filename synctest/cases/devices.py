"""GET /devices, GET/PUT/DELETE /devices/{deviceId}, POST /delete_devices."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from synctest import schema
from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.client import Response
from synctest.context import Context
from synctest.registry import CaseFailure, case
from synctest.users import User

V3 = "/_matrix/client/v3"
DEVICES = f"{V3}/devices"
DEVICE = f"{V3}/devices/{{deviceId}}"
DELETE_DEVICES = f"{V3}/delete_devices"
LOGIN = f"{V3}/login"
WHOAMI = f"{V3}/account/whoami"

# Servers record last-seen data in batches; give them this long to show it.
LAST_SEEN_WAIT_SECONDS = 15.0


def _without_nulls(device: Any) -> Any:
    return {k: v for k, v in device.items() if v is not None} if isinstance(device, dict) else device


def expect_device_schema(response: Response, path_template: str) -> Any:
    """Like expect_schema, but a null optional Device field counts as absent.

    The spec says unknown fields are absent; Synapse sends them as null. Clients treat both
    alike, so that quirk is tolerated rather than failing every Synapse run.
    """
    body = response.json
    if isinstance(body, dict) and isinstance(body.get("devices"), list):
        cleaned = {**body, "devices": [_without_nulls(d) for d in body["devices"]]}
    else:
        cleaned = _without_nulls(body)
    try:
        schema.validate_response(response.method, path_template, response.status, cleaned)
    except (schema.SchemaViolation, schema.SpecError) as error:
        raise CaseFailure(f"{response.describe()}: {error}") from None
    return cleaned


async def login_again(ctx: Context, user: User, device_id: str | None = None) -> dict[str, Any]:
    """A second session (and device) for the user."""
    body: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": user.password,
    }
    if device_id is not None:
        body["device_id"] = device_id
    response = await ctx.post(LOGIN, json=body)
    expect_status(response, 200)
    return response.json


def password_auth(user: User, session: str, password: str | None = None) -> dict[str, Any]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": user.password if password is None else password,
        "session": session,
    }


async def challenge_for(ctx: Context, method: str, path: str, template: str, user: User,
                        body: dict[str, Any]) -> dict[str, Any]:
    """The UIA 401 for a request; checks it against the spec and that a password-only flow is offered."""
    response = await ctx.request(method, path, json=body, token=user.access_token)
    expect_status(response, 401)
    challenge = expect_schema(response, template)
    stages = [flow["stages"] for flow in challenge["flows"]]
    expect(["m.login.password"] in stages, f"{response.describe()}: no password-only flow in {stages}")
    expect(challenge.get("session"), f"{response.describe()}: the challenge has no session")
    return challenge


async def device_ids(ctx: Context, user: User) -> list[str]:
    response = await ctx.get(DEVICES, token=user.access_token)
    expect_status(response, 200)
    return [device["device_id"] for device in expect_device_schema(response, DEVICES)["devices"]]


@case
async def listing_devices_matches_the_schema_and_includes_this_device(ctx: Context) -> None:
    user = await ctx.register_user()
    second = await login_again(ctx, user)
    listed = await device_ids(ctx, user)
    expect(user.device_id in listed, f"the registration's device {user.device_id} is not in {listed}")
    expect(second["device_id"] in listed, f"the login's device {second['device_id']} is not in {listed}")


@case
async def a_used_device_shows_where_and_when_it_was_last_seen(ctx: Context) -> None:
    user = await ctx.register_user()
    expect_status(await ctx.get(WHOAMI, token=user.access_token), 200)
    deadline = time.monotonic() + LAST_SEEN_WAIT_SECONDS
    while True:
        response = await ctx.get(f"{DEVICES}/{user.device_id}", token=user.access_token)
        expect_status(response, 200)
        device = expect_device_schema(response, DEVICE)
        if "last_seen_ts" in device and "last_seen_ip" in device:
            break
        expect(time.monotonic() < deadline,
               f"no last_seen_ip/last_seen_ts after {LAST_SEEN_WAIT_SECONDS:.0f}s: {device}")
        await asyncio.sleep(0.5)
    expect("last_seen_user_agent" not in device, "the user agent is shown to the client")


@case
async def a_device_can_be_renamed(ctx: Context) -> None:
    user = await ctx.register_user()
    path = f"{DEVICES}/{user.device_id}"
    response = await ctx.put(path, json={"display_name": "synctest laptop"}, token=user.access_token)
    expect_status(response, 200)
    expect_schema(response, DEVICE)
    response = await ctx.get(path, token=user.access_token)
    expect_status(response, 200)
    device = expect_device_schema(response, DEVICE)
    expect(device.get("display_name") == "synctest laptop", f"display_name is {device.get('display_name')!r}")
    expect(device["device_id"] == user.device_id, f"device_id is {device['device_id']!r}")


@case
async def an_unknown_device_is_404_not_found(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.get(f"{DEVICES}/SYNCTESTNOSUCHDEVICE", token=user.access_token)
    expect_error(response, 404, "M_NOT_FOUND")
    expect_schema(response, DEVICE)
    response = await ctx.put(f"{DEVICES}/SYNCTESTNOSUCHDEVICE", json={"display_name": "x"},
                             token=user.access_token)
    expect_error(response, 404, "M_NOT_FOUND")
    expect_schema(response, DEVICE)


@case
async def another_users_device_is_404_not_found(ctx: Context) -> None:
    user = await ctx.register_user()
    other = await ctx.register_user()
    response = await ctx.get(f"{DEVICES}/{other.device_id}", token=user.access_token)
    expect_error(response, 404, "M_NOT_FOUND")


@case
async def deleting_a_device_needs_the_password_then_logs_it_out(ctx: Context) -> None:
    user = await ctx.register_user()
    second = await login_again(ctx, user)
    path = f"{DEVICES}/{second['device_id']}"
    challenge = await challenge_for(ctx, "DELETE", path, DEVICE, user, {})
    response = await ctx.delete(path, json={"auth": password_auth(user, challenge["session"])},
                                token=user.access_token)
    expect_status(response, 200)
    expect_schema(response, DEVICE)
    expect_error(await ctx.get(WHOAMI, token=second["access_token"]), 401, "M_UNKNOWN_TOKEN")
    listed = await device_ids(ctx, user)
    expect(second["device_id"] not in listed, f"deleted device {second['device_id']} still listed: {listed}")


@case
async def a_wrong_password_repeats_the_challenge_with_forbidden(ctx: Context) -> None:
    user = await ctx.register_user()
    second = await login_again(ctx, user)
    path = f"{DEVICES}/{second['device_id']}"
    challenge = await challenge_for(ctx, "DELETE", path, DEVICE, user, {})
    auth = password_auth(user, challenge["session"], password=user.password + "-wrong")
    response = await ctx.delete(path, json={"auth": auth}, token=user.access_token)
    expect_status(response, 401)
    body = expect_schema(response, DEVICE)
    expect(body.get("errcode") == "M_FORBIDDEN", f"{response.describe()}: errcode {body.get('errcode')!r}")
    expect_status(await ctx.get(WHOAMI, token=second["access_token"]), 200)


@case
async def delete_devices_removes_several_devices_and_their_tokens(ctx: Context) -> None:
    user = await ctx.register_user()
    first, second, kept = [await login_again(ctx, user) for _ in range(3)]
    body: dict[str, Any] = {"devices": [first["device_id"], second["device_id"]]}
    challenge = await challenge_for(ctx, "POST", DELETE_DEVICES, DELETE_DEVICES, user, body)
    response = await ctx.post(DELETE_DEVICES, json={**body, "auth": password_auth(user, challenge["session"])},
                              token=user.access_token)
    expect_status(response, 200)
    expect_schema(response, DELETE_DEVICES)
    for gone in (first, second):
        expect_error(await ctx.get(WHOAMI, token=gone["access_token"]), 401, "M_UNKNOWN_TOKEN")
    expect_status(await ctx.get(WHOAMI, token=kept["access_token"]), 200)
    listed = await device_ids(ctx, user)
    expect(sorted(listed) == sorted([user.device_id, kept["device_id"]]), f"devices left: {listed}")


@case
async def delete_devices_without_a_device_list_is_400(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.post(DELETE_DEVICES, json={}, token=user.access_token)
    expect_error(response, 400, "M_MISSING_PARAM")


@case
async def listing_devices_without_a_token_is_401_missing_token(ctx: Context) -> None:
    expect_error(await ctx.get(DEVICES), 401, "M_MISSING_TOKEN")
    expect_error(await ctx.get(DEVICES, token="synctest_not_a_token"), 401, "M_UNKNOWN_TOKEN")
