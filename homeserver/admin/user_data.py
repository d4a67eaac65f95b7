"""What the privacy application service reads of one user: every event they sent, streamed, and
the pruning of the kept originals of their redacted events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from homeserver.identifiers import parse_user_id
from storage.stores.events import EventStore
from storage.stores.user_events import UserEventStore

EVENT_BATCH = 500


class UserEventsService:
    def __init__(self, store: UserEventStore, events: EventStore):
        self._store = store
        self._events = events

    def check_user_id(self, user_id: str) -> None:
        """400 before the stream starts, not halfway through it."""
        parse_user_id(user_id, "user_id")

    async def sent_events(self, user_id: str, *, since_ts: int | None,
                          until_ts: int | None) -> AsyncIterator[list[dict[str, Any]]]:
        """Every event the user sent in any room, oldest first, in batches (the NDJSON export)."""
        after: int | None = None
        while True:
            batch = await self._store.sent_events_page(user_id, after=after, since_ts=since_ts, until_ts=until_ts,
                                                       limit=EVENT_BATCH)
            if not batch:
                return
            after = batch[-1]["position"]
            yield [{k: v for k, v in event.items() if k != "position"} for event in batch]
            if len(batch) < EVENT_BATCH:
                return

    async def delete_redacted_originals(self, user_id: str) -> dict[str, Any]:
        """`DELETE /_huiskamer/admin/v1/users/{userId}/redacted_originals`: prune them now."""
        parse_user_id(user_id, "user_id")
        rewritten = await self._store.prune_redacted_originals(user_id)
        self._events.forget_cached_events(rewritten)
        return {"deleted": len(rewritten)}
