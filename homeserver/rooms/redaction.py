"""Redactions: who may redact what, applying them, and pruning the originals after a while.

A redaction is applied (the target served redacted, with `redacted_because`) in the
transaction that persists it (see rooms/persister.py). The original JSON of the redacted event is kept for
`rooms.redaction_retention_days` (for moderators and abuse reports) and then pruned
for good by a periodic task.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from homeserver.clock import Clock
from homeserver.errors import bad_json, forbidden, not_found
from homeserver.events.event import Event
from homeserver.periodic import prune_periodically
from homeserver.requester import Requester
from homeserver.rooms.power import RoomPower
from homeserver.rooms.sender import RoomEventSender
from homeserver.rooms.transactions import scoped_txn_id
from storage.stores.events import EventStore


class RedactionService:
    def __init__(self, sender: RoomEventSender, events: EventStore, clock: Clock, *,
                 retention_days: int | None, prune_interval_s: float = 3600.0):
        self._sender = sender
        self._events = events
        self._clock = clock
        self._retention_days = retention_days
        self._prune_interval_s = prune_interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._retention_days is not None:
            self._task = asyncio.create_task(prune_periodically(
                self.prune_redacted_originals, "originals of redacted events", self._prune_interval_s))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def redact(self, requester: Requester, room_id: str, event_id: str, body: dict[str, Any],
                     txn_id: str) -> Event:
        """Send an m.room.redaction for `event_id` on the requester's behalf."""
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise bad_json("reason: must be a string")
        txn = (requester.user_id, requester.device_id or "", scoped_txn_id("redact", room_id, event_id, txn_id))
        existing_id = await self._events.get_event_id_for_txn(*txn)
        if existing_id is not None:
            existing = await self._events.get_event(existing_id)
            if existing is not None:
                return existing
        target = await self._events.get_event(event_id)
        if target is None or target.room_id != room_id:
            raise not_found("Event not found")
        if target.sender != requester.user_id:
            state = await self._events.get_current_state_ids(room_id)
            power = await RoomPower.load(self._events, state, await self._sender.room_version(room_id))
            if not power.has_named_level(requester.user_id, "redact"):
                raise forbidden("You may only redact your own events")
        content = {"reason": reason} if reason is not None else {}
        return await self._sender.send(room_id, requester.user_id, "m.room.redaction", content, txn=txn,
                                       redacts=event_id)

    async def prune_redacted_originals(self) -> int:
        """Replace the stored JSON of events redacted before the retention window; returns how many."""
        if self._retention_days is None:
            return 0
        cutoff = self._clock.time_ms() - self._retention_days * 86_400_000
        return await self._events.censor_redacted_events(cutoff)
