"""Long admin jobs (room deletion, history purges) run in the background with a persisted status.

A job's status is `scheduled`, `active`, `complete` or `failed`, stored in `admin_tasks`, so
that the status endpoints answer after a restart. Jobs are idempotent: the ones a restart
interrupted are run again from the start when the server comes back.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.clock import Clock
from storage.stores.admin import AdminStore

logger = logging.getLogger(__name__)

# (task_id, params) -> the result to store.
Job = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class AdminTaskRunner:
    def __init__(self, store: AdminStore, clock: Clock):
        self._store = store
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._running: set[asyncio.Task[None]] = set()

    def register(self, action: str, job: Job) -> None:
        self._jobs[action] = job

    async def start(self) -> None:
        """Resume the jobs a previous run left unfinished."""
        for task in await self._store.get_unfinished_tasks():
            if task.action in self._jobs:
                logger.info("Resuming admin task %s (%s %s)", task.task_id, task.action, task.resource_id)
                self._spawn(task.task_id, task.action, task.params)

    async def stop(self) -> None:
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def schedule(self, action: str, resource_id: str, params: dict[str, Any]) -> str:
        """Record a job and start it; returns its ID."""
        task_id = secrets.token_urlsafe(12)
        await self._store.create_task(task_id, action, resource_id, params, self._clock.time_ms())
        self._spawn(task_id, action, params)
        return task_id

    async def list_tasks(self, *, action: str | None, resource_id: str | None, status: str | None,
                         max_timestamp: int | None) -> dict[str, Any]:
        """`GET /v1/scheduled_tasks`, in Synapse's shape."""
        tasks = await self._store.list_tasks(action=action, resource_id=resource_id, status=status,
                                             max_timestamp=max_timestamp)
        return {"scheduled_tasks": [
            {"id": t.task_id, "action": t.action, "status": t.status, "timestamp_ms": t.updated_ts,
             "resource_id": t.resource_id, "result": t.result, "error": t.error} for t in tasks]}

    async def wait_idle(self) -> None:
        """Wait until no job is running (tests, shutdown of the CLI)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    def _spawn(self, task_id: str, action: str, params: dict[str, Any]) -> None:
        task = asyncio.create_task(self._run(task_id, action, params))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, task_id: str, action: str, params: dict[str, Any]) -> None:
        await self._store.update_task(task_id, status="active", now_ms=self._clock.time_ms())
        try:
            result = await self._jobs[action](task_id, params)
        except asyncio.CancelledError:
            raise  # left "active": the next start resumes it
        except Exception as e:
            logger.exception("Admin task %s (%s) failed", task_id, action)
            await self._store.update_task(task_id, status="failed", now_ms=self._clock.time_ms(), error=str(e))
            return
        await self._store.update_task(task_id, status="complete", now_ms=self._clock.time_ms(), result=result)
        logger.info("Admin task %s (%s) complete: %s", task_id, action, result)

    async def progress(self, task_id: str, result: dict[str, Any]) -> None:
        """Store a job's partial result while it runs."""
        await self._store.update_task(task_id, status="active", now_ms=self._clock.time_ms(), result=result)
