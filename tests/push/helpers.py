"""Helpers for push tests: unread counts through /sync, and a push gateway on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from tests.support.rooms import User

GATEWAY_PATH = "/_matrix/push/v1/notify"


async def room_counts(user: User, room_id: str, *, threads: bool = False) -> dict[str, Any]:
    """The room's entry of an initial /sync: {"unread_notifications": ..., maybe "unread_thread_notifications"}."""
    timeline: dict[str, Any] = {"limit": 1}
    if threads:
        timeline["unread_thread_notifications"] = True
    body = await user.call("GET", "/sync", filter=json.dumps({"room": {"timeline": timeline}}))
    room = body["rooms"]["join"][room_id]
    return {k: v for k, v in room.items() if k.startswith("unread_")}


async def unread(user: User, room_id: str) -> tuple[int, int]:
    """(notification_count, highlight_count) of the room in an initial /sync."""
    counts = (await room_counts(user, room_id))["unread_notifications"]
    return counts["notification_count"], counts["highlight_count"]


async def read(user: User, room_id: str, event_id: str, thread_id: str | None = None,
               receipt_type: str = "m.read") -> None:
    body = {"thread_id": thread_id} if thread_id is not None else {}
    await user.call("POST", f"/rooms/{quote(room_id)}/receipt/{receipt_type}/{quote(event_id)}", body)


class PushGateway:
    """A push gateway on loopback that records every /notify body and answers as told."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        # Called with the request body; returns (status, JSON answer). Default: accept everything.
        self.answer: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]] = lambda body: (200, {"rejected": []})
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._arrived = asyncio.Event()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(GATEWAY_PATH, self._notify)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}{GATEWAY_PATH}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _notify(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append(body)
        self._arrived.set()
        status, answer = self.answer(body)
        return web.json_response(answer, status=status)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least `count` requests arrived, then a little longer for unexpected extras."""
        async def enough() -> None:
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(enough(), timeout)
        await asyncio.sleep(0.3)
        return [body["notification"] for body in self.received]


def pusher_body(url: str, pushkey: str = "key-1", app_id: str = "org.example.app", **extra: Any) -> dict[str, Any]:
    data = extra.pop("data", {"url": url})
    return {"kind": "http", "app_id": app_id, "pushkey": pushkey, "app_display_name": "Example",
            "device_display_name": "Phone", "lang": "en", "data": data, **extra}
