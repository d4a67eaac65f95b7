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
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable


class Listener:
    __slots__ = ("_event", "user_id", "room_ids")

    def __init__(self, user_id: str, room_ids: frozenset[str]):
        self._event = asyncio.Event()
        self.user_id = user_id
        self.room_ids = room_ids

    def wake(self) -> None:
        self._event.set()

    async def wait(self, timeout_s: float) -> bool:
        """True when woken, False on timeout."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
            return True
        except TimeoutError:
            return False


class Notifier:
    def __init__(self) -> None:
        self._by_user: dict[str, set[Listener]] = defaultdict(set)
        self._by_room: dict[str, set[Listener]] = defaultdict(set)
        # Bumped by every notification, listened to or not. Every stream moves before it notifies,
        # so a position read while the generation was G misses only changes whose notification
        # is still to come (and will wake whoever listens): readers may reuse it until G changes.
        self.generation = 0

    @contextlib.asynccontextmanager
    async def listen(self, user_id: str, room_ids: Iterable[str]) -> AsyncIterator[Listener]:
        listener = Listener(user_id, frozenset(room_ids))
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

    def listener_count(self) -> int:
        return sum(len(v) for v in self._by_user.values())
