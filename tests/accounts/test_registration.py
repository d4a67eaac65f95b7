"""POST /register with user-interactive auth, availability, tokens, shared-secret registration."""

from __future__ import annotations

import hashlib
import hmac

import aiohttp
import pytest

from tests.accounts.helpers import bearer, register, register_admin

REGISTER = "/_matrix/client/v3/register"


async def test_an_empty_register_request_gets_the_dummy_flow_and_a_session(client):
    async with client.post(REGISTER, json={}) as resp:
        assert resp.status == 401
        body = await resp.json()
    assert body["flows"] == [{"stages": ["m.login.dummy"]}]
    assert body["session"] and body["completed"] == [] and body["params"] == {}


async def test_dummy_auth_on_the_first_request_registers_and_logs_in(hs, client):
    body = await register(client, "Alice", initial_device_display_name="Laptop")
    assert body["user_id"] == f"@alice:{hs.config.server_name}"
    assert body["access_token"] and body["device_id"]
    async with client.get("/_matrix/client/v3/account/whoami", headers=bearer(body["access_token"])) as resp:
        assert await resp.json() == {"user_id": body["user_id"], "device_id": body["device_id"], "is_guest": False}


async def test_a_session_carries_the_first_request_parameters_to_completion(hs, client):
    async with client.post(REGISTER, json={"username": "bob", "password": "pw"}) as resp:
        session = (await resp.json())["session"]
    async with client.post(REGISTER, json={"auth": {"type": "m.login.dummy", "session": session}}) as resp:
        assert resp.status == 200
        assert (await resp.json())["user_id"] == f"@bob:{hs.config.server_name}"


async def test_inhibit_login_returns_no_token(client):
    body = await register(client, "carol", inhibit_login=True)
    assert "access_token" not in body and body["user_id"].startswith("@carol:")


async def test_registering_without_a_username_generates_one(client):
    body = await register(client, None)
    assert body["user_id"].startswith("@")


