"""Rooms joined over federation with partial state, as the client API sees them.

Such a room is usable at once (sending, /messages, /sync) while federation fetches its full state
in the background (federation/partial_state.py). Requests that need the whole member list wait for
it, as Synapse's do: `wait_for_full_state` returns once the room is no longer partial. The wait is
woken by `PartialStateRoomCompleted` on the bus, which also wakes /sync long polls on the room, and
re-checks the store every `POLL_S` (another process may have completed it).
"""

from __future__ import annotations

import asyncio

from homeserver.streams.notifier import Notifier
from homeserver.streams.updates import PartialStateRoomCompleted
from storage.stores.partial_state import PartialStateStore

POLL_S = 5.0


class PartialStateRooms:
    def __init__(self, store: PartialStateStore, notifier: Notifier, *, poll_s: float = POLL_S):
        self._store = store
        self._notifier = notifier
        self._poll_s = poll_s
        self._waiters: dict[str, asyncio.Event] = {}

    async def is_partial(self, room_id: str) -> bool:
        return await self._store.is_partial(room_id)

    async def wait_for_full_state(self, room_id: str) -> None:
        """Return once the room's full state is known here (at once for any other room)."""
        while await self._store.is_partial(room_id):
            waiter = self._waiters.setdefault(room_id, asyncio.Event())
            try:
                async with asyncio.timeout(self._poll_s):
                    await waiter.wait()
            except TimeoutError:
                pass

    def on_completed(self, update: PartialStateRoomCompleted) -> None:
        waiter = self._waiters.pop(update.room_id, None)
        if waiter is not None:
            waiter.set()
        self._notifier.notify_room(update.room_id)
