"""HTTP helpers for admin API tests: an admin and ordinary users calling any path."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

from tests.accounts.helpers import register, register_admin
from tests.support.rooms import User

ADMIN = "/_synapse/admin"


def q(identifier: str) -> str:
    """An identifier escaped for a path segment."""
    return quote(identifier, safe="")


class Caller(User):
    """A user whose `call` takes admin (`/_synapse/...`, `/_huiskamer/...`), client or bare client paths."""

    async def call(self, method: str, path: str, body: Any = None, expect: int | None = 200, **params: Any) -> Any:
        if path.startswith(("/_synapse", "/_matrix", "/_huiskamer")):
            url = path
        else:
            url = "/_matrix/client/v3" + path
        headers = {"Authorization": f"Bearer {self.token}"}
        query = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}
        async with self.client.request(method, url, json=body, headers=headers, params=query or None) as resp:
            data = await resp.json()
            if expect is not None:
                assert resp.status == expect, f"{method} {path} -> {resp.status} {data}"
            return data

    async def admin(self, method: str, path: str, body: Any = None, expect: int | None = 200, **params: Any) -> Any:
        return await self.call(method, ADMIN + path, body, expect, **params)


async def new_admin(client: aiohttp.ClientSession, name: str = "admin") -> Caller:
    return Caller(client, await register_admin(client, name))


async def new_caller(client: aiohttp.ClientSession, name: str) -> Caller:
    return Caller(client, await register(client, name))


async def assert_admin_only(user: Caller, method: str, path: str, body: Any = None) -> None:
    """A non-admin gets 403 M_FORBIDDEN from an admin endpoint."""
    data = await user.admin(method, path, body, expect=403)
    assert data["errcode"] == "M_FORBIDDEN"
