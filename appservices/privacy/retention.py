"""The retention engine: idle accounts are warned then erased; room history older than the room's
(clamped) `m.room.retention` lifetime is purged. Decisions are pure functions of the data and an
injected clock; `RetentionEngine.run` fetches, decides, acts and logs the run with its counts.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from appservices.privacy.config import RetentionConfig
from appservices.privacy.hsclient import HomeserverClient, HomeserverError, q
from appservices.privacy.store import PrivacyStore

logger = logging.getLogger(__name__)
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Account:
    user_id: str
    last_active_ts: int  # last seen, or creation when never seen
    admin: bool = False
    deactivated: bool = False
    appservice: bool = False


def inactivity_decision(account: Account, warned_ts: int | None, now_ms: int, policy: RetentionConfig) -> str | None:
    """'warn', 'erase', 'clear' (active again after a warning) or None."""
    if policy.inactivity_days is None or account.admin or account.deactivated or account.appservice:
        return None
    if warned_ts is not None and account.last_active_ts > warned_ts:
        return "clear"
    idle = now_ms - account.last_active_ts
    limit = policy.inactivity_days * DAY_MS
    notice = policy.warn_days_before * DAY_MS
    if warned_ts is None:
        return "warn" if idle >= limit - notice else None
    if idle >= limit and now_ms - warned_ts >= notice:
        return "erase"
    return None


def room_lifetime_ms(retention: dict[str, Any] | None, policy: RetentionConfig, public: bool) -> int | None:
    """How long the room keeps history: its `max_lifetime` clamped to the server's limits, else the default."""
    if public and policy.skip_public_rooms:
        return None
    lifetime = (retention or {}).get("max_lifetime")
    if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime <= 0:
        if policy.room_default_lifetime_days is None:
            return None
        lifetime = int(policy.room_default_lifetime_days * DAY_MS)
    lifetime = max(lifetime, int(policy.room_min_lifetime_days * DAY_MS))
    if policy.room_max_lifetime_days is not None:
        lifetime = min(lifetime, int(policy.room_max_lifetime_days * DAY_MS))
    return lifetime


class RetentionEngine:
    def __init__(self, hs: HomeserverClient, store: PrivacyStore, policy: RetentionConfig, clock: Callable[[], int],
                 warn: Callable[[str, int, int], Awaitable[None]], erase: Callable[[str], Awaitable[Any]],
                 bot_user_id: str, poll_s: float = 0.5):
        self._hs = hs
        self._store = store
        self._policy = policy
        self._clock = clock
        self._warn = warn  # (user_id, last_active_ts, erase_after_ts)
        self._erase = erase
        self._bot = bot_user_id
        self._poll_s = poll_s

    async def _accounts(self) -> list[Account]:
        accounts: list[Account] = []
        offset: Any = 0
        while True:
            page = await self._hs.admin("GET", "/v2/users", limit=500, deactivated="false", **{"from": offset})
            for u in page.get("users", []):
                created = u.get("creation_ts") or 0
                created_ms = created * 1000 if created and created < 10**11 else created
                accounts.append(Account(u["name"], u.get("last_seen_ts") or created_ms, bool(u.get("admin")),
                                        bool(u.get("deactivated")), bool(u.get("appservice_id"))
                                        or u["name"] == self._bot))
            offset = page.get("next_token")
            if offset is None:
                return accounts

    async def _rooms(self) -> list[dict[str, Any]]:
        rooms: list[dict[str, Any]] = []
        offset: Any = 0
        while True:
            page = await self._hs.admin("GET", "/v1/rooms", limit=500, **{"from": offset})
            rooms.extend(page.get("rooms", []))
            offset = page.get("next_batch")
            if offset is None:
                return rooms

    async def _purged(self, purge_id: str) -> str:
        while True:
            status = (await self._hs.admin("GET", f"/v1/purge_history_status/{q(purge_id)}")).get("status")
            if status in ("complete", "failed"):
                return status
            await asyncio.sleep(self._poll_s)

    async def run(self, trigger: str) -> dict[str, Any]:
        run_id = "RR" + secrets.token_hex(6).upper()
        now = self._clock()
        await self._store.start_retention_run(run_id, now, trigger)
        counts: dict[str, Any] = {"users_checked": 0, "warned": 0, "erased": 0, "cleared": 0, "rooms_checked": 0,
                                  "rooms_purged": 0, "errors": 0}
        warnings = await self._store.inactivity_warnings()
        for account in await self._accounts():
            counts["users_checked"] += 1
            decision = inactivity_decision(account, warnings.get(account.user_id), now, self._policy)
            try:
                if decision == "warn":
                    erase_after = max(account.last_active_ts + (self._policy.inactivity_days or 0) * DAY_MS,
                                      now + self._policy.warn_days_before * DAY_MS)
                    await self._warn(account.user_id, account.last_active_ts, erase_after)
                    await self._store.set_inactivity_warning(account.user_id, now, account.last_active_ts)
                    counts["warned"] += 1
                elif decision == "erase":
                    await self._erase(account.user_id)
                    await self._store.set_inactivity_warning(account.user_id, None, None)
                    counts["erased"] += 1
                elif decision == "clear":
                    await self._store.set_inactivity_warning(account.user_id, None, None)
                    counts["cleared"] += 1
            except HomeserverError:
                logger.exception("retention: %s of %s failed", decision, account.user_id)
                counts["errors"] += 1
        for room in await self._rooms():
            counts["rooms_checked"] += 1
            room_id = room["room_id"]
            try:
                state = await self._hs.admin("GET", f"/v1/rooms/{q(room_id)}/state", type="m.room.retention")
                events = [e for e in state.get("state", []) if e.get("type") == "m.room.retention"]
                public = room.get("join_rules") == "public" or bool(room.get("public"))
                lifetime = room_lifetime_ms(events[0]["content"] if events else None, self._policy, public)
                if lifetime is None:
                    continue
                started = await self._hs.admin("POST", f"/v1/purge_history/{q(room_id)}",
                                               {"purge_up_to_ts": now - lifetime, "delete_local_events": True})
                status = await self._purged(started["purge_id"])
                counts["rooms_purged" if status == "complete" else "errors"] += 1
            except HomeserverError as exc:
                if exc.status == 400 and "no event" in exc.error.lower():
                    continue  # nothing old enough to purge
                logger.warning("retention: purging %s failed: %s", room_id, exc)
                counts["errors"] += 1
        await self._store.finish_retention_run(run_id, self._clock(), counts)
        return {"run_id": run_id, **counts}