@pytest.mark.parametrize("username", ["has space", "UPPER\u00e9", "_underscore", "a" * 300, "at@sign"])
async def test_invalid_usernames_are_m_invalid_username(client, username):
    body = {"username": username, "password": "pw", "auth": {"type": "m.login.dummy"}}
    async with client.post(REGISTER, json=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["errcode"] == "M_INVALID_USERNAME"


async def test_a_taken_username_is_m_user_in_use_case_insensitively(client):
    await register(client, "dave")
    body = {"username": "DAVE", "password": "pw", "auth": {"type": "m.login.dummy"}}
    async with client.post(REGISTER, json=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["errcode"] == "M_USER_IN_USE"
    async with client.get("/_matrix/client/v3/register/available", params={"username": "dave"}) as resp:
        assert (await resp.json())["errcode"] == "M_USER_IN_USE"
    async with client.get("/_matrix/client/v3/register/available", params={"username": "erin"}) as resp:
        assert await resp.json() == {"available": True}


@pytest.mark.parametrize("field, value", [("password", 5), ("password", "x" * 600), ("username", ["a"]),
                                          ("inhibit_login", "yes"), ("device_id", 3)])
async def test_wrongly_typed_fields_are_rejected_naming_the_field(client, field, value):
    body = {"username": "frank", "password": "pw", "auth": {"type": "m.login.dummy"}, field: value}
    async with client.post(REGISTER, json=body) as resp:
        assert resp.status == 400
        assert field in (await resp.json())["error"]


async def test_an_unknown_session_is_rejected(client):
    body = {"username": "gina", "auth": {"type": "m.login.dummy", "session": "nope"}}
    async with client.post(REGISTER, json=body) as resp:
        assert resp.status == 400


async def test_guest_registration_is_refused_unless_guests_are_allowed(client):
    async with client.post(REGISTER + "?kind=guest", json={}) as resp:
        assert resp.status == 403
        assert (await resp.json())["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"


async def test_closed_registration_is_forbidden(make_homeserver):
    server = await make_homeserver(registration={"enabled": False})
    async with aiohttp.ClientSession(server.base_url()) as session:
        async with session.post(REGISTER, json={"username": "x", "auth": {"type": "m.login.dummy"}}) as resp:
            assert resp.status == 403
            assert (await resp.json())["errcode"] == "M_FORBIDDEN"


async def test_registration_tokens_are_required_counted_and_used_up(make_homeserver):
    server = await make_homeserver(registration={"enabled": True, "require_token": True})
    await server.account_store.add_registration_token("letmein", uses_allowed=1, expiry_time=None)
    async with aiohttp.ClientSession(server.base_url()) as session:
        async with session.post(REGISTER, json={"username": "tina", "password": "pw"}) as resp:
            challenge = await resp.json()
        assert challenge["flows"] == [{"stages": ["m.login.registration_token"]}]
        validity = "/_matrix/client/v1/register/m.login.registration_token/validity"
        async with session.get(validity, params={"token": "letmein"}) as resp:
            assert await resp.json() == {"valid": True}
        bad = {"auth": {"type": "m.login.registration_token", "token": "wrong", "session": challenge["session"]}}
        async with session.post(REGISTER, json=bad) as resp:
            assert resp.status == 401
            assert (await resp.json())["completed"] == []
        good = {"auth": {"type": "m.login.registration_token", "token": "letmein", "session": challenge["session"]}}
        async with session.post(REGISTER, json=good) as resp:
            assert resp.status == 200, await resp.text()
        async with session.get(validity, params={"token": "letmein"}) as resp:
            assert await resp.json() == {"valid": False}
        async with session.post(REGISTER, json={"username": "uma", "auth": {"type": "m.login.dummy"}}) as resp:
            assert resp.status == 401  # dummy is not a stage of the token flow


async def test_shared_secret_registration_creates_an_admin(hs, client):
    body = await register_admin(client, "root")
    assert body["user_id"] == f"@root:{hs.config.server_name}"
    user = await hs.account_store.get_user(body["user_id"])
    assert user.admin is True


async def test_shared_secret_registration_refuses_a_bad_mac_and_reused_nonce(client):
    async with client.get("/_synapse/admin/v1/register") as resp:
        nonce = (await resp.json())["nonce"]
    mac = hmac.new(b"wrong secret", digestmod=hashlib.sha1)
    mac.update(f"{nonce}\0eve\0pw\0notadmin".encode())
    body = {"nonce": nonce, "username": "eve", "password": "pw", "admin": False, "mac": mac.hexdigest()}
    async with client.post("/_synapse/admin/v1/register", json=body) as resp:
        assert resp.status == 403
    async with client.post("/_synapse/admin/v1/register", json=body) as resp:
        assert resp.status == 400  # the nonce is gone


async def test_only_completed_registrations_count_against_the_registration_limit(make_homeserver):
    server = await make_homeserver(rate_limits={"enabled": True, "registration": {"per_second": 0.001, "burst_count": 2}})
    async with aiohttp.ClientSession(server.base_url()) as session:
        # Element's sign-up: a first round that only gets the flows, then the completing round.
        for name in ("first", "second"):
            async with session.post(REGISTER, json={"username": name, "password": "pw"}) as resp:
                assert resp.status == 401
                uia_session = (await resp.json())["session"]
            async with session.post(REGISTER, json={"auth": {"type": "m.login.dummy", "session": uia_session}}) as resp:
                assert resp.status == 200, await resp.text()
        async with session.post(REGISTER, json={"username": "third", "password": "pw",
                                                "auth": {"type": "m.login.dummy"}}) as resp:
            assert resp.status == 429
            body = await resp.json()
        assert body["errcode"] == "M_LIMIT_EXCEEDED" and body["retry_after_ms"] > 0
        async with session.post(REGISTER, json={}) as resp:
            assert resp.status == 429  # an exhausted address is refused before any UIA round


async def test_availability_checks_do_not_use_up_registrations(make_homeserver):
    server = await make_homeserver(rate_limits={"enabled": True, "registration": {"per_second": 0.001, "burst_count": 1}})
    async with aiohttp.ClientSession(server.base_url()) as session:
        for _ in range(3):
            async with session.get("/_matrix/client/v3/register/available", params={"username": "kim"}) as resp:
                assert resp.status == 200
        await register(session, "kim")


async def test_a_completed_registration_session_replayed_returns_the_same_user(hs, client):
    async with client.post(REGISTER, json={"username": "replay", "password": "pw"}) as resp:
        uia_session = (await resp.json())["session"]
    complete = {"username": "replay", "auth": {"type": "m.login.dummy", "session": uia_session}}
    async with client.post(REGISTER, json=complete) as resp:
        assert resp.status == 200
        first = await resp.json()
    async with client.post(REGISTER, json=complete) as resp:
        assert resp.status == 200, await resp.text()
        again = await resp.json()
    assert again["user_id"] == first["user_id"] == f"@replay:{hs.config.server_name}"
    assert again["access_token"] != first["access_token"]


@pytest.mark.parametrize("username", ["name-\n", "name\n", "\nname"])
async def test_a_username_with_a_newline_is_m_invalid_username(client, username):
    body = {"username": username, "password": "pw", "auth": {"type": "m.login.dummy"}}
    async with client.post(REGISTER, json=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["errcode"] == "M_INVALID_USERNAME"
    async with client.get("/_matrix/client/v3/register/available", params={"username": username}) as resp:
        assert (await resp.json())["errcode"] == "M_INVALID_USERNAME"


async def test_numeric_usernames_are_reserved_for_guests(client):
    body = {"username": "12345", "password": "pw", "auth": {"type": "m.login.dummy"}}
    async with client.post(REGISTER, json=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["errcode"] == "M_INVALID_USERNAME"


async def test_the_register_user_command_creates_an_admin_on_a_running_server(hs, tmp_path):
    import asyncio

    from homeserver.register_user import register_user

    result = await asyncio.to_thread(register_user, hs.config, "opsadmin", "s3cret", True, hs.base_url("admin"))
    assert result["user_id"] == f"@opsadmin:{hs.config.server_name}"
    assert (await hs.account_store.get_user(result["user_id"])).admin is True
