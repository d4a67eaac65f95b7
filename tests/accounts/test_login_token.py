"""POST /login/get_token: a signed-in device issues a one-time login token for a new device."""

from __future__ import annotations

import aiohttp

from tests.accounts.helpers import bearer, register

GET_TOKEN = "/_matrix/client/v1/login/get_token"
LOGIN = "/_matrix/client/v3/login"


async def capability(client: aiohttp.ClientSession, token: str) -> dict:
    async with client.get("/_matrix/client/v3/capabilities", headers=bearer(token)) as resp:
        return (await resp.json())["capabilities"]["m.get_login_token"]


async def test_get_token_is_not_served_and_not_advertised_by_default(client):
    user = await register(client, "alice")
    assert await capability(client, user["access_token"]) == {"enabled": False}
    async with client.post(GET_TOKEN, json={}, headers=bearer(user["access_token"])) as resp:
        assert resp.status == 404
        assert (await resp.json())["errcode"] == "M_UNRECOGNIZED"


async def test_a_token_issued_after_uia_logs_a_new_device_in_once(make_homeserver):
    server = await make_homeserver(sessions={"login_via_existing_session": {"enabled": True}})
    async with aiohttp.ClientSession(server.base_url()) as client:
        user = await register(client, "alice")
        headers = bearer(user["access_token"])
        assert await capability(client, user["access_token"]) == {"enabled": True}
        async with client.post(GET_TOKEN, json={}, headers=headers) as resp:
            assert resp.status == 401
            session = (await resp.json())["session"]
        auth = {"type": "m.login.password", "session": session, "password": "correct horse",
                "identifier": {"type": "m.id.user", "user": user["user_id"]}}
        async with client.post(GET_TOKEN, json={"auth": auth}, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        assert body["expires_in_ms"] == 300_000 and body["login_token"]
        async with client.post(LOGIN, json={"type": "m.login.token", "token": body["login_token"]}) as resp:
            assert resp.status == 200
            new_device = await resp.json()
        assert new_device["user_id"] == user["user_id"] and new_device["device_id"] != user["device_id"]
        async with client.post(LOGIN, json={"type": "m.login.token", "token": body["login_token"]}) as resp:
            assert resp.status == 403


async def test_get_token_without_uia_is_limited_to_one_a_minute(make_homeserver):
    server = await make_homeserver(
        sessions={"login_via_existing_session": {"enabled": True, "require_ui_auth": False}},
        rate_limits={"enabled": True})
    async with aiohttp.ClientSession(server.base_url()) as client:
        user = await register(client, "alice")
        headers = bearer(user["access_token"])
        async with client.post(GET_TOKEN, json={}, headers=headers) as resp:
            assert resp.status == 200
        async with client.post(GET_TOKEN, json={}, headers=headers) as resp:
            assert resp.status == 429
