"""Helpers for tests where a fake remote server takes part in a room on our server: a local user and
room, the remote joining it through make_join/send_join, transactions sent to us, client reads."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote

from homeserver.events.room_versions import get_room_version
from homeserver.server import HomeServer
from tests.federation.helpers import tls_session, user_with_displayname
from tests.support.fake_remote import FakeRemoteServer
from tests.support.fake_room import RemoteRoomView
from tests.support.tls_ca import TestCA

V1 = "/_matrix/federation/v1"
V2 = "/_matrix/federation/v2"
VERSIONS = "&".join(f"ver={v}" for v in ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"))
_txn_ids = itertools.count(1)


def q(value: str) -> str:
    return quote(value, safe="")


async def fed_request(hs: HomeServer, remote: FakeRemoteServer, method: str, uri: str,
                      content: Any = None) -> tuple[int, Any]:
    return await remote.request(hs.base_url("federation"), hs.config.server_name, method, uri, content)


async def client_call(hs: HomeServer, ca: TestCA, token: str, method: str, path: str, body: Any = None,
                      params: dict[str, str] | None = None) -> tuple[int, Any]:
    async with tls_session(hs, ca) as session:
        async with session.request(method, path, json=body, params=params,
                                   headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status, await resp.json()


async def local_room(hs: HomeServer, ca: TestCA, localpart: str = "alice", **create: Any) -> tuple[dict, str]:
    """A local user (registered) and a public room they created."""
    user = await user_with_displayname(hs, ca, localpart, localpart.capitalize())
    body = {"preset": "public_chat", **create}
    status, answer = await client_call(hs, ca, user["access_token"], "POST", "/_matrix/client/v3/createRoom", body)
    assert status == 200, answer
    return user, answer["room_id"]


async def remote_joins(hs: HomeServer, remote: FakeRemoteServer, view: RemoteRoomView, room_id: str,
                       localpart: str = "bob") -> dict[str, Any]:
    """The remote's user joins our room through make_join + send_join; the view learns the room."""
    view.remote = remote
    user_id = f"@{localpart}:{remote.server_name}"
    status, made = await fed_request(hs, remote, "GET", f"{V1}/make_join/{q(room_id)}/{q(user_id)}?{VERSIONS}")
    assert status == 200, made
    version = get_room_version(made["room_version"])
    view.room_version = version
    join = view.sign_template(made["event"])
    event_id = view.event_id(join)
    status, answer = await fed_request(hs, remote, "PUT", f"{V2}/send_join/{q(room_id)}/{q(event_id)}", join)
    assert status == 200, answer
    view.learn(version, room_id, answer["state"], answer["auth_chain"])
    view.extremities = list(join["prev_events"])
    view.apply(answer["event"])
    return answer


async def send_transaction(hs: HomeServer, remote: FakeRemoteServer, pdus: list[dict[str, Any]],
                           txn_id: str | None = None, edus: list[Any] | None = None,
                           origin: str | None = None) -> tuple[int, Any]:
    body = {"origin": origin or remote.server_name, "origin_server_ts": 1, "pdus": pdus, "edus": edus or []}
    return await fed_request(hs, remote, "PUT", f"{V1}/send/{txn_id or f'txn{next(_txn_ids)}'}", body)


async def timeline_bodies(hs: HomeServer, ca: TestCA, token: str, room_id: str) -> list[tuple[str, Any]]:
    """(sender, body) of the room's messages as the client's /messages shows them, oldest first."""
    status, answer = await client_call(hs, ca, token, "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/messages",
                                       params={"dir": "b", "limit": "100"})
    assert status == 200, answer
    return [(e["sender"], e["content"].get("body")) for e in reversed(answer["chunk"])
            if e["type"] == "m.room.message"]


async def current_state(hs: HomeServer, ca: TestCA, token: str, room_id: str) -> dict[tuple[str, str], dict]:
    status, answer = await client_call(hs, ca, token, "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state")
    assert status == 200, answer
    return {(e["type"], e["state_key"]): e for e in answer}


async def send_message(hs: HomeServer, ca: TestCA, token: str, room_id: str, body: str) -> str:
    txn = f"m{next(_txn_ids)}"
    status, answer = await client_call(hs, ca, token, "PUT",
                                       f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/{txn}",
                                       {"msgtype": "m.text", "body": body})
    assert status == 200, answer
    return answer["event_id"]
