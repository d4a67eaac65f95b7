"""Password changes, deactivation, and the third-party identifier endpoints."""

from __future__ import annotations

import pytest

from tests.accounts.helpers import login, register
from tests.accounts.test_devices import PASSWORD, V3, WHOAMI, call, password_auth, with_password

CHANGE_PASSWORD = f"{V3}/account/password"
DEACTIVATE = f"{V3}/account/deactivate"
LOGIN = f"{V3}/login"


async def login_status(client, user: str, password: str) -> int:
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}
    async with client.post(LOGIN, json=body) as resp:
        return resp.status


# --- password ----------------------------------------------------------------------


async def test_changing_the_password_swaps_which_password_logs_in(client):
    created = await register(client, "aart")
    status, body = await with_password(client, "POST", CHANGE_PASSWORD, created["access_token"],
                                       created["user_id"], {"new_password": "new secret"})
    assert (status, body) == (200, {})
    assert await login_status(client, "aart", "new secret") == 200
    assert await login_status(client, "aart", PASSWORD) == 403


async def test_a_password_change_logs_out_other_sessions_at_once_but_keeps_this_one(hs, client):
    created = await register(client, "bep")
    other = await login(client, "bep", device_id="OTHER")
    assert (await call(client, "GET", WHOAMI, other["access_token"]))[0] == 200  # cached now
    await with_password(client, "POST", CHANGE_PASSWORD, created["access_token"], created["user_id"],
                        {"new_password": "new secret"})
    status, body = await call(client, "GET", WHOAMI, other["access_token"])
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert (await call(client, "GET", WHOAMI, created["access_token"]))[0] == 200
    _, listed = await call(client, "GET", f"{V3}/devices", created["access_token"])
    assert [d["device_id"] for d in listed["devices"]] == [created["device_id"]]


async def test_logout_devices_false_keeps_other_sessions(client):
    created = await register(client, "cor")
    other = await login(client, "cor")
    await with_password(client, "POST", CHANGE_PASSWORD, created["access_token"], created["user_id"],
                        {"new_password": "new secret", "logout_devices": False})
    assert (await call(client, "GET", WHOAMI, other["access_token"]))[0] == 200


async def test_the_new_password_may_come_only_with_the_first_request_and_is_never_stored_plainly(hs, client):
    created = await register(client, "daan")
    status, challenge = await call(client, "POST", CHANGE_PASSWORD, created["access_token"],
                                   {"new_password": "plain new secret"})
    assert status == 401
    row = await hs.db.fetch_one("uia", "SELECT clientdict, serverdict FROM ui_auth_sessions WHERE session_id = ?",
                                (challenge["session"],))
    assert "plain new secret" not in row[0] + row[1]
    auth = password_auth(created["user_id"], challenge["session"])
    assert (await call(client, "POST", CHANGE_PASSWORD, created["access_token"], {"auth": auth}))[0] == 200
    assert await login_status(client, "daan", "plain new secret") == 200


async def test_a_wrong_current_password_is_401_forbidden_and_changes_nothing(client):
    created = await register(client, "eef")
    status, body = await with_password(client, "POST", CHANGE_PASSWORD, created["access_token"],
                                       created["user_id"], {"new_password": "new secret"}, password="wrong")
    assert status == 401 and body["errcode"] == "M_FORBIDDEN" and body["flows"]
    assert await login_status(client, "eef", PASSWORD) == 200


async def test_completing_auth_without_any_new_password_is_400_missing_param(client):
    created = await register(client, "frits")
    status, body = await with_password(client, "POST", CHANGE_PASSWORD, created["access_token"],
                                       created["user_id"], {})
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    assert body["error"].startswith("new_password")


@pytest.mark.parametrize(
    "body, errcode",
    [
        ({"new_password": 12345678}, "M_BAD_JSON"),
        ({"new_password": "x", "logout_devices": "no"}, "M_BAD_JSON"),
        ({"new_password": "x" * 513}, "M_TOO_LARGE"),
        ({"new_password": "x", "auth": []}, "M_BAD_JSON"),
        (b"password", "M_NOT_JSON"),
    ],
)
async def test_bad_password_change_requests_are_400(client, body, errcode):
    created = await register(client, "gert")
    status, result = await call(client, "POST", CHANGE_PASSWORD, created["access_token"], body)
    assert (status, result["errcode"]) == (400, errcode)


# --- deactivation ------------------------------------------------------------------------


