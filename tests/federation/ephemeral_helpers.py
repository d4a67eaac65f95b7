"""Helpers for the typing / receipt / presence EDU tests: a homeserver with fake remotes whose
`/send` is recorded, EDUs built as the spec shows them, and client syncs waited on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from tests.federation.remote_rooms import TransactionInbox
from tests.federation.resident import send_transaction

SYNC = "/_matrix/client/v3/sync"


async def start_with_remotes(make_federating_homeserver, make_remote, count: int = 1):
    """(hs, remotes, inboxes): fake remotes on 127.0.0.2, .3 ... recording what we send them."""
    inboxes: list[TransactionInbox] = []
    remotes = [await make_remote(f"127.0.0.{2 + i}", routes=lambda r: inboxes.append(TransactionInbox(r)))
               for i in range(count)]
    hs = await make_federating_homeserver(min_retry_interval_ms=50)
    hs.outbound.max_retry_s = 0.3
    return hs, remotes, inboxes


def typing_edu(room_id: str, user_id: str, typing: bool = True) -> dict[str, Any]:
    return {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": user_id, "typing": typing}}


def receipt_edu(room_id: str, user_id: str, event_id: str, ts: int = 1234, thread_id: str | None = None,
                receipt_type: str = "m.read") -> dict[str, Any]:
    data: dict[str, Any] = {"ts": ts}
    if thread_id is not None:
        data["thread_id"] = thread_id
    return {"edu_type": "m.receipt",
            "content": {room_id: {receipt_type: {user_id: {"event_ids": [event_id], "data": data}}}}}


def presence_edu(*pushes: dict[str, Any]) -> dict[str, Any]:
    return {"edu_type": "m.presence", "content": {"push": list(pushes)}}


async def send_edus(hs, remote, edus: list[Any], pdus: list[Any] | None = None) -> dict[str, Any]:
    status, body = await send_transaction(hs, remote, pdus or [], edus=edus)
    assert status == 200, body
    return body


async def sync(user, since: str | None = None, timeout_ms: int = 0) -> dict[str, Any]:
    params: dict[str, Any] = {"timeout": timeout_ms, "set_presence": "offline"}
    if since is not None:
        params["since"] = since
    return await user.call("GET", SYNC, **params)


async def sync_until(user, predicate: Callable[[dict[str, Any]], bool], since: str | None = None,
                     deadline_s: float = 20.0) -> dict[str, Any]:
    """Long-poll /sync until a response satisfies `predicate`; that response."""
    deadline = time.monotonic() + deadline_s
    while True:
        response = await sync(user, since, timeout_ms=1000 if since else 0)
        if predicate(response):
            return response
        since = response["next_batch"]
        assert time.monotonic() < deadline, f"no sync response matched; last: {response}"


def ephemeral(response: dict[str, Any], room_id: str, event_type: str) -> list[dict[str, Any]]:
    room = response.get("rooms", {}).get("join", {}).get(room_id, {})
    return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == event_type]


def typing_users(response: dict[str, Any], room_id: str) -> list[str] | None:
    """The room's typing list in this response, None when it carried none."""
    events = ephemeral(response, room_id, "m.typing")
    return events[-1]["content"]["user_ids"] if events else None


def presence_of(response: dict[str, Any], user_id: str) -> dict[str, Any] | None:
    events = [e for e in response.get("presence", {}).get("events", []) if e["sender"] == user_id]
    return events[-1]["content"] if events else None


def edus_of(inbox: TransactionInbox, edu_type: str) -> list[dict[str, Any]]:
    return [edu["content"] for edu in inbox.edus if edu["edu_type"] == edu_type]


async def wait_for_edus(inbox: TransactionInbox, edu_type: str, predicate: Callable[[list[dict[str, Any]]], bool],
                        timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while not predicate(edus_of(inbox, edu_type)):
        assert time.monotonic() < deadline, f"timed out waiting for {edu_type}; got {inbox.edus}"
        await asyncio.sleep(0.02)
    return edus_of(inbox, edu_type)
