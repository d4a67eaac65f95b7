"""Login, token lookup, refresh, logout, whoami."""

from __future__ import annotations

import aiohttp
import pytest

from tests.accounts.helpers import bearer, login, register

LOGIN = "/_matrix/client/v3/login"
WHOAMI = "/_matrix/client/v3/account/whoami"


async def whoami_status(client, token: str) -> tuple[int, dict]:
    async with client.get(WHOAMI, headers=bearer(token)) as resp:
        return resp.status, await resp.json()


async def test_login_flows_offer_password_and_token(client):
    async with client.get(LOGIN) as resp:
        types = [f["type"] for f in (await resp.json())["flows"]]
    assert "m.login.password" in types and "m.login.token" in types


async def test_password_login_accepts_localpart_full_id_and_any_case(hs, client):
    await register(client, "alice")
    for user in ("alice", f"@alice:{hs.config.server_name}", "ALICE"):
        body = await login(client, user)
        assert body["user_id"] == f"@alice:{hs.config.server_name}"
        assert (await whoami_status(client, body["access_token"]))[0] == 200


async def test_legacy_top_level_user_field_still_logs_in(client):
    await register(client, "bob")
    async with client.post(LOGIN, json={"type": "m.login.password", "user": "bob", "password": "correct horse"}) as resp:
        assert resp.status == 200


async def test_login_reuses_a_given_device_id(client):
    await register(client, "carol")
    first = await login(client, "carol", device_id="PHONE")
    second = await login(client, "carol", device_id="PHONE")
    assert first["device_id"] == second["device_id"] == "PHONE"
    assert first["access_token"] != second["access_token"]


@pytest.mark.parametrize("user, password", [("dave", "wrong"), ("nobody", "correct horse")])
async def test_a_wrong_password_or_unknown_user_is_403_forbidden(client, user, password):
    await register(client, "dave")
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}
    async with client.post(LOGIN, json=body) as resp:
        assert resp.status == 403
        assert (await resp.json())["errcode"] == "M_FORBIDDEN"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "x"}}, "password"),
        ({"type": "m.login.password", "password": "x"}, "identifier"),
        ({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": 5}, "password": "x"}, "identifier.user"),
        ({"type": "m.login.password", "identifier": {"type": "m.id.nonsense"}, "password": "x"}, "identifier.type"),
        ({"password": "x"}, "type"),
        ({"type": "m.login.magic"}, "type"),
    ],
)
async def test_malformed_login_requests_name_the_field(client, body, field):
    async with client.post(LOGIN, json=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"].startswith(field)


async def test_token_login_works_once(hs, client):
    created = await register(client, "erin")
    token, _ = await hs.sessions.create_login_token(created["user_id"])
    async with client.post(LOGIN, json={"type": "m.login.token", "token": token}) as resp:
        assert resp.status == 200
        assert (await resp.json())["user_id"] == created["user_id"]
    async with client.post(LOGIN, json={"type": "m.login.token", "token": token}) as resp:
        assert resp.status == 403


async def test_missing_and_unknown_tokens_are_told_apart(client):
    async with client.get(WHOAMI) as resp:
        assert resp.status == 401
        assert (await resp.json())["errcode"] == "M_MISSING_TOKEN"
    status, body = await whoami_status(client, "syt_not_a_real_token")
    assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN" and body["soft_logout"] is False


async def test_the_access_token_query_parameter_is_accepted(client):
    created = await register(client, "fay")
    async with client.get(WHOAMI, params={"access_token": created["access_token"]}) as resp:
        assert resp.status == 200


async def test_logout_kills_the_token_and_deletes_the_device(hs, client):
    created = await register(client, "gus")
    async with client.post("/_matrix/client/v3/logout", headers=bearer(created["access_token"])) as resp:
        assert resp.status == 200
    assert (await whoami_status(client, created["access_token"]))[0] == 401
    assert await hs.account_store.get_device(created["user_id"], created["device_id"]) is None


async def test_logout_all_kills_every_session(client):
    created = await register(client, "hal")
    other = await login(client, "hal")
    async with client.post("/_matrix/client/v3/logout/all", headers=bearer(other["access_token"])) as resp:
        assert resp.status == 200
    assert (await whoami_status(client, created["access_token"]))[0] == 401
    assert (await whoami_status(client, other["access_token"]))[0] == 401


async def test_refresh_tokens_rotate_and_expired_access_tokens_soft_logout(make_homeserver):
    server = await make_homeserver(sessions={"refreshable_access_token_lifetime_ms": 1000})
    async with aiohttp.ClientSession(server.base_url()) as client:
        created = await register(client, "ivy", refresh_token=True)
        assert created["expires_in_ms"] == 1000 and created["refresh_token"]
        async with client.post("/_matrix/client/v3/refresh", json={"refresh_token": created["refresh_token"]}) as resp:
            assert resp.status == 200
            refreshed = await resp.json()
        assert (await whoami_status(client, refreshed["access_token"]))[0] == 200
        assert (await whoami_status(client, created["access_token"]))[0] == 401
        # The old refresh token was used up by the rotation.
        async with client.post("/_matrix/client/v3/refresh", json={"refresh_token": created["refresh_token"]}) as resp:
            assert resp.status == 401
        server.clock.time_ms = lambda: 10**13  # far in the future: the access token has expired
        status, body = await whoami_status(client, refreshed["access_token"])
        assert status == 401 and body["soft_logout"] is True


async def test_last_seen_ip_and_user_agent_are_recorded_per_device(hs, client):
    created = await register(client, "jan")
    async with client.get(WHOAMI, headers={**bearer(created["access_token"]), "User-Agent": "TestClient/1"}) as resp:
        assert resp.status == 200
    await hs.auth.flush_last_seen()
    device = await hs.account_store.get_device(created["user_id"], created["device_id"])
    assert device.last_seen_ip == "127.0.0.1"
    assert device.last_seen_user_agent == "TestClient/1"
    assert device.last_seen_ts > 0


async def test_login_is_rate_limited_per_ip(make_homeserver):
    server = await make_homeserver(rate_limits={"enabled": True, "login": {"per_second": 0.01, "burst_count": 2}})
    async with aiohttp.ClientSession(server.base_url()) as client:
        statuses = []
        for _ in range(3):
            body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "x"}, "password": "y"}
            async with client.post(LOGIN, json=body) as resp:
                statuses.append(resp.status)
        assert statuses == [403, 403, 429]


async def test_an_account_with_too_many_failed_logins_is_refused_even_with_the_right_password(make_homeserver):
    server = await make_homeserver(rate_limits={"enabled": True,
                                                "login_failures": {"per_second": 0.001, "burst_count": 2}})
    async with aiohttp.ClientSession(server.base_url()) as client:
        await register(client, "guarded")
        statuses = []
        for password in ("wrong", "wrong", "correct horse"):
            body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "guarded"},
                    "password": password}
            async with client.post(LOGIN, json=body) as resp:
                statuses.append(resp.status)
        assert statuses == [403, 403, 429]


@pytest.mark.parametrize("user", ["guarded\n", "@guarded:{server}\n"])
async def test_a_user_id_with_a_trailing_newline_does_not_log_in(hs, client, user):
    await register(client, "guarded")
    body = {"type": "m.login.password", "password": "correct horse",
            "identifier": {"type": "m.id.user", "user": user.format(server=hs.config.server_name)}}
    async with client.post(LOGIN, json=body) as resp:
        assert resp.status == 403
