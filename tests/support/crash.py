"""Killing a homeserver process mid-send: what kill -9 tests share."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import urllib.request
from urllib.parse import quote

import aiohttp


def wait_for_versions(base_url: str, proc: subprocess.Popen, deadline_s: float = 30) -> None:
    """Block until the server at `base_url` answers /versions (it must not exit meanwhile)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            urllib.request.urlopen(base_url + "/_matrix/client/versions", timeout=1).read()
            return
        except OSError:
            assert proc.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)


async def send_until_killed(user, room_id: str, proc: subprocess.Popen, *, at_least: int, txn_prefix: str,
                            body_prefix: str) -> dict[str, str]:
    """Send messages one after another, kill -9 the server once `at_least` were acknowledged, and
    return {txn_id: event_id} of every acknowledged send, in order."""
    acknowledged: dict[str, str] = {}

    async def keep_sending() -> None:
        for i in range(10_000):
            txn_id = f"{txn_prefix}{i}"
            try:
                body = await user.call("PUT", f"/rooms/{quote(room_id)}/send/m.room.message/{txn_id}",
                                       {"msgtype": "m.text", "body": f"{body_prefix}{i}"})
            except (aiohttp.ClientError, AssertionError, ValueError):
                return
            acknowledged[txn_id] = body["event_id"]

    sender = asyncio.create_task(keep_sending())
    while len(acknowledged) < at_least:
        await asyncio.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    await sender
    return acknowledged
