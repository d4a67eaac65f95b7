"""Helpers for tests of our own admin endpoints (`/_huiskamer/admin/v1`)."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.admin.helpers import Caller, new_admin, new_caller, q  # noqa: F401  (re-exported)

OWN = "/_huiskamer/admin/v1"


async def own(caller: Caller, method: str, path: str, body: Any = None, expect: int | None = 200,
              **params: Any) -> Any:
    """Call `/_huiskamer/admin/v1{path}` as `caller`."""
    return await call_with_token(caller.client, caller.token, method, OWN + path, body, expect, **params)


async def call_with_token(client: aiohttp.ClientSession, token: str, method: str, url: str, body: Any = None,
                          expect: int | None = 200, **params: Any) -> Any:
    query = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}
    async with client.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"},
                              params=query or None) as resp:
        data = await resp.json()
        if expect is not None:
            assert resp.status == expect, f"{method} {url} -> {resp.status} {data}"
        return data


async def events_ndjson(caller: Caller, user_id: str, **params: Any) -> tuple[str, list[dict[str, Any]]]:
    """The content type and the parsed lines of a user's event export."""
    import json

    async with caller.client.get(f"{OWN}/users/{q(user_id)}/events", params={k: str(v) for k, v in params.items()},
                                 headers={"Authorization": f"Bearer {caller.token}"}) as resp:
        assert resp.status == 200, await resp.text()
        text = await resp.text()
        return resp.headers["Content-Type"], [json.loads(line) for line in text.splitlines() if line]


async def wait_for_task(caller: Caller, task_id: str) -> dict[str, Any]:
    import asyncio

    for _ in range(1500):
        body = await own(caller, "GET", f"/tasks/{task_id}")
        if body["status"] in ("complete", "failed"):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"task {task_id} never finished")
