"""Simplified sliding sync over HTTP against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.rooms.helpers import User, new_user

PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


async def sliding(user: User, body: dict[str, Any], pos: str | None = None, expect: int = 200,
                  timeout: int | None = None) -> dict:
    params: dict[str, Any] = {}
    if pos is not None:
        params["pos"] = pos
    if timeout is not None:
        params["timeout"] = timeout
    return await user.call("POST", PATH, body, expect=expect, **params)


def room_list(ranges=((0, 19),), timeline_limit: int = 1, required_state=(), **extra: Any) -> dict:
    return {"ranges": [list(r) for r in ranges], "timeline_limit": timeline_limit,
            "required_state": [list(p) for p in required_state], **extra}


def bodies(room: dict) -> list[str]:
    return [e["content"].get("body") for e in room.get("timeline", []) if e["type"] == "m.room.message"]


def state_of(room: dict) -> set[tuple[str, str]]:
    return {(e["type"], e["state_key"]) for e in room.get("required_state", [])}


async def test_the_endpoint_is_advertised_in_versions(client):
    async with client.get("/_matrix/client/versions") as resp:
        body = await resp.json()
    assert body["unstable_features"]["org.matrix.simplified_msc3575"] is True


async def test_a_list_orders_rooms_by_recency_and_counts_them(client):
    alice = await new_user(client, "alice")
    rooms = [await alice.create_room(name=f"r{i}") for i in range(3)]
    await alice.send(rooms[0], "newest")
    body = await sliding(alice, {"lists": {"all": room_list(ranges=[(0, 1)])}})
    assert body["lists"]["all"]["count"] == 3
    assert set(body["rooms"]) == {rooms[0], rooms[2]}
    first, second = body["rooms"][rooms[0]], body["rooms"][rooms[2]]
    assert first["bump_stamp"] > second["bump_stamp"]
    assert bodies(first) == ["newest"]
    assert first["initial"] is True and first["name"] == "r0"
    assert first["joined_count"] == 1 and first["invited_count"] == 0
    assert first["notification_count"] == 0 and first["highlight_count"] == 0
    assert first["limited"] is True and first["prev_batch"]
    assert first["num_live"] == 0
    assert isinstance(body["pos"], str)
