"""Creating test users: Synapse-style shared-secret admin registration and /register."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
from dataclasses import dataclass

from synctest.checks import expect, expect_status
from synctest.client import HttpClient

SHARED_SECRET_REGISTER = "/_synapse/admin/v1/register"
CLIENT_REGISTER = "/_matrix/client/v3/register"

_counter = itertools.count()


@dataclass(frozen=True)
class User:
    user_id: str
    access_token: str
    device_id: str | None
    password: str


def unique_localpart(prefix: str = "synctest") -> str:
    """A localpart no earlier run has used: servers keep users, so names must not repeat."""
    return f"{prefix}-{os.urandom(4).hex()}-{next(_counter)}"


def shared_secret_mac(
    secret: str, nonce: str, username: str, password: str, *, admin: bool, user_type: str | None = None
) -> str:
    """The HMAC-SHA1 Synapse expects: NUL-joined nonce, username, password, admin flag[, type]."""
    parts = [nonce, username, password, "admin" if admin else "notadmin"]
    if user_type is not None:
        parts.append(user_type)
    message = b"\x00".join(part.encode("utf-8") for part in parts)
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha1).hexdigest()


async def register_with_shared_secret(
    http: HttpClient,
    secret: str,
    localpart: str | None = None,
    password: str | None = None,
    *,
    admin: bool = False,
) -> User:
    localpart = localpart or unique_localpart()
    password = password or os.urandom(12).hex()
    nonce_response = await http.get(SHARED_SECRET_REGISTER)
    expect_status(nonce_response, 200)
    nonce = nonce_response.json["nonce"]
    response = await http.post(
        SHARED_SECRET_REGISTER,
        json={
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": shared_secret_mac(secret, nonce, localpart, password, admin=admin),
        },
    )
    expect_status(response, 200)
    body = response.json
    return User(body["user_id"], body["access_token"], body.get("device_id"), password)


async def register_with_dummy_auth(
    http: HttpClient, localpart: str | None = None, password: str | None = None
) -> User:
    """Register through the user-interactive flow, completing the m.login.dummy stage."""
    localpart = localpart or unique_localpart()
    password = password or os.urandom(12).hex()
    request = {"username": localpart, "password": password}
    challenge = await http.post(CLIENT_REGISTER, json=request)
    expect_status(challenge, 401)
    flows = challenge.json.get("flows", [])
    expect(
        any(flow.get("stages") == ["m.login.dummy"] for flow in flows),
        f"{challenge.describe()}: no flow consisting of just m.login.dummy in {flows}",
    )
    auth = {"type": "m.login.dummy", "session": challenge.json.get("session")}
    response = await http.post(CLIENT_REGISTER, json={**request, "auth": auth})
    expect_status(response, 200)
    body = response.json
    return User(body["user_id"], body["access_token"], body.get("device_id"), password)
