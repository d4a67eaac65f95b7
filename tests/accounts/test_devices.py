"""Devices: listing, renaming, deleting behind UIA, and forgetting old last-seen sightings."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.accounts.devices import DAY_MS
from tests.accounts.helpers import bearer, login, register

V3 = "/_matrix/client/v3"
WHOAMI = f"{V3}/account/whoami"
PASSWORD = "correct horse"


async def call(client, method: str, path: str, token: str | None = None, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    all_headers = {**(bearer(token) if token else {}), **(headers or {})}
    kwargs: dict[str, Any] = {"headers": all_headers}
    if isinstance(body, bytes):
        kwargs["data"] = body
    elif body is not None:
        kwargs["json"] = body
    async with client.request(method, path, **kwargs) as resp:
        return resp.status, await resp.json()


def password_auth(user_id: str, session: str, password: str = PASSWORD) -> dict[str, Any]:
    return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
            "password": password, "session": session}


async def with_password(client, method: str, path: str, token: str, user_id: str, body: dict[str, Any],
                        password: str = PASSWORD) -> tuple[int, dict[str, Any]]:
    """Run a UIA-protected request: the challenge, then the password stage."""
    status, challenge = await call(client, method, path, token, body)
    assert status == 401, challenge
    return await call(client, method, path, token, {**body, "auth": password_auth(user_id, challenge["session"],
                                                                                  password)})


async def test_listing_shows_each_session_device_with_its_name(client):
    first = await register(client, "anna", initial_device_display_name="Laptop")
    second = await login(client, "anna", device_id="PHONE", initial_device_display_name="Phone")
    status, body = await call(client, "GET", f"{V3}/devices", first["access_token"])
    assert status == 200
    by_id = {d["device_id"]: d for d in body["devices"]}
    assert by_id.keys() == {first["device_id"], second["device_id"]}
    assert by_id["PHONE"]["display_name"] == "Phone"
    assert by_id[first["device_id"]]["display_name"] == "Laptop"


async def test_listing_includes_last_seen_ip_and_time_but_never_the_user_agent(hs, client):
    created = await register(client, "bert")
    await call(client, "GET", WHOAMI, created["access_token"], headers={"User-Agent": "Secret/1.0"})
    await hs.auth.flush_last_seen()
    _, body = await call(client, "GET", f"{V3}/devices", created["access_token"])
    (device,) = body["devices"]
    assert device["last_seen_ip"] == "127.0.0.1"
    assert isinstance(device["last_seen_ts"], int) and device["last_seen_ts"] > 0
    assert "last_seen_user_agent" not in device and "Secret" not in str(body)


async def test_a_device_without_a_name_shows_null_fields_as_synapse_and_nio_expect(client):
    created = await register(client, "cees")
    status, device = await call(client, "GET", f"{V3}/devices/{created['device_id']}", created["access_token"])
    assert status == 200 and device["device_id"] == created["device_id"]
    assert device["display_name"] is None and "last_seen_ip" in device and "last_seen_ts" in device


@pytest.mark.parametrize("prefix", ["/_matrix/client/v3", "/_matrix/client/r0"])
async def test_one_device_can_be_fetched_and_renamed(client, prefix):
    created = await register(client, "dirk")
    path = f"{prefix}/devices/{created['device_id']}"
    assert await call(client, "PUT", path, created["access_token"], {"display_name": "Desk"}) == (200, {})
    status, device = await call(client, "GET", path, created["access_token"])
    assert status == 200 and device["display_name"] == "Desk" and device["device_id"] == created["device_id"]


@pytest.mark.parametrize("body", [{}, {"display_name": None}])
async def test_renaming_without_a_name_keeps_the_old_one(client, body):
    created = await register(client, "eva", initial_device_display_name="Tablet")
    path = f"{V3}/devices/{created['device_id']}"
    assert (await call(client, "PUT", path, created["access_token"], body))[0] == 200
    assert (await call(client, "GET", path, created["access_token"]))[1]["display_name"] == "Tablet"


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_an_unknown_or_someone_elses_device_is_404_not_found(client, method):
    mine = await register(client, "fien")
    theirs = await register(client, "gijs")
    for device_id in ("NOSUCHDEVICE", theirs["device_id"]):
        status, body = await call(client, method, f"{V3}/devices/{device_id}", mine["access_token"],
                                  {"display_name": "x"} if method == "PUT" else None)
        assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    # Nothing was renamed on the other user's side.
    _, device = await call(client, "GET", f"{V3}/devices/{theirs['device_id']}", theirs["access_token"])
    assert device["display_name"] is None


@pytest.mark.parametrize(
    "body, status, errcode",
    [
        ({"display_name": 5}, 400, "M_BAD_JSON"),
        ({"display_name": ["a"]}, 400, "M_BAD_JSON"),
        ({"display_name": "x" * 513}, 400, "M_TOO_LARGE"),
        (b"not json", 400, "M_NOT_JSON"),
        (b"[1, 2]", 400, "M_BAD_JSON"),
    ],
)
async def test_bad_rename_requests_are_refused(client, body, status, errcode):
    created = await register(client, "hans")
    result = await call(client, "PUT", f"{V3}/devices/{created['device_id']}", created["access_token"], body)
    assert (result[0], result[1]["errcode"]) == (status, errcode)


async def test_deleting_a_device_asks_for_the_password_then_kills_its_token(client):
    created = await register(client, "ilse")
    other = await login(client, "ilse", device_id="OLDPHONE")
    assert (await call(client, "GET", WHOAMI, other["access_token"]))[0] == 200  # now cached
    path = f"{V3}/devices/OLDPHONE"
    status, challenge = await call(client, "DELETE", path, created["access_token"], {})
    assert status == 401
    assert challenge["flows"] == [{"stages": ["m.login.password"]}] and challenge["session"]
    auth = password_auth(created["user_id"], challenge["session"])
    assert await call(client, "DELETE", path, created["access_token"], {"auth": auth}) == (200, {})
    status, body = await call(client, "GET", WHOAMI, other["access_token"])
    assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN"
    _, listed = await call(client, "GET", f"{V3}/devices", created["access_token"])
    assert [d["device_id"] for d in listed["devices"]] == [created["device_id"]]


async def test_deleting_a_device_without_any_body_still_gets_the_challenge(client):
    created = await register(client, "jaap")
    async with client.delete(f"{V3}/devices/{created['device_id']}", headers=bearer(created["access_token"])) as resp:
        assert resp.status == 401
        assert (await resp.json())["flows"] == [{"stages": ["m.login.password"]}]


async def test_a_wrong_password_gives_the_challenge_again_with_forbidden(client):
    created = await register(client, "kees")
    other = await login(client, "kees")
    status, body = await with_password(client, "DELETE", f"{V3}/devices/{other['device_id']}",
                                       created["access_token"], created["user_id"], {}, password="wrong")
    assert status == 401
    assert body["errcode"] == "M_FORBIDDEN" and body["flows"] == [{"stages": ["m.login.password"]}]
    assert body["completed"] == []
    assert (await call(client, "GET", WHOAMI, other["access_token"]))[0] == 200


async def test_another_users_password_does_not_complete_the_stage(client):
    created = await register(client, "lien")
    await register(client, "mark")
    status, challenge = await call(client, "DELETE", f"{V3}/devices/{created['device_id']}",
                                   created["access_token"], {})
    auth = password_auth("mark", challenge["session"])
    status, body = await call(client, "DELETE", f"{V3}/devices/{created['device_id']}", created["access_token"],
                              {"auth": auth})
    assert status == 401 and body["errcode"] == "M_FORBIDDEN"


async def test_a_uia_session_for_one_device_cannot_delete_another(client):
    created = await register(client, "nina")
    await login(client, "nina", device_id="SPARE")
    _, challenge = await call(client, "DELETE", f"{V3}/devices/{created['device_id']}", created["access_token"], {})
    auth = password_auth(created["user_id"], challenge["session"])
    status, body = await call(client, "DELETE", f"{V3}/devices/SPARE", created["access_token"], {"auth": auth})
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"


async def test_a_completed_session_cannot_be_replayed(client):
    created = await register(client, "otto")
    await login(client, "otto", device_id="ONE")
    path = f"{V3}/devices/ONE"
    _, challenge = await call(client, "DELETE", path, created["access_token"], {})
    auth = password_auth(created["user_id"], challenge["session"])
    assert (await call(client, "DELETE", path, created["access_token"], {"auth": auth}))[0] == 200
    status, body = await call(client, "DELETE", path, created["access_token"],
                              {"auth": {"session": challenge["session"]}})
    assert status == 400


async def test_deleting_ones_own_device_logs_out(client):
    created = await register(client, "pim")
    status, _ = await with_password(client, "DELETE", f"{V3}/devices/{created['device_id']}",
                                    created["access_token"], created["user_id"], {})
    assert status == 200
    assert (await call(client, "GET", WHOAMI, created["access_token"]))[0] == 401


async def test_deleting_an_unknown_device_succeeds_as_in_synapse(client):
    created = await register(client, "quinten")
    status, _ = await with_password(client, "DELETE", f"{V3}/devices/NOSUCHDEVICE", created["access_token"],
                                    created["user_id"], {})
    assert status == 200


async def test_delete_devices_removes_several_at_once_and_their_tokens(client):
    created = await register(client, "rosa")
    a = await login(client, "rosa", device_id="A")
    b = await login(client, "rosa", device_id="B")
    c = await login(client, "rosa", device_id="C")
    for session in (a, b):  # cached now, so the cache must be told
        assert (await call(client, "GET", WHOAMI, session["access_token"]))[0] == 200
    status, body = await with_password(client, "POST", f"{V3}/delete_devices", created["access_token"],
                                       created["user_id"], {"devices": ["A", "B", "UNKNOWN"]})
    assert (status, body) == (200, {})
    assert (await call(client, "GET", WHOAMI, a["access_token"]))[0] == 401
    assert (await call(client, "GET", WHOAMI, b["access_token"]))[0] == 401
    assert (await call(client, "GET", WHOAMI, c["access_token"]))[0] == 200
    _, listed = await call(client, "GET", f"{V3}/devices", created["access_token"])
    assert sorted(d["device_id"] for d in listed["devices"]) == sorted(["C", created["device_id"]])


async def test_delete_devices_also_ends_refresh_tokens(client):
    created = await register(client, "saar")
    other = await login(client, "saar", device_id="R", refresh_token=True)
    await with_password(client, "POST", f"{V3}/delete_devices", created["access_token"], created["user_id"],
                        {"devices": ["R"]})
    status, _ = await call(client, "POST", f"{V3}/refresh", None, {"refresh_token": other["refresh_token"]})
    assert status == 401


@pytest.mark.parametrize(
    "body, errcode",
    [
        ({}, "M_MISSING_PARAM"),
        ({"devices": "A"}, "M_BAD_JSON"),
        ({"devices": ["A", 5]}, "M_BAD_JSON"),
        ({"devices": ["A"], "auth": "password"}, "M_BAD_JSON"),
        (b"{", "M_NOT_JSON"),
    ],
)
async def test_bad_delete_devices_requests_are_400(client, body, errcode):
    created = await register(client, "teun")
    status, result = await call(client, "POST", f"{V3}/delete_devices", created["access_token"], body)
    assert (status, result["errcode"]) == (400, errcode)


DEVICE_ENDPOINTS = [
    ("GET", "/devices", None),
    ("GET", "/devices/ABC", None),
    ("PUT", "/devices/ABC", {"display_name": "x"}),
    ("DELETE", "/devices/ABC", {}),
    ("POST", "/delete_devices", {"devices": []}),
]


@pytest.mark.parametrize("method, path, body", DEVICE_ENDPOINTS)
async def test_device_endpoints_need_a_token(client, method, path, body):
    status, result = await call(client, method, V3 + path, None, body)
    assert (status, result["errcode"]) == (401, "M_MISSING_TOKEN")
    status, result = await call(client, method, V3 + path, "syt_unknown", body)
    assert (status, result["errcode"]) == (401, "M_UNKNOWN_TOKEN")


async def test_pruning_forgets_sightings_older_than_the_configured_age(make_homeserver):
    server = await make_homeserver(sessions={"last_seen_max_age_days": 7})
    store = server.account_store
    now = server.clock.time_ms()
    user = f"@uma:{server.config.server_name}"
    await store.create_user(user, None, created_ts=now)
    await store.ensure_device(user, "OLD", None, now)
    await store.ensure_device(user, "NEW", None, now)
    await store.record_last_seen([
        (user, "OLD", "10.0.0.1", "Old/1", now - 8 * DAY_MS),
        (user, "NEW", "10.0.0.2", "New/1", now - 6 * DAY_MS),
    ])
    assert await server.devices.prune_last_seen() == 1
    assert [(r.device_id, r.ip) for r in await store.get_user_ips(user)] == [("NEW", "10.0.0.2")]
    old = await store.get_device(user, "OLD")
    assert old.last_seen_ip is None and old.last_seen_user_agent is None
    assert old.last_seen_ts == now - 8 * DAY_MS  # when, without where
    new = await store.get_device(user, "NEW")
    assert new.last_seen_ip == "10.0.0.2" and new.last_seen_user_agent == "New/1"
    assert await server.devices.prune_last_seen() == 0


async def test_pruning_also_covers_sightings_still_buffered_in_memory(hs, client):
    created = await register(client, "vera")
    await call(client, "GET", WHOAMI, created["access_token"])
    hs.clock.time_ms = lambda: 10**13  # far in the future: every sighting is too old
    assert await hs.devices.prune_last_seen() >= 1
    assert await hs.account_store.get_user_ips(created["user_id"]) == []
