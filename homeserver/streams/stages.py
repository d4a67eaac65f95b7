"""Ordered background consumers of the events stream that resume where they stopped.

A stage processes committed events in stream order, in batches, and records how far it got
(`stream_stage_positions`). Its handler writes its own results and the new position in one
transaction (`save_stage_position_txn`), so after a crash the stage resumes exactly after the
last batch whose work committed: nothing is skipped and nothing is done twice. A handler with
nothing to write returns False and the stage saves the position itself, at most once a second.

Events published on the bus are kept in a bounded in-memory tail, so a stage that keeps up reads
nothing back from the database; one that fell behind (or just started) reads its batches from
the events table until it reaches the tail.

A stage may follow another (`upstream`): it then never runs ahead of it (pusher hand-off reads
what push evaluation wrote). Failures are retried with backoff; a batch is never skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry, Gauge

from homeserver.events.event import Event
from homeserver.streams.updates import EventPersisted
from storage.stores.events import EventStore
from storage.stores.stages import StagePositionStore

logger = logging.getLogger(__name__)

# (events, upto) -> whether the handler saved `upto` itself (in the transaction with its writes).
StageHandler = Callable[[Sequence[Event], int], Awaitable[bool]]

DEFAULT_BATCH = 200
# Published events kept in memory per stage; past this the stage reads from the database.
TAIL_SIZE = 5000
LAZY_SAVE_S = 1.0
MAX_RETRY_S = 30.0


class EventStage:
    def __init__(self, name: str, events: EventStore, positions: StagePositionStore, handler: StageHandler, *,
                 upstream: EventStage | None = None, batch_size: int = DEFAULT_BATCH,
                 registry: CollectorRegistry | None = None):
        self.name = name
        self._events = events
        self._positions = positions
        self._handler = handler
        self._upstream = upstream
        self._batch_size = batch_size
        self._position = 0  # every event up to here is processed
        self._saved = 0
        self._target = 0  # highest event position known to be committed
        self._tail: deque[tuple[int, Event]] = deque()
        self._wakeup = asyncio.Event()
        self._advanced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._downstream: list[EventStage] = []
        self._save_lock = asyncio.Lock()
        if upstream is not None:
            upstream._downstream.append(self)
        lag = _lag_gauge(registry)
        if lag is not None:
            # Read at scrape time, so a stalled stage shows its growing lag.
            lag.labels(name).set_function(lambda: max(0, self._target - self._position))

    @property
    def position(self) -> int:
        return self._position

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        current = await self._events.current_stream_position()
        saved = await self._positions.get(self.name)
        if saved is None:
            # A new stage starts at the live end: history before it existed is not its to redo.
            saved = current
            await self._positions.save(self.name, saved)
        self._position = self._saved = saved
        self._target = max(self._target, current)
        self._task = asyncio.create_task(self._run(), name=f"stage-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.save_position()
        except Exception:
            logger.exception("saving the position of stage %s failed", self.name)

    # --- input -----------------------------------------------------------------------------
    def on_event_persisted(self, update: EventPersisted) -> None:
        """Bus consumer: a new event committed; catch up to it."""
        position = update.context.stream_ordering
        if position <= 0:
            return  # backfilled history is not part of the live stream
        if not self._tail or self._tail[-1][0] < position:
            self._tail.append((position, update.event))
            if len(self._tail) > TAIL_SIZE:
                self._tail.popleft()
        if position > self._target:
            self._target = position
            self._wakeup.set()

    async def wait_until(self, position: int, timeout_s: float) -> bool:
        """Wait until every event up to `position` is processed; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._position < position:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            advanced = self._advanced
            try:
                async with asyncio.timeout(remaining):
                    await advanced.wait()
            except TimeoutError:
                return False
        return True

    async def wait_for_live(self, timeout_s: float) -> bool:
        """Wait until every event committed so far is processed (read-your-writes for readers)."""
        return await self.wait_until(self._target, timeout_s)

    # --- the loop --------------------------------------------------------------------------
    def _limit(self) -> int:
        return self._target if self._upstream is None else min(self._target, self._upstream.position)

    async def _run(self) -> None:
        delay = 0.5
        while True:
            limit = self._limit()
            if self._position >= limit:
                if self._position > self._saved:
                    try:
                        async with asyncio.timeout(LAZY_SAVE_S):
                            await self._wakeup.wait()
                    except TimeoutError:
                        await self.save_position()
                else:
                    await self._wakeup.wait()
                self._wakeup.clear()
                continue
            try:
                await self._process(limit)
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("stage %s failed after position %d; retrying in %.1fs", self.name,
                                 self._position, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_S)

    def _from_tail(self, limit: int) -> tuple[list[Event], int] | None:
        """The next batch from memory, if the tail holds every event after our position."""
        while self._tail and self._tail[0][0] <= self._position:
            self._tail.popleft()
        if not self._tail or self._tail[0][0] != self._position + 1:
            return None
        batch: list[Event] = []
        upto = self._position
        for position, event in self._tail:
            if position > limit or len(batch) == self._batch_size:
                break
            if position != upto + 1:
                return None  # a gap: the database knows better
            batch.append(event)
            upto = position
        return batch, upto

    async def _process(self, limit: int) -> None:
        from_memory = self._from_tail(limit)
        if from_memory is not None:
            batch, upto = from_memory
        else:
            rows = await self._events.get_event_ids_between(self._position, limit, self._batch_size)
            upto = rows[-1][0] if len(rows) == self._batch_size else limit
            loaded = await self._events.get_events([event_id for _, event_id in rows])
            batch = [loaded[event_id] for _, event_id in rows if event_id in loaded]
        saved = await self._handler(batch, upto)
        self._position = upto
        if saved:
            self._saved = upto
        advanced, self._advanced = self._advanced, asyncio.Event()
        advanced.set()
        for stage in self._downstream:
            stage._wakeup.set()

    async def save_position(self) -> None:
        """Record how far the stage got unless that is recorded already. The loop does this once
        it has been idle for a second; a caller that must not see that write later can do it now."""
        async with self._save_lock:
            position = self._position
            if position <= self._saved:
                return
            await self._positions.save(self.name, position)
            self._saved = max(self._saved, position)


def _lag_gauge(registry: CollectorRegistry | None) -> Gauge | None:
    if registry is None:
        return None
    existing = getattr(registry, "_stage_lag", None)
    if existing is None:
        existing = Gauge("stream_stage_lag_events", "Events committed but not yet processed by a stage", ("stage",),
                         registry=registry)
        registry._stage_lag = existing  # type: ignore[attr-defined]
    return existing
