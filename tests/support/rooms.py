"""HTTP helpers for room tests."""

from __future__ import annotations

import itertools
from typing import Any

import aiohttp

from tests.accounts.helpers import bearer, register

_txn = itertools.count(1)


class User:
    """A registered user with a session, making authenticated calls."""

    def __init__(self, client: aiohttp.ClientSession, body: dict[str, Any]):
        self.client = client
        self.user_id: str = body["user_id"]
        self.token: str = body["access_token"]
        self.device_id: str = body["device_id"]

    async def call(self, method: str, path: str, body: Any = None, expect: int | None = 200, **params: Any) -> Any:
        url = path if path.startswith("/_matrix") else "/_matrix/client/v3" + path
        async with self.client.request(method, url, json=body, headers=bearer(self.token),
                                       params={k: str(v) for k, v in params.items()} or None) as resp:
            data = await resp.json()
            if expect is not None:
                assert resp.status == expect, f"{method} {path} -> {resp.status} {data}"
            return data

    async def create_room(self, **body: Any) -> str:
        return (await self.call("POST", "/createRoom", body))["room_id"]

    async def send(self, room_id: str, body: str = "hello", event_type: str = "m.room.message", **extra: Any) -> str:
        content = {"msgtype": "m.text", "body": body, **extra}
        return (await self.call("PUT", f"/rooms/{room_id}/send/{event_type}/t{next(_txn)}", content))["event_id"]

    async def join(self, room_id: str) -> None:
        await self.call("POST", f"/join/{room_id}", {})


async def new_user(client: aiohttp.ClientSession, name: str) -> User:
    return User(client, await register(client, name))
