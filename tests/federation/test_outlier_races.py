"""Two paths storing the same remote events at once: a full-state fetch and an incoming transaction
both check what is stored, then queue the missing events as outliers. The second copy must be a
no-op, never a failed batch that takes the room's other events down with it (found by the 2,000
member federation bench: a message sent right after a faster join was lost)."""

from __future__ import annotations

import asyncio

from storage.stores.events import PersistContext
from tests.federation.test_join_remote import resident


async def test_an_outlier_queued_twice_or_already_stored_is_stored_once_and_fails_nothing(fed_hs, make_remote):
    room = await resident(make_remote)
    events = [room.create, *(room.events[e] for e in room.extremities)]
    now = 1_700_000_000_000
    await fed_hs.event_store.ensure_room(room.room_id, "10", room.creator, now)

    def outlier() -> PersistContext:
        return PersistContext(state_group=None, outlier=True, received_ts=now)

    # Both copies in one batch, as two concurrent fetches queue them.
    first = [fed_hs.persister.enqueue(e, outlier())[0] for e in events]
    again = [fed_hs.persister.enqueue(e, outlier())[0] for e in events]
    await asyncio.gather(*first, *again)
    # And once more after the first copies committed.
    await asyncio.gather(*(fed_hs.persister.enqueue(e, outlier())[0] for e in events))

    stored = await fed_hs.event_store.get_events([e.event_id for e in events])
    assert set(stored) == {e.event_id for e in events}