async def test_deactivation_ends_every_session_and_login(hs, client):
    created = await register(client, "hein")
    other = await login(client, "hein")
    assert (await call(client, "GET", WHOAMI, other["access_token"]))[0] == 200
    status, body = await with_password(client, "POST", DEACTIVATE, created["access_token"], created["user_id"], {})
    assert (status, body) == (200, {"id_server_unbind_result": "no-support"})
    for token in (created["access_token"], other["access_token"]):
        status, result = await call(client, "GET", WHOAMI, token)
        assert (status, result["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert await login_status(client, "hein", PASSWORD) == 403
    user = await hs.account_store.get_user(created["user_id"])
    assert user.deactivated and not user.erased


async def test_deactivation_records_the_erase_flag(hs, client):
    created = await register(client, "ida")
    status, _ = await with_password(client, "POST", DEACTIVATE, created["access_token"], created["user_id"],
                                    {"erase": True})
    assert status == 200
    assert (await hs.account_store.get_user(created["user_id"])).erased


async def test_a_wrong_password_does_not_deactivate(hs, client):
    created = await register(client, "joop")
    status, body = await with_password(client, "POST", DEACTIVATE, created["access_token"], created["user_id"],
                                       {}, password="wrong")
    assert (status, body["errcode"]) == (401, "M_FORBIDDEN")
    assert not (await hs.account_store.get_user(created["user_id"])).deactivated


@pytest.mark.parametrize(
    "body, errcode",
    [({"erase": "yes"}, "M_BAD_JSON"), ({"id_server": 1}, "M_BAD_JSON"), (b"]", "M_NOT_JSON"),
     (b"1", "M_BAD_JSON")],
)
async def test_bad_deactivation_requests_are_400(client, body, errcode):
    created = await register(client, "karel")
    status, result = await call(client, "POST", DEACTIVATE, created["access_token"], body)
    assert (status, result["errcode"]) == (400, errcode)


# --- third-party identifiers -------------------------------------------------------------


async def test_the_3pid_list_is_empty(client):
    created = await register(client, "lotte")
    assert await call(client, "GET", f"{V3}/account/3pid", created["access_token"]) == (200, {"threepids": []})


EMAIL_REQUEST = {"client_secret": "secret-1", "email": "a@example.org", "send_attempt": 1}
MSISDN_REQUEST = {"client_secret": "secret-1", "country": "NL", "phone_number": "0612345678", "send_attempt": 1}
TOKEN_REQUESTS = [
    ("/register/email/requestToken", EMAIL_REQUEST),
    ("/register/msisdn/requestToken", MSISDN_REQUEST),
    ("/account/password/email/requestToken", EMAIL_REQUEST),
    ("/account/password/msisdn/requestToken", MSISDN_REQUEST),
    ("/account/3pid/email/requestToken", EMAIL_REQUEST),
    ("/account/3pid/msisdn/requestToken", MSISDN_REQUEST),
]


@pytest.mark.parametrize("path, body", TOKEN_REQUESTS)
async def test_token_requests_are_refused_because_nothing_is_sent(client, path, body):
    status, result = await call(client, "POST", V3 + path, None, body)
    assert (status, result["errcode"]) == (400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")


@pytest.mark.parametrize("path, body", TOKEN_REQUESTS)
@pytest.mark.parametrize(
    "change, errcode",
    [
        ({"client_secret": None}, "M_MISSING_PARAM"),
        ({"send_attempt": "1"}, "M_BAD_JSON"),
        ({"send_attempt": True}, "M_BAD_JSON"),
        ({"client_secret": "no spaces allowed"}, "M_INVALID_PARAM"),
        ({"next_link": 5}, "M_BAD_JSON"),
    ],
)
async def test_malformed_token_requests_say_what_is_wrong(client, path, body, change, errcode):
    request = {k: v for k, v in {**body, **change}.items() if v is not None}
    status, result = await call(client, "POST", V3 + path, None, request)
    assert (status, result["errcode"]) == (400, errcode)
    assert result["error"].startswith(next(iter(change)))


async def test_adding_a_3pid_asks_for_the_password_then_finds_no_validated_session(client):
    created = await register(client, "maud")
    status, body = await with_password(client, "POST", f"{V3}/account/3pid/add", created["access_token"],
                                       created["user_id"], {"client_secret": "s3cret", "sid": "nope"})
    assert (status, body["errcode"]) == (400, "M_THREEPID_AUTH_FAILED")


async def test_a_uia_session_completed_by_one_user_cannot_serve_another(client):
    alice = await register(client, "noor")
    mallory = await register(client, "olaf")
    path = f"{V3}/account/3pid/add"
    body = {"client_secret": "s3cret", "sid": "nope"}
    _, challenge = await call(client, "POST", path, alice["access_token"], body)
    auth = password_auth(alice["user_id"], challenge["session"])
    assert (await call(client, "POST", path, alice["access_token"], {**body, "auth": auth}))[0] == 400
    status, result = await call(client, "POST", path, mallory["access_token"],
                                {**body, "auth": {"session": challenge["session"]}})
    assert (status, result["errcode"]) == (403, "M_FORBIDDEN")


async def test_binding_on_an_identity_server_at_a_private_address_is_refused(client):
    created = await register(client, "piet")
    body = {"client_secret": "s3cret", "sid": "1", "id_server": "127.0.0.1:1", "id_access_token": "t"}
    status, result = await call(client, "POST", f"{V3}/account/3pid/bind", created["access_token"], body)
    assert (status, result["errcode"]) == (400, "M_SERVER_NOT_TRUSTED")


async def test_the_deprecated_3pid_post_cannot_verify_credentials(client):
    created = await register(client, "rik")
    for key in ("three_pid_creds", "threePidCreds"):
        body = {key: {"client_secret": "s3cret", "sid": "1", "id_server": "id.example.org"}}
        status, result = await call(client, "POST", f"{V3}/account/3pid", created["access_token"], body)
        assert (status, result["errcode"]) == (403, "M_THREEPID_AUTH_FAILED")


@pytest.mark.parametrize("path", ["/account/3pid/unbind", "/account/3pid/delete"])
@pytest.mark.parametrize("medium", ["email", "msisdn"])
async def test_unbinding_or_deleting_a_3pid_reports_no_support(client, path, medium):
    created = await register(client, "sjaak")
    status, result = await call(client, "POST", V3 + path, created["access_token"],
                                {"medium": medium, "address": "a@example.org"})
    assert (status, result) == (200, {"id_server_unbind_result": "no-support"})


THREEPID_BAD_INPUT = [
    ("/account/3pid/add", {"client_secret": "s"}, "M_MISSING_PARAM"),
    ("/account/3pid/add", {"client_secret": "s", "sid": 1}, "M_BAD_JSON"),
    ("/account/3pid/bind", {"client_secret": "s", "sid": "1", "id_server": "x"}, "M_MISSING_PARAM"),
    ("/account/3pid/bind", {"client_secret": "s", "sid": "1", "id_server": "x", "id_access_token": 2}, "M_BAD_JSON"),
    ("/account/3pid/unbind", {"medium": "email"}, "M_MISSING_PARAM"),
    ("/account/3pid/unbind", {"medium": "pigeon", "address": "a"}, "M_INVALID_PARAM"),
    ("/account/3pid/delete", {"address": "a"}, "M_MISSING_PARAM"),
    ("/account/3pid/delete", {"medium": "email", "address": ["a"]}, "M_BAD_JSON"),
    ("/account/3pid", {}, "M_MISSING_PARAM"),
    ("/account/3pid", {"three_pid_creds": "x"}, "M_BAD_JSON"),
    ("/account/3pid", {"three_pid_creds": {"sid": "1"}}, "M_MISSING_PARAM"),
]


@pytest.mark.parametrize("path, body, errcode", THREEPID_BAD_INPUT)
async def test_malformed_3pid_requests_are_400(client, path, body, errcode):
    created = await register(client, "tijn")
    status, result = await call(client, "POST", V3 + path, created["access_token"], body)
    assert (status, result["errcode"]) == (400, errcode)


AUTHENTICATED_ENDPOINTS = [
    ("POST", "/account/password", {"new_password": "x"}),
    ("POST", "/account/deactivate", {}),
    ("GET", "/account/3pid", None),
    ("POST", "/account/3pid", {"three_pid_creds": {"client_secret": "s", "sid": "1"}}),
    ("POST", "/account/3pid/add", {"client_secret": "s", "sid": "1"}),
    ("POST", "/account/3pid/bind", {"client_secret": "s", "sid": "1", "id_server": "x", "id_access_token": "t"}),
    ("POST", "/account/3pid/unbind", {"medium": "email", "address": "a"}),
    ("POST", "/account/3pid/delete", {"medium": "email", "address": "a"}),
]


@pytest.mark.parametrize("method, path, body", AUTHENTICATED_ENDPOINTS)
async def test_account_endpoints_need_a_valid_token(client, method, path, body):
    status, result = await call(client, method, V3 + path, None, body)
    assert (status, result["errcode"]) == (401, "M_MISSING_TOKEN")
    status, result = await call(client, method, V3 + path, "syt_unknown", body)
    assert (status, result["errcode"]) == (401, "M_UNKNOWN_TOKEN")
