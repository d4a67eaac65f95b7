"""Small HTTP helpers shared by the account tests."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import aiohttp

from tests.conftest import SHARED_SECRET


async def register(client: aiohttp.ClientSession, username: str, password: str = "correct horse",
                   **extra: Any) -> dict[str, Any]:
    """Register with open registration (m.login.dummy) and return the response body."""
    body = {"username": username, "password": password, "auth": {"type": "m.login.dummy"}, **extra}
    async with client.post("/_matrix/client/v3/register", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def login(client: aiohttp.ClientSession, user: str, password: str = "correct horse",
                **extra: Any) -> dict[str, Any]:
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
            "password": password, **extra}
    async with client.post("/_matrix/client/v3/login", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register_admin(client: aiohttp.ClientSession, username: str, password: str = "admin pass",
                         admin: bool = True, secret: str = SHARED_SECRET) -> dict[str, Any]:
    async with client.get("/_synapse/admin/v1/register") as resp:
        nonce = (await resp.json())["nonce"]
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(f"{nonce}\0{username}\0{password}\0".encode() + (b"admin" if admin else b"notadmin"))
    body = {"nonce": nonce, "username": username, "password": password, "admin": admin, "mac": mac.hexdigest()}
    async with client.post("/_synapse/admin/v1/register", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()
