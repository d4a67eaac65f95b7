"""Persisting events into the room DAG: the one path every event takes, local or remote.

Events are handed over with everything decided about them (`PersistContext`: state group,
state delta, extremities replaced). A single writer task takes every event waiting at that
moment, from any room, and writes them in one transaction (group commit): one commit and one
fsync for the lot. Events of one room stay in the order they were handed over. Each caller's
`persist` returns only once its event has committed; if the transaction fails, the batch is
retried event by event so that one bad event fails only itself and the events of its room
queued after it (they build on it).

After the commit, waiting /sync requests are woken at once, and a publisher task (so the
writer is never held up) publishes every event on the stream bus as `EventPersisted`, in
stream order, before answering its caller; the bus's consumers are light (typing, presence,
device lists, waking the stages). Heavy work that can happen later (push evaluation, search
indexing, outbound delivery) is done by stream stages that resume from their own persisted
position, so it never delays the acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram

from homeserver.event_auth import may_apply_redaction
from homeserver.events.event import Event
from homeserver.rooms.heads import RoomHeads
from homeserver.rooms.power import RoomPower
from homeserver.streams.bus import StreamBus
from homeserver.streams.notifier import Notifier
from homeserver.streams.recent import RecentEvents
from homeserver.streams.updates import EventPersisted
from storage.stores.events import EventStore, PersistContext, StateMap

logger = logging.getLogger(__name__)

# At most this many events per transaction; a burst larger than this is written in several.
MAX_BATCH = 500


# Set while the publisher runs the bus's consumers. A consumer that sends an event (guests leaving
# when guest access is revoked) must not wait for that event's own publication, which queues
# behind the consumer: inside the publisher, `persist` answers once the event has committed.
_publishing: contextvars.ContextVar[bool] = contextvars.ContextVar("publishing_events", default=False)


@dataclass(slots=True)
class _Pending:
    event: Event
    context: PersistContext
    committed: asyncio.Future[int]
    done: asyncio.Future[int]  # committed and published

    def already_stored(self) -> None:
        # An outlier stored meanwhile by another path: nothing to write, nothing new to publish.
        for future in (self.committed, self.done):
            if not future.done():
                future.set_result(0)

    def fail(self, error: BaseException) -> None:
        for future in (self.committed, self.done):
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: only one of the two is awaited


class EventPersister:
    def __init__(self, events: EventStore, heads: RoomHeads, notifier: Notifier, bus: StreamBus, *,
                 registry: CollectorRegistry | None = None, max_batch: int = MAX_BATCH,
                 recent: RecentEvents | None = None):
        self._events = events
        # Told of every commit before anyone is woken, so /sync may answer from memory (streams/recent.py).
        self._recent = recent
        self._notifier = notifier
        self._bus = bus
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._committed: asyncio.Queue[list[_Pending] | None] = asyncio.Queue()
        self._heads = heads
        self._stopping = False
        self._batch_sizes, self._persist_seconds = _metrics(registry)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping = False
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_forever(), name="event-writer")
            self._publisher = asyncio.create_task(self._publish_forever(), name="event-publisher")

    async def stop(self) -> None:
        """Write what is queued, then stop the writer."""
        self._stopping = True
        self._wakeup.set()
        if self._writer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), timeout=10)
            except TimeoutError:
                self._writer.cancel()
            self._writer = None
        if self._publisher is not None:
            self._committed.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(self._publisher), timeout=10)
            except TimeoutError:
                self._publisher.cancel()
            self._publisher = None
        for pending in self._queue:
            pending.fail(RuntimeError("the server is shutting down"))
        self._queue.clear()

    # --- persisting ------------------------------------------------------------------------
    def enqueue(self, event: Event, context: PersistContext) -> tuple[asyncio.Future[int], asyncio.Future[int]]:
        """Queue an event for the next commit.

        Returns two futures of its stream ordering: one done at the commit, one when the event has
        also been published (inside the publisher, both are the commit's).
        """
        if self._stopping:
            raise RuntimeError("the server is shutting down")
        if self._writer is None:
            self.start()
        loop = asyncio.get_running_loop()
        pending = _Pending(event, context, loop.create_future(), loop.create_future())
        self._queue.append(pending)
        self._wakeup.set()
        return pending.committed, pending.committed if _publishing.get() else pending.done

    async def persist(self, event: Event, context: PersistContext) -> int:
        """Persist one event; returns its stream ordering once it has committed and been published."""
        return await self.enqueue(event, context)[1]

    async def _write_forever(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch, self._queue = self._queue[:self._max_batch], self._queue[self._max_batch:]
            try:
                batch = await self._without_stored_outliers(batch)
                if batch:
                    await self._write(batch)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # never let the writer die: later events must still be written
                logger.exception("persisting a batch of %d events failed", len(batch))
                for pending in batch:
                    if not pending.done.done():
                        self._fail(pending, error)

    async def _without_stored_outliers(self, batch: list[_Pending]) -> list[_Pending]:
        """Drop outliers already stored, or queued twice: two paths may fetch the same auth chain at
        once (a full-state fetch and an incoming transaction, both checking before they queue). Only
        this writer stores events, so checking here cannot race; without it the duplicate would fail
        its whole batch, and the room's later events with it."""
        outlier_ids = [p.event.event_id for p in batch if p.context.outlier]
        if not outlier_ids:
            return batch
        stored = await self._events.have_events(outlier_ids)
        seen: set[str] = set()
        kept = []
        for pending in batch:
            event_id = pending.event.event_id
            if pending.context.outlier and (event_id in stored or event_id in seen):
                pending.already_stored()
                continue
            seen.add(event_id)
            kept.append(pending)
        return kept

    async def _write(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await self._events.persist_events([(p.event, p.context) for p in batch])
            committed = batch
        except Exception as error:
            if len(batch) == 1:
                self._fail(batch[0], error)
                committed = []
            else:
                logger.warning("a batch of %d events failed (%s); writing them one at a time", len(batch), error)
                committed = await self._write_one_by_one(batch)
        if self._persist_seconds is not None:
            self._persist_seconds.observe(loop.time() - started)
            self._batch_sizes.observe(len(batch))
        if committed:
            for pending in committed:
                if not pending.committed.done():
                    pending.committed.set_result(pending.context.stream_ordering)
            self._wake(committed)
            self._committed.put_nowait(committed)

    async def _write_one_by_one(self, batch: Sequence[_Pending]) -> list[_Pending]:
        failed_rooms: set[str] = set()
        committed = []
        for pending in batch:
            room_id = pending.event.room_id
            if room_id in failed_rooms:
                self._fail(pending, RuntimeError("an earlier event of the room failed to persist"))
                continue
            try:
                await self._events.persist_events([(pending.event, pending.context)])
            except Exception as error:
                failed_rooms.add(room_id)
                self._fail(pending, error)
                continue
            committed.append(pending)
        return committed

    def _fail(self, pending: _Pending, error: BaseException) -> None:
        room_id = pending.event.room_id
        # Whatever else is queued for the room builds on the failed event.
        doomed = [p for p in self._queue if p.event.room_id == room_id]
        self._queue = [p for p in self._queue if p.event.room_id != room_id]
        for item in (pending, *doomed):
            item.fail(error)
        # The room's cached head may name the failed event: the next local event must not build on it.
        self._heads.forget(room_id)

    def _wake(self, committed: Sequence[_Pending]) -> None:
        if self._recent is not None:
            self._recent.record((p.event.room_id, p.context.stream_ordering,
                                 not (p.context.outlier or p.context.soft_failed), _membership_moves(p))
                                for p in committed)
        # Backfilled history is older than any sync position: nobody waits for it.
        committed = [p for p in committed if not p.context.backfilled]
        for room_id in {p.event.room_id for p in committed}:
            self._notifier.notify_room(room_id)
        targets = [p.event.state_key for p in committed if p.event.type == "m.room.member" and p.event.state_key]
        if targets:
            self._notifier.notify_users(targets)

    async def _publish_forever(self) -> None:
        _publishing.set(True)
        while True:
            committed = await self._committed.get()
            if committed is None:
                return
            for pending in committed:
                try:
                    # Outliers and soft-failed events are not part of the room as its members see it:
                    # the bus's consumers (typing, device lists, stages' tails) never hear of them.
                    if not (pending.context.outlier or pending.context.soft_failed or pending.context.backfilled):
                        await self._bus.publish(EventPersisted(pending.event, pending.context))
                finally:
                    if not pending.done.done():
                        pending.done.set_result(pending.context.stream_ordering)


def _membership_moves(pending: _Pending) -> list[str] | None:
    """The users whose membership an event moves (its own target, and every membership its
    current-state change touches); None when it replaces the room's whole current state."""
    context = pending.context
    if context.current_state_is_full:
        return None
    moved = [state_key for event_type, state_key in context.current_state_delta or () if event_type == "m.room.member"]
    event = pending.event
    if event.type == "m.room.member" and event.state_key:
        moved.append(event.state_key)
    return moved


async def redaction_applies(events: EventStore, redaction: Event, state_before: StateMap) -> bool:
    """Whether a redaction takes effect on its target, judged against the state before it.

    A redaction of an event we do not hold, or of another room's event, does not apply (yet).
    """
    if redaction.redacts is None or redaction.rejected_reason is not None:
        return False
    target = await events.get_event(redaction.redacts)
    if target is None or target.room_id != redaction.room_id or target.type == "m.room.create":
        return False
    if target.sender == redaction.sender:
        return True
    power = await RoomPower.load(events, state_before, redaction.room_version)
    return may_apply_redaction(redaction, target, power.auth_state, redaction.room_version)


def _metrics(registry: CollectorRegistry | None) -> tuple[Histogram | None, Histogram | None]:
    if registry is None:
        return None, None
    existing = getattr(registry, "_event_persister_metrics", None)
    if existing is not None:
        return existing
    metrics = (
        Histogram("event_persist_batch_size", "Events written per group-commit transaction",
                  buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500), registry=registry),
        Histogram("event_persist_seconds", "Time to write and commit one batch of events",
                  buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=registry),
    )
    registry._event_persister_metrics = metrics  # type: ignore[attr-defined]
    return metrics
