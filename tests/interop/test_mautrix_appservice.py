"""A minimal bot appservice built on mautrix's AppService, against our server or a real Synapse.

The bridge loads the same registration file the homeserver does, pings the homeserver (which
pings it back), registers a ghost user and has it join a human's room. The transaction step has
the bot receive the human's message in a transaction and reply as the ghost.

With INTEROP_TARGET=synapse the same scenarios run against a Synapse started with the
registration in its `app_service_config_files`.

Every request mautrix makes to the homeserver, and every request the homeserver makes to the
bridge, is noted (method, endpoint with IDs replaced by placeholders, status); with
MAUTRIX_CALLS_LOG=<file> they are appended there as JSON lines, which is how the table in
docs/appservices.md comparing our server with Synapse was made.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
import yaml
from aiohttp import web
from mautrix.appservice import AppService
from mautrix.appservice.state_store.file import FileASStateStore
from mautrix.types import Event, EventType, MessageEvent, RoomID, UserID

from tests.interop.conftest import interop_target
from tests.support.ports import free_port

pytestmark = pytest.mark.interop

TARGET = interop_target()
REPLY_TIMEOUT_S = 20.0


def write_registration(directory: Path, as_port: int) -> tuple[str, dict[str, Any]]:
    """The registration file as a mautrix bridge would generate it."""
    registration = {
        "id": "mxbot",
        "url": f"http://127.0.0.1:{as_port}",
        "as_token": secrets.token_urlsafe(24),
        "hs_token": secrets.token_urlsafe(24),
        "sender_localpart": "mxbot",
        "namespaces": {"users": [{"regex": "@mxghost_.*:.*", "exclusive": True}], "aliases": [], "rooms": []},
        "rate_limited": False,
        "de.sorunome.msc2409.push_ephemeral": True,
        "receive_ephemeral": True,
    }
    path = directory / "mxbot-registration.yaml"
    path.write_text(yaml.safe_dump(registration))
    return str(path), registration


def endpoint(path: str) -> str:
    """A request path with its IDs replaced by placeholders, for the calls table."""
    parts = []
    segments = path.split("/")
    for index, raw in enumerate(segments):
        segment = unquote(raw)
        before = segments[index - 1] if index else ""
        if segment[:1] in "!@$#" and len(segment) > 1:
            segment = {"!": "{roomId}", "@": "{userId}", "$": "{eventId}", "#": "{roomAlias}"}[segment[0]]
        elif before in ("transactions", "ping") or (index >= 2 and segments[index - 2] == "send"):
            segment = "{txnId}"
        elif before == "appservice":
            segment = "{appserviceId}"
        parts.append(segment)
    return re.sub(r"/r0/|/v3/", "/v3/", "/".join(parts))


@dataclass
class Call:
    direction: str  # "bridge->hs" or "hs->bridge"
    method: str
    endpoint: str
    status: int
    as_user: bool  # ?user_id= identity assertion
    detail: str = ""  # for transactions: what they carried


class RecordingAppService(AppService):
    """mautrix's AppService, noting the pings it answered (and their status) for the assertions,
    and every request between it and the homeserver for the calls table."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.pings: list[tuple[str | None, int]] = []
        self.calls: list[Call] = []
        super().__init__(*args, aiohttp_params={"middlewares": [self._note_incoming]}, **kwargs)

    @web.middleware
    async def _note_incoming(self, request: web.Request,
                             handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        detail = ""
        if request.path.startswith("/_matrix/app/v1/transactions/"):
            body = json.loads(await request.read())  # read() keeps the body for the handler
            detail = " ".join(f"{key}:{','.join(e.get('type', '?') for e in value)}" if isinstance(value, list)
                              else key for key, value in body.items() if value)
        try:
            response = await handler(request)
        except web.HTTPException as refused:
            self.calls.append(Call("hs->bridge", request.method, endpoint(request.path), refused.status, False,
                                   detail))
            raise
        self.calls.append(Call("hs->bridge", request.method, endpoint(request.path), response.status, False,
                               detail))
        return response

    async def start(self, host: str = "127.0.0.1", port: int = 8080) -> None:
        await super().start(host, port)
        # mautrix makes its own session; swap in one that notes each request (before any user intent
        # copies the session).
        trace = aiohttp.TraceConfig()

        async def on_end(_: Any, __: Any, params: aiohttp.TraceRequestEndParams) -> None:
            self.calls.append(Call("bridge->hs", params.method, endpoint(params.url.path), params.response.status,
                                   "user_id" in params.url.query))

        trace.on_request_end.append(on_end)
        old = self._http_session
        self._http_session = aiohttp.ClientSession(headers=old.headers if old else None, trace_configs=[trace])
        self.intent.api.session = self._http_session
        if old is not None:
            await old.close()

    async def _http_ping(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            response = await super()._http_ping(request)
        except web.HTTPException as refused:
            self.pings.append((None, refused.status))
            raise
        self.pings.append((json.loads(raw).get("transaction_id"), response.status))
        return response


@dataclass
class Target:
    url: str
    registration: dict[str, Any]
    as_port: int


if TARGET == "ours":

    @pytest.fixture
    async def target(make_homeserver, tmp_path) -> Target:
        as_port = free_port()
        path, registration = write_registration(tmp_path, as_port)
        hs = await make_homeserver(app_service_config_files=[path])
        return Target(hs.base_url("client"), registration, as_port)

else:

    @pytest.fixture
    async def target(tmp_path) -> AsyncIterator[Target]:
        from scripts.synapse.run_synapse import start_synapse

        as_port = free_port()
        path, registration = write_registration(tmp_path, as_port)
        server = await asyncio.to_thread(start_synapse, tmp_path / "synapse",
                                         extra_config={"app_service_config_files": [path]})
        try:
            yield Target(server.url, registration, as_port)
        finally:
            await asyncio.to_thread(server.stop)
            shutil.rmtree(server.workdir, ignore_errors=True)


async def server_name(base_url: str, as_token: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/_matrix/client/v3/account/whoami",
                               headers={"Authorization": f"Bearer {as_token}"}) as resp:
            assert resp.status == 200, await resp.text()
            return (await resp.json())["user_id"].split(":", 1)[1]


@pytest.fixture
async def bridge(target: Target, tmp_path) -> AsyncIterator[RecordingAppService]:
    registration = target.registration
    domain = await server_name(target.url, registration["as_token"])
    service = RecordingAppService(
        server=target.url, domain=domain, as_token=registration["as_token"], hs_token=registration["hs_token"],
        bot_localpart=registration["sender_localpart"], id=registration["id"],
        state_store=FileASStateStore(path=str(tmp_path / "mx-state.json"), binary=False),
        ephemeral_events=True,
    )
    await service.start(host="127.0.0.1", port=target.as_port)
    try:
        yield service
    finally:
        await service.stop()
        log = os.environ.get("MAUTRIX_CALLS_LOG")
        if log:
            test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
            with open(log, "a") as out:
                for call in service.calls:
                    out.write(json.dumps({"target": TARGET, "test": test, **call.__dict__}) + "\n")


class Human:
    """A plain client-server user, to see the bridge's effects from the outside."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, body: dict[str, Any]):
        self.session, self.base_url = session, base_url
        self.user_id, self.token = body["user_id"], body["access_token"]

    async def call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        async with self.session.request(method, f"{self.base_url}/_matrix/client/v3{path}", json=body,
                                        params=params or None,
                                        headers={"Authorization": f"Bearer {self.token}"}) as resp:
            data = await resp.json()
            assert resp.status == 200, f"{method} {path} -> {resp.status} {data}"
            return data


@pytest.fixture
async def human(target: Target) -> AsyncIterator[Human]:
    async with aiohttp.ClientSession() as session:
        body = {"username": f"human{secrets.token_hex(4)}", "password": "mautrix interop",
                "auth": {"type": "m.login.dummy"}}
        async with session.post(f"{target.url}/_matrix/client/v3/register", json=body) as resp:
            assert resp.status == 200, await resp.text()
            yield Human(session, target.url, await resp.json())


async def ghost_joins_a_room_of(bridge: AppService, human: Human) -> tuple[RoomID, Any]:
    room_id = (await human.call("POST", "/createRoom", {"preset": "public_chat", "name": "bridged"}))["room_id"]
    ghost = bridge.intent.user(UserID(f"@mxghost_alice:{bridge.domain}"))
    await ghost.ensure_registered()
    await ghost.ensure_joined(RoomID(room_id))
    return RoomID(room_id), ghost


async def test_the_bridge_pings_the_homeserver_and_is_pinged_back(bridge):
    # mautrix reads a duration of 0 ms as missing (-1); any other failure raises.
    duration_ms = await bridge.ping_self("mautrix-interop-1")
    assert duration_ms >= -1
    assert bridge.pings == [("mautrix-interop-1", 200)]


async def test_a_ghost_user_is_registered_and_joins_a_room(bridge, human):
    room_id, ghost = await ghost_joins_a_room_of(bridge, human)
    joined = await human.call("GET", f"/rooms/{room_id}/joined_members")
    assert ghost.mxid in joined["joined"]
    assert (await ghost.whoami()).user_id == ghost.mxid


async def test_the_bot_receives_a_message_in_a_transaction_and_replies_as_the_ghost(bridge, human):
    room_id, ghost = await ghost_joins_a_room_of(bridge, human)
    replied: asyncio.Queue[tuple[MessageEvent, str]] = asyncio.Queue()

    @bridge.matrix_event_handler
    async def on_event(event: Event) -> None:
        if event.type == EventType.ROOM_MESSAGE and event.sender == human.user_id:
            reply_id = await ghost.send_text(event.room_id, f"pong: {event.content.body}")
            await replied.put((event, reply_id))

    await human.call("PUT", f"/rooms/{room_id}/send/m.room.message/ping1", {"msgtype": "m.text", "body": "ping"})
    event, reply_id = await asyncio.wait_for(replied.get(), REPLY_TIMEOUT_S)
    assert event.content.body == "ping"
    assert reply_id.startswith("$")
    messages = await human.call("GET", f"/rooms/{room_id}/messages", dir="b", limit="10")
    replies = [e for e in messages["chunk"] if e["type"] == "m.room.message" and e["sender"] == ghost.mxid]
    assert [e["content"]["body"] for e in replies] == ["pong: ping"]
