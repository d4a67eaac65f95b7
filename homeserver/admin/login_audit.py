"""The login audit log: who logged in, and from which new address or client, kept for a limited time.

Logins are recorded as they happen. New IP addresses and user agents of a device are found
in the batches of last-seen sightings the auth service writes every few seconds, so the
request path pays nothing. Entries older than `admin.login_audit_max_age_days` are deleted
hourly: the log is personal data and must not outlive its purpose.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from homeserver.admin.common import existing_local_user, page
from homeserver.clock import Clock
from storage.stores.accounts import AccountStore
from storage.stores.login_audit import LoginAuditStore

logger = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000
PRUNE_INTERVAL_S = 3600.0


class LoginAuditService:
    def __init__(self, server_name: str, store: LoginAuditStore, accounts: AccountStore, clock: Clock, *,
                 max_age_days: int):
        self._server_name = server_name
        self._store = store
        self._accounts = accounts
        self._clock = clock
        self._max_age_ms = max_age_days * DAY_MS
        self._pruner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._pruner = asyncio.create_task(self._prune_periodically())

    async def stop(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            self._pruner = None

    async def on_login(self, user_id: str, device_id: str, ip: str, user_agent: str) -> None:
        await self._store.record_login(user_id, device_id, ip, user_agent[:512], self._clock.time_ms())

    async def on_sightings(self, entries: list[tuple[str, str | None, str, str, int]]) -> None:
        await self._store.record_sightings(entries)

    async def entries(self, user_id: str, *, offset: int, limit: int, backwards: bool) -> dict[str, Any]:
        """`GET /v1/users/{userId}/login_audit`: the user's audit entries, oldest first unless `dir=b`."""
        await existing_local_user(self._accounts, self._server_name, user_id)
        rows, total = await self._store.list_entries(user_id, offset=offset, limit=limit, backwards=backwards)
        return page(rows, total, offset, limit, "entries")

    async def all_entries(self, user_id: str) -> list[dict[str, Any]]:
        return await self._store.all_entries(user_id)

    async def prune(self) -> int:
        """Delete entries older than the configured age; returns how many went."""
        return await self._store.prune(self._clock.time_ms() - self._max_age_ms)

    async def _prune_periodically(self) -> None:
        while True:
            try:
                removed = await self.prune()
                if removed:
                    logger.info("Forgot %d login audit entries older than the configured age", removed)
            except Exception:
                logger.exception("Could not prune the login audit log")
            await asyncio.sleep(PRUNE_INTERVAL_S)
