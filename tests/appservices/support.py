"""A test application service on loopback, and helpers to register it with a homeserver.

The test appservice checks `Authorization: Bearer <hs_token>` on every request (answering 403
`M_FORBIDDEN` otherwise, as a real bridge does) and records what it got, so tests can assert on
the exact requests the homeserver made.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from tests.accounts.helpers import bearer

AS_TOKEN = "as-token-of-the-test-bridge"
HS_TOKEN = "hs-token-of-the-test-bridge"


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class TestAppService:
    """An aiohttp application service; `on_user` / `on_alias` decide the query answers."""

    hs_token: str = HS_TOKEN
    received: list[Received] = field(default_factory=list)
    unauthorised: list[str] = field(default_factory=list)
    on_user: Callable[[str], Awaitable[bool]] | None = None
    on_alias: Callable[[str], Awaitable[bool]] | None = None
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)
    third_party: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Transactions: fail this many PUTs first (500), then accept.
    fail_transactions: int = 0
    ping_status: int = 200
    ping_delay_s: float = 0.0
    url: str = ""
    _runner: web.AppRunner | None = None

    __test__ = False  # not a pytest test class

    def of(self, method: str, prefix: str) -> list[Received]:
        return [r for r in self.received if r.method == method and r.path.startswith(prefix)]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self.received.append(Received(request.method, request.path, dict(request.query), body))
        if request.headers.get("Authorization") != f"Bearer {self.hs_token}":
            self.unauthorised.append(request.path)
            return web.json_response({"errcode": "M_FORBIDDEN", "error": "bad hs_token"}, status=403)
        path = request.path.removeprefix("/_matrix/app/v1")
        if path.startswith("/users/"):
            found = self.on_user is not None and await self.on_user(request.match_info["tail"][len("users/"):])
            return web.json_response({} if found else {"errcode": "M_NOT_FOUND"}, status=200 if found else 404)
        if path.startswith("/rooms/"):
            found = self.on_alias is not None and await self.on_alias(request.match_info["tail"][len("rooms/"):])
            return web.json_response({} if found else {"errcode": "M_NOT_FOUND"}, status=200 if found else 404)
        if path.startswith("/thirdparty/protocol/"):
            protocol = path[len("/thirdparty/protocol/"):]
            if protocol in self.protocols:
                return web.json_response(self.protocols[protocol])
            return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)
        if path.startswith("/thirdparty/"):
            return web.json_response(self.third_party.get(path, []))
        if path == "/ping":
            await asyncio.sleep(self.ping_delay_s)
            return web.json_response({} if self.ping_status == 200 else {"errcode": "M_UNKNOWN"},
                                     status=self.ping_status)
        if path.startswith("/transactions/"):
            if self.fail_transactions > 0:
                self.fail_transactions -= 1
                return web.json_response({"errcode": "M_UNKNOWN", "error": "try again"}, status=500)
            return web.json_response({})
        return web.json_response({"errcode": "M_UNRECOGNIZED"}, status=404)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/_matrix/app/v1/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def registration_yaml(tmp_path: Path, url: str | None, *, name: str = "bridge", as_token: str = AS_TOKEN,
                      hs_token: str = HS_TOKEN, **extra: Any) -> str:
    """Write a registration file as bridges generate it; returns its path."""
    registration = {
        "id": name,
        "url": url,
        "as_token": as_token,
        "hs_token": hs_token,
        "sender_localpart": f"{name}bot",
        "namespaces": {
            "users": [{"regex": f"@{name}_.*:.*", "exclusive": True}],
            "aliases": [{"regex": f"#{name}_.*:.*", "exclusive": True}],
            "rooms": [],
        },
        "rate_limited": False,
        "protocols": [name],
        **extra,
    }
    path = tmp_path / f"{name}-registration.yaml"
    path.write_text(yaml.safe_dump(registration))
    return str(path)


class AsClient:
    """Client-server calls made with the as_token, optionally as a user and device."""

    def __init__(self, client: aiohttp.ClientSession, as_token: str = AS_TOKEN):
        self.client = client
        self.as_token = as_token

    async def call(self, method: str, path: str, body: Any = None, expect: int | None = 200,
                   **params: Any) -> Any:
        url = path if path.startswith("/_matrix") else "/_matrix/client/v3" + path
        async with self.client.request(method, url, json=body, headers=bearer(self.as_token),
                                       params={k: str(v) for k, v in params.items()} or None) as resp:
            data = await resp.json()
            if expect is not None:
                assert resp.status == expect, f"{method} {path} -> {resp.status} {data}"
            return data

    async def register(self, username: str, **extra: Any) -> dict[str, Any]:
        return await self.call("POST", "/register",
                               {"type": "m.login.application_service", "username": username, **extra})


@dataclass
class Transaction:
    txn_id: str
    body: dict[str, Any]


class TransactionRecorder:
    """An application service that only takes transactions, as a bridge does: it checks the hs_token,
    records every PUT (retries included), and processes each transaction ID once.

    `stop()` and `start()` again reuse the same port, so a test can take it down and bring it back.
    """

    __test__ = False

    def __init__(self, hs_token: str = HS_TOKEN):
        self.hs_token = hs_token
        self.puts: list[Transaction] = []  # every request, in arrival order
        self.processed: list[Transaction] = []  # each transaction ID once
        self.unauthorised = 0
        self.fail_next = 0  # answer this many PUTs with 500 first
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for t in self.processed for e in t.body.get("events", [])]

    def ephemeral(self, key: str = "ephemeral") -> list[dict[str, Any]]:
        return [e for t in self.processed for e in t.body.get(key, [])]

    async def _put(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.hs_token}":
            self.unauthorised += 1
            return web.json_response({"errcode": "M_FORBIDDEN", "error": "bad hs_token"}, status=403)
        transaction = Transaction(request.match_info["txn_id"], await request.json())
        self.puts.append(transaction)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"errcode": "M_UNKNOWN", "error": "try again"}, status=500)
        if all(t.txn_id != transaction.txn_id for t in self.processed):
            self.processed.append(transaction)
        async with self._changed:
            self._changed.notify_all()
        return web.json_response({})

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        """Wait until `predicate()` holds for what was processed."""

        async def waiting() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(waiting(), timeout)

    async def wait_for_event(self, event_id: str, timeout: float = 15.0) -> None:
        await self.wait_for(lambda: any(e.get("event_id") == event_id for e in self.events), timeout)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_put("/_matrix/app/v1/transactions/{txn_id}", self._put)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
