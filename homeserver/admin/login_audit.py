"""The login audit log: who logged in, and from which new address or client, kept for a limited time.

Logins are recorded as they happen. New IP addresses and user agents of a device are found
in the batches of last-seen sightings the auth service writes every few seconds, so the
request path pays nothing. Entries older than `admin.login_audit_max_age_days` are deleted
hourly: the log is personal data and must not outlive its purpose.
"""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.admin.common import existing_local_user, page
from homeserver.clock import Clock
from homeserver.errors import invalid_param
from homeserver.periodic import prune_periodically
from storage.stores.accounts import AccountStore
from storage.stores.login_audit import LoginAuditEntry, LoginAuditStore

DAY_MS = 24 * 3600 * 1000
PRUNE_INTERVAL_S = 3600.0
# A waiting feed request looks at the table at least this often, so logins recorded by another
# process (which cannot wake it) still arrive within a few seconds.
FEED_RECHECK_S = 1.0
MAX_FEED_TIMEOUT_MS = 60_000


class LoginAuditService:
    def __init__(self, server_name: str, store: LoginAuditStore, accounts: AccountStore, clock: Clock, *,
                 max_age_days: int):
        self._server_name = server_name
        self._store = store
        self._accounts = accounts
        self._clock = clock
        self._max_age_ms = max_age_days * DAY_MS
        self._pruner: asyncio.Task[None] | None = None
        self._login_recorded = asyncio.Condition()

    async def start(self) -> None:
        self._pruner = asyncio.create_task(prune_periodically(
            self.prune, "login audit entries older than the configured age", PRUNE_INTERVAL_S))

    async def stop(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            self._pruner = None

    async def on_login(self, user_id: str, device_id: str, ip: str, user_agent: str) -> None:
        await self._store.record_login(user_id, device_id, ip, user_agent[:512], self._clock.time_ms())
        async with self._login_recorded:
            self._login_recorded.notify_all()

    async def on_registration(self, user_id: str, device_id: str, ip: str, user_agent: str) -> None:
        """The session a registration starts is the account's first sign-in: logged, and in the feed."""
        await self._store.record_login(user_id, device_id, ip, user_agent[:512], self._clock.time_ms(),
                                       registration=True)
        async with self._login_recorded:
            self._login_recorded.notify_all()

    async def on_sightings(self, entries: list[tuple[str, str | None, str, str, int]]) -> None:
        await self._store.record_sightings(entries)

    async def entries(self, user_id: str, *, offset: int, limit: int, backwards: bool) -> dict[str, Any]:
        """`GET /v1/users/{userId}/login_audit`: the user's audit entries, oldest first unless `dir=b`."""
        await existing_local_user(self._accounts, self._server_name, user_id)
        rows, total = await self._store.list_entries(user_id, offset=offset, limit=limit, backwards=backwards)
        entries = [{"kind": r.kind, "device_id": r.device_id, "ip": r.ip, "user_agent": r.user_agent, "ts": r.ts}
                   for r in rows]
        return page(entries, total, offset, limit, "entries")

    async def connections(self, user_id: str) -> dict[str, Any]:
        """`GET /_huiskamer/admin/v1/users/{userId}/connections`: IP/user-agent sightings and logins."""
        await existing_local_user(self._accounts, self._server_name, user_id)
        sightings = await self._accounts.get_user_ips(user_id)
        return {
            "connections": [{"device_id": s.device_id or None, "ip": s.ip, "user_agent": s.user_agent,
                             "last_seen_ts": s.last_seen} for s in sightings],
            "logins": [{"device_id": login.device_id or None, "ip": login.ip, "user_agent": login.user_agent,
                        "ts": login.ts, "registration": login.registration}
                       for login in await self._store.logins_of_user(user_id)],
        }

    async def login_feed(self, from_token: str | None, *, timeout_ms: int, limit: int) -> dict[str, Any]:
        """`GET /_huiskamer/admin/v1/logins`: logins after `from_token`, waiting up to `timeout_ms` for one.

        Without a token the answer is the current token and no logins, so a consumer starts from now.
        """
        if from_token is None:
            return {"logins": [], "next_token": str(await self._store.latest_id())}
        after = _parse_feed_token(from_token)
        deadline = self._clock.monotonic() + min(timeout_ms, MAX_FEED_TIMEOUT_MS) / 1000
        while True:
            logins = await self._store.logins_after(after, limit)
            remaining = deadline - self._clock.monotonic()
            if logins or remaining <= 0:
                break
            async with self._login_recorded:
                try:
                    async with asyncio.timeout(min(remaining, FEED_RECHECK_S)):
                        await self._login_recorded.wait()
                except TimeoutError:
                    pass
        next_token = logins[-1].id if logins else after
        return {"logins": [{"user_id": login.user_id, "device_id": login.device_id, "ip": login.ip,
                            "user_agent": login.user_agent, "ts": login.ts, "new_ip": login.new_ip,
                            "new_device": login.new_device, "registration": login.registration}
                           for login in logins],
                "next_token": str(next_token)}

    async def forget_user(self, user_id: str) -> int:
        """Delete the user's whole audit log (erasure); returns how many entries went."""
        return await self._store.delete_user(user_id)

    async def all_entries(self, user_id: str) -> list[LoginAuditEntry]:
        return await self._store.all_entries(user_id)

    async def prune(self) -> int:
        """Delete entries older than the configured age; returns how many went."""
        return await self._store.prune(self._clock.time_ms() - self._max_age_ms)



def _parse_feed_token(token: str) -> int:
    if not token.isdigit():
        raise invalid_param("from: not a token this endpoint gave out")
    return int(token)
