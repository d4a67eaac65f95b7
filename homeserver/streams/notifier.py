"""Wakes waiting /sync requests the moment something they care about changes.

A listener registers for a user and a set of rooms *before* checking for updates, so
a change that lands between the check and the wait is never missed. Notifications
name rooms (new events, receipts, typing) or users (invites, account data, to-device).
An in-process implementation; a Redis-backed one can replace it behind the same
methods when the homeserver runs as several processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable

from prometheus_client import CollectorRegistry, Gauge, Histogram

# Long-poll waits run up to the five-minute /sync cap.
_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Listener:
    __slots__ = ("_event", "_notifier", "user_id", "room_ids")

    def __init__(self, user_id: str, room_ids: frozenset[str], notifier: Notifier | None = None):
        self._event = asyncio.Event()
        self._notifier = notifier
        self.user_id = user_id
        self.room_ids = room_ids

    def wake(self) -> None:
        self._event.set()

    async def wait(self, timeout_s: float) -> bool:
        """True when woken, False on timeout."""
        notifier = self._notifier
        if notifier is not None:
            notifier.waiting += 1
        started = time.monotonic()
        woken = False
        try:
            async with asyncio.timeout(timeout_s):
                await self._event.wait()
            woken = True
            return True
        except TimeoutError:
            return False
        finally:
            if notifier is not None:
                notifier.waiting -= 1
                if notifier._wait_seconds is not None:
                    outcome = "woken" if woken else "timeout"
                    notifier._wait_seconds.labels(outcome).observe(time.monotonic() - started)


class Notifier:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._by_user: dict[str, set[Listener]] = defaultdict(set)
        self._by_room: dict[str, set[Listener]] = defaultdict(set)
        # Requests inside Listener.wait right now: the long-polls being held open.
        self.waiting = 0
        self._wait_seconds = _metrics(registry, self)
        # Bumped by every notification, listened to or not. Every stream moves before it notifies,
        # so a position read while the generation was G misses only changes whose notification
        # is still to come (and will wake whoever listens): readers may reuse it until G changes.
        self.generation = 0

    @contextlib.asynccontextmanager
    async def listen(self, user_id: str, room_ids: Iterable[str]) -> AsyncIterator[Listener]:
        listener = Listener(user_id, frozenset(room_ids), self)
        self._by_user[user_id].add(listener)
        for room_id in listener.room_ids:
            self._by_room[room_id].add(listener)
        try:
            yield listener
        finally:
            self._discard(self._by_user, user_id, listener)
            for room_id in listener.room_ids:
                self._discard(self._by_room, room_id, listener)

    @staticmethod
    def _discard(index: dict[str, set[Listener]], key: str, listener: Listener) -> None:
        listeners = index.get(key)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del index[key]

    def notify_room(self, room_id: str) -> None:
        self.generation += 1
        for listener in self._by_room.get(room_id, ()):
            listener.wake()

    def notify_users(self, user_ids: Iterable[str]) -> None:
        self.generation += 1
        for user_id in user_ids:
            for listener in self._by_user.get(user_id, ()):
                listener.wake()


def _metrics(registry: CollectorRegistry | None, notifier: Notifier) -> Histogram | None:
    if registry is None:
        return None
    # A server restarted in the same process (tests) builds a new notifier on the same registry.
    existing = getattr(registry, "_notifier_metrics", None)
    if existing is None:
        existing = (
            Histogram("sync_wait_seconds", "How long a long-poll (/sync, sliding sync) waited, by how it ended",
                      ("outcome",), buckets=_WAIT_BUCKETS, registry=registry),
            Gauge("sync_long_polls_active", "Long-polls waiting for news right now", registry=registry),
        )
        registry._notifier_metrics = existing  # type: ignore[attr-defined]
    wait_seconds, active = existing
    active.set_function(lambda: notifier.waiting)
    return wait_seconds
