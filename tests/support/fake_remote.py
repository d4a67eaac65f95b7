"""A fake remote homeserver written in the tests: aiohttp over TLS on loopback with its own ed25519
key. It publishes its keys at /_matrix/key/v2/server (what it publishes can be changed: extra keys,
old keys, validity), signs requests it makes and events it builds, and records what it was asked.
Routes can be added before `start()` for the endpoints a test needs it to answer."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from signedjson.types import SigningKey
from yarl import URL

from federation.x_matrix import sign_request
from homeserver.events.hashing import add_content_hash, compute_event_id
from homeserver.events.room_versions import RoomVersion
from homeserver.events.signing import (
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
    key_id_of,
    sign_event,
    sign_json,
)
from tests.support.hangs import dump_tasks_on_timeout
from tests.support.ports import free_port  # noqa: F401  (re-exported for the federation tests)
from tests.support.tls_ca import TestCA

# Longer than any request of a test takes on a loaded machine, far shorter than aiohttp's 5 minutes.
REQUEST_TIMEOUT_S = 90

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeRemoteServer:
    def __init__(self, ca: TestCA, host: str = "127.0.0.2", *, key_version: str = "fake1",
                 cert_names: tuple[str, ...] | None = None):
        self.host = host
        self.port = free_port(host)
        self.server_name = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self.signing_key: SigningKey = generate_signing_key(key_version)
        self.valid_until_ms = int(time.time() * 1000) + 3600_000
        # key ID -> (signing key, expired_ts): keys published under old_verify_keys.
        self.old_keys: dict[str, tuple[SigningKey, int]] = {}
        # When set, the key response is signed by these keys instead of the published one.
        self.key_response_signers: list[SigningKey] | None = None
        self.key_requests = 0
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path_qs, Authorization)
        self._cert = ca.issue(*(cert_names or (host,)))
        self._ca_path = ca.ca_path
        self.app = web.Application()
        self.app.router.add_get("/_matrix/key/v2/server", self._keys)
        self._runner: web.AppRunner | None = None

    @property
    def key_id(self) -> str:
        return key_id_of(self.signing_key)

    def route(self, method: str, path: str, handler: Handler) -> None:
        async def recording(request: web.Request) -> web.StreamResponse:
            self.requests.append((request.method, request.raw_path, request.headers.get("Authorization")))
            return await handler(request)

        self.app.router.add_route(method, path, recording)

    def key_response(self) -> dict[str, Any]:
        body = {
            "server_name": self.server_name,
            "valid_until_ts": self.valid_until_ms,
            "verify_keys": {self.key_id: {"key": encode_verify_key_base64(get_verify_key(self.signing_key))}},
            "old_verify_keys": {
                key_id: {"key": encode_verify_key_base64(get_verify_key(key)), "expired_ts": expired}
                for key_id, (key, expired) in self.old_keys.items()
            },
        }
        for key in self.key_response_signers or [self.signing_key]:
            body = sign_json(body, self.server_name, key)
        return body

    async def _keys(self, request: web.Request) -> web.Response:
        self.key_requests += 1
        return web.json_response(self.key_response())

    async def start(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self._cert.certificate_path, self._cert.private_key_path)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, ssl_context=context).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- acting as the origin of requests and events ------------------------------------------

    def authorization(self, destination: str, method: str, uri: str, content: Any = None, *,
                      key: SigningKey | None = None, origin: str | None = None) -> str:
        return sign_request(origin or self.server_name, key or self.signing_key, destination, method, uri, content)

    async def request(self, base_url: str, destination: str, method: str, uri: str, content: Any = None, *,
                      authorization: str | None = None, ca_path: str | None = None) -> tuple[int, Any]:
        """Send a request signed by this server to `base_url` (our homeserver); (status, JSON)."""
        headers = {"Authorization": authorization or self.authorization(destination, method, uri, content)}
        data = None
        if content is not None:
            data = json.dumps(content).encode()
            headers["Content-Type"] = "application/json"
        ssl_context = ssl.create_default_context(cafile=ca_path or self._ca_path)
        async with dump_tasks_on_timeout(REQUEST_TIMEOUT_S, f"{method} {uri}"), aiohttp.ClientSession() as session:
            async with session.request(method, URL(base_url + uri, encoded=True), data=data, headers=headers,
                                       ssl=ssl_context) as r:
                return r.status, await r.json(content_type=None)

    def make_event(self, room_version: RoomVersion, *, sender_localpart: str = "remote", event_type: str = "m.room.message",
                   content: dict[str, Any] | None = None, room_id: str = "!room:example.org",
                   extra: dict[str, Any] | None = None, signers: list[tuple[str, SigningKey]] | None = None,
                   ) -> dict[str, Any]:
        """A hashed PDU from a user of this server, signed by this server (or by `signers`)."""
        pdu: dict[str, Any] = {
            "type": event_type,
            "room_id": room_id,
            "sender": f"@{sender_localpart}:{self.server_name}",
            "content": content if content is not None else {"msgtype": "m.text", "body": "hello"},
            "origin_server_ts": int(time.time() * 1000),
            "depth": 5,
            "prev_events": [],
            "auth_events": [],
            **(extra or {}),
        }
        if room_version.event_id_in_event and "event_id" not in pdu:
            pdu["event_id"] = f"$abc{int(time.time() * 1000)}:{self.server_name}"
        pdu = add_content_hash(pdu)
        for name, key in signers if signers is not None else [(self.server_name, self.signing_key)]:
            pdu = sign_event(pdu, room_version, name, key)
        compute_event_id(pdu, room_version)
        return pdu
