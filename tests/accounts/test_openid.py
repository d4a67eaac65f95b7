"""OpenID tokens: issued to a user for themselves, resolved on the federation listener, expiring."""

from __future__ import annotations

import aiohttp

from tests.accounts.helpers import bearer, register

USERINFO = "/_matrix/federation/v1/openid/userinfo"


def request_token_path(user_id: str) -> str:
    return f"/_matrix/client/v3/user/{user_id}/openid/request_token"


async def test_a_token_resolves_to_its_user_on_the_federation_listener(hs, client):
    user = await register(client, "alice")
    async with client.post(request_token_path(user["user_id"]), json={},
                           headers=bearer(user["access_token"])) as resp:
        assert resp.status == 200
        token = await resp.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
    assert token["matrix_server_name"] == hs.config.server_name
    async with aiohttp.ClientSession(hs.base_url("federation")) as federation:
        async with federation.get(USERINFO, params={"access_token": token["access_token"]}) as resp:
            assert resp.status == 200
            assert await resp.json() == {"sub": user["user_id"]}


async def test_tokens_survive_a_restart_and_expire_after_an_hour(make_homeserver):
    server = await make_homeserver()
    async with aiohttp.ClientSession(server.base_url()) as client:
        user = await register(client, "alice")
        async with client.post(request_token_path(user["user_id"]), json={},
                               headers=bearer(user["access_token"])) as resp:
            token = (await resp.json())["access_token"]
    await server.stop()
    await server.start()
    async with aiohttp.ClientSession(server.base_url("federation")) as federation:
        async with federation.get(USERINFO, params={"access_token": token}) as resp:
            assert resp.status == 200
        now = server.clock.time_ms()
        server.clock.time_ms = lambda: now + 3600 * 1000 + 1
        async with federation.get(USERINFO, params={"access_token": token}) as resp:
            assert resp.status == 401
            assert (await resp.json())["errcode"] == "M_UNKNOWN_TOKEN"


async def test_tokens_for_another_user_are_forbidden(client):
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    async with client.post(request_token_path(bob["user_id"]), json={},
                           headers=bearer(alice["access_token"])) as resp:
        assert resp.status == 403
        assert (await resp.json())["errcode"] == "M_FORBIDDEN"


async def test_userinfo_without_or_with_an_unknown_token_is_401(hs):
    async with aiohttp.ClientSession(hs.base_url("federation")) as federation:
        async with federation.get(USERINFO) as resp:
            assert resp.status == 401
            assert (await resp.json())["errcode"] == "M_MISSING_TOKEN"
        async with federation.get(USERINFO, params={"access_token": "nope"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["errcode"] == "M_UNKNOWN_TOKEN"
