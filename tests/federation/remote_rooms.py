"""Rooms shared with a fake remote server, for the outbound and reading tests.

`join_remote_user` puts a remote user into one of our rooms the way an accepted remote join ends
up: an m.room.member event built, signed by the remote server's key and authorised against the
room's state, persisted through our ordinary persist path (joins over federation are built
elsewhere). `TransactionInbox` is the remote's `PUT /send/{txnId}`: it records transactions,
deduplicates re-sends by transaction ID as real servers do, and can be told to fail or to hold.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from aiohttp import web

from federation.x_matrix import parse_x_matrix
from homeserver.clock import Clock
from homeserver.events.event import Event
from homeserver.rooms.sender import RoomEventSender
from homeserver.server import HomeServer
from tests.support.rooms import User
from tests.support.fake_remote import FakeRemoteServer


def remote_sender(hs: HomeServer, remote: FakeRemoteServer) -> RoomEventSender:
    """Builds events as `remote` would (its name, its key) and persists them through `hs`'s persist path."""
    return RoomEventSender(remote.server_name, remote.signing_key, hs.event_store, hs.room_heads, hs.persister,
                           Clock())


async def join_remote_user(hs: HomeServer, remote: FakeRemoteServer, room_id: str, localpart: str = "bob") -> Event:
    user_id = f"@{localpart}:{remote.server_name}"
    return await remote_sender(hs, remote).send(room_id, user_id, "m.room.member", {"membership": "join"},
                                                state_key=user_id)


async def local_user(session: Any, localpart: str) -> User:
    """Register a user of ours over the client API of the session's server."""
    body = {"username": localpart, "password": "correct horse", "auth": {"type": "m.login.dummy"}}
    async with session.post("/_matrix/client/v3/register", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return User(session, await resp.json())


class TransactionInbox:
    """The fake remote's /send endpoint."""

    def __init__(self, remote: FakeRemoteServer):
        self.remote = remote
        self.accepted: dict[str, dict[str, Any]] = {}  # txn_id -> body, in arrival order
        self.attempts: list[tuple[str, list[str]]] = []  # (txn_id, PDU event IDs) of every request
        self.fail_with: int | None = None  # answer this status instead of accepting
        self.hold: asyncio.Event | None = None  # when set, requests wait for it
        self.resent_changed: list[str] = []  # txn IDs re-sent with different PDUs (must stay empty)
        self.origins: set[str] = set()
        self.pdu_error: str | None = None  # when set, every accepted PDU is answered with this error
        remote.route("PUT", "/_matrix/federation/v1/send/{txnId}", self._send)

    async def _send(self, request: web.Request) -> web.Response:
        txn_id = request.match_info["txnId"]
        auth = parse_x_matrix(request.headers["Authorization"])
        self.origins.add(auth.origin)
        body = await request.json()
        ids = [pdu_id(pdu) for pdu in body.get("pdus", [])]
        self.attempts.append((txn_id, ids))
        fail_with = self.fail_with  # as when the request arrived, even if it is held
        if self.hold is not None:
            await self.hold.wait()
        if fail_with is not None:
            return web.json_response({"errcode": "M_UNKNOWN", "error": "down"}, status=fail_with)
        if txn_id in self.accepted:
            if [pdu_id(p) for p in self.accepted[txn_id]["pdus"]] != ids:
                self.resent_changed.append(txn_id)
            return web.json_response({"pdus": {}})
        self.accepted[txn_id] = body
        result = {"error": self.pdu_error} if self.pdu_error else {}
        return web.json_response({"pdus": {i: result for i in ids}})

    @property
    def pdus(self) -> list[dict[str, Any]]:
        """Every PDU of every accepted transaction, in arrival order."""
        return [pdu for body in self.accepted.values() for pdu in body["pdus"]]

    @property
    def pdu_ids(self) -> list[str]:
        return [pdu_id(pdu) for pdu in self.pdus]

    @property
    def edus(self) -> list[dict[str, Any]]:
        return [edu for body in self.accepted.values() for edu in body["edus"]]

    def duplicates(self) -> dict[str, int]:
        return {i: n for i, n in Counter(self.pdu_ids).items() if n > 1}

    async def wait_for(self, predicate, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out; accepted {len(self.pdu_ids)} PDUs"
            await asyncio.sleep(0.02)


def pdu_id(pdu: dict[str, Any]) -> str:
    """The event ID of a PDU of a room of version 11 (the default): its reference hash."""
    from homeserver.events.hashing import compute_event_id
    from homeserver.events.room_versions import get_room_version

    if "event_id" in pdu:
        return pdu["event_id"]
    return compute_event_id(pdu, get_room_version("11"))  # the default room version
