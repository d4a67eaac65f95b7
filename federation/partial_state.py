"""Completing the state of rooms joined with partial state (faster joins), in the background.

A join through send_join with `omit_members` (federation/joins.py) stores the resident's state
without most membership events and marks the room partial (storage/stores/partial_state.py); the
room is usable at once. This task then asks for the full state before our join with one
`GET /state/{roomId}?event_id=<our join>` (the servers the join answer listed, the one we joined
through first), checks it like a send_join answer (signatures, hashes, authorization in auth
order), stores what we lack as outliers, and has the store add the missing state to the room's
state groups and current state and clear the mark in one transaction. It then publishes
`PartialStateRoomCompleted`, so waiting requests (/members) answer and /sync sends the whole state.

The fetch starts `faster_joins_resync_delay_ms` after the join (2.5 s by default): the resident
(a single-threaded Synapse in particular) would otherwise serialise the whole state while the room's
first live events after our join wait behind it. When every server fails, it tries again later (backing off up to `MAX_RETRY_S`). Rooms still
marked at start-up (a restart interrupted the fetch) are taken up again by `resume`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from federation.client import FederationClient, FederationError, quote_segment
from federation.keys import KeyLookup
from federation.remote_state import RemoteStateError, check_room_state
from homeserver.clock import Clock
from homeserver.events.event import Event
from homeserver.rooms.heads import RoomHeads
from homeserver.rooms.persister import EventPersister
from homeserver.streams.bus import StreamBus
from homeserver.streams.updates import PartialStateRoomCompleted
from storage.stores.events import EventStore, PersistContext
from storage.stores.partial_state import PartialStateRoom, PartialStateStore

logger = logging.getLogger(__name__)

FEDERATION_V1 = "/_matrix/federation/v1"
FIRST_RETRY_S = 2.0
MAX_RETRY_S = 300.0


class PartialStateResync:
    def __init__(self, server_name: str, client: FederationClient, keys: KeyLookup, events: EventStore,
                 persister: EventPersister, heads: RoomHeads, store: PartialStateStore, bus: StreamBus,
                 clock: Clock, room_lock, *, start_delay_s: float = 0.0, first_retry_s: float = FIRST_RETRY_S):
        self._server_name = server_name
        self._client = client
        self._keys = keys
        self._events = events
        self._persister = persister
        self._heads = heads
        self._store = store
        self._bus = bus
        self._clock = clock
        # The ingestor's room lock: no remote event of the room is taken while the state is filled in.
        self._room_lock = room_lock
        # How long after a join the fetch starts: the resident has just done the join's work, and the
        # room's first live events should not queue behind a transfer of its whole state.
        self._start_delay_s = start_delay_s
        self._first_retry_s = first_retry_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    async def resume(self) -> None:
        """Take up every room still marked partial (after a restart)."""
        self._stopping = False
        for room in await self._store.get_rooms():
            self.schedule(room.room_id, after_join=False)

    def schedule(self, room_id: str, *, after_join: bool = True) -> None:
        """Fetch the room's full state in the background (once at a time per room)."""
        if self._stopping or room_id in self._tasks:
            return
        delay = self._start_delay_s if after_join else 0.0
        task = asyncio.create_task(self._run(room_id, delay), name=f"partial-state-resync {room_id}")
        self._tasks[room_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(room_id, None))

    async def wait(self, room_id: str) -> None:
        """Until the room's running resync (if any) ends; for tests and shutdown."""
        task = self._tasks.get(room_id)
        if task is not None:
            await asyncio.shield(task)

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, room_id: str, start_delay_s: float) -> None:
        if start_delay_s > 0:
            await asyncio.sleep(start_delay_s)
        delay = self._first_retry_s
        while not self._stopping:
            try:
                if await self.resync(room_id):
                    return
            except asyncio.CancelledError:
                raise
            except Exception:  # never lose the task silently: log and retry later
                logger.exception("fetching the full state of %s failed", room_id)
            logger.info("the full state of %s could not be fetched; trying again in %.0f s", room_id, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)

    async def resync(self, room_id: str) -> bool:
        """One attempt over every server; True when the room is done (completed, or nothing to do)."""
        room = await self._store.get_room(room_id)
        if room is None:
            return True
        join = await self._events.get_event(room.join_event_id)
        if join is None:
            # The join never committed: the mark belongs to nothing.
            await self._store.forget(room_id, room.join_event_id)
            return True
        for server in _servers_to_ask(room, self._server_name):
            try:
                if await self._resync_from(server, room, join):
                    return True
            except (FederationError, RemoteStateError) as e:
                logger.warning("full state of %s from %s: %s", room_id, server, e)
        return False

    async def _resync_from(self, server: str, room: PartialStateRoom, join: Event) -> bool:
        room_id = room.room_id
        answer = await self._client.get_json(server, f"{FEDERATION_V1}/state/{quote_segment(room_id)}",
                                             {"event_id": join.event_id})
        if not isinstance(answer, dict):
            raise RemoteStateError("the /state answer is not an object")
        pdus, chain = answer.get("pdus"), answer.get("auth_chain")
        room_version = join.room_version
        ids = [p.get("event_id") for p in [*(pdus or []), *(chain or [])] if isinstance(p, dict)] \
            if isinstance(pdus, list) and isinstance(chain, list) else []
        known = await self._events.get_events([i for i in ids if isinstance(i, str)]) \
            if room_version.event_id_in_event else {}
        checked = await check_room_state(pdus, chain, room_id, room_version, self._keys, known)
        if not any(t == "m.room.member" for t, _ in checked.state):
            raise RemoteStateError("the state holds no membership event")
        await self._persist_outliers(list(checked.events.values()))
        state = {k: v for k, v in checked.state.items() if k != join.state_tuple()}
        member_events = await self._events.get_events(v for (t, _), v in state.items() if t == "m.room.member")
        memberships = {event_id: event.membership for event_id, event in member_events.items()}
        async with self._room_lock(room_id), self._heads.lock(room_id):
            position = await self._store.complete(room_id, join.event_id, state, memberships)
            self._events.forget_state_groups()
            self._heads.forget(room_id)
        if position is None:
            return True  # another join replaced the mark meanwhile; its own resync runs
        logger.info("%s: full state from %s (%d state events); the room is no longer partial", room_id, server,
                    len(state))
        await self._bus.publish(PartialStateRoomCompleted(room_id, position, tuple(room.servers_in_room)))
        return True

    async def _persist_outliers(self, events: Sequence[Event]) -> None:
        held = await self._events.have_events(e.event_id for e in events)
        now = self._clock.time_ms()
        last = None
        for event in events:
            if event.event_id in held:
                continue
            last = self._persister.enqueue(event, PersistContext(state_group=None, outlier=True, received_ts=now))[0]
        if last is not None:
            await last  # a room's events commit in order: the last one covers them all


def _servers_to_ask(room: PartialStateRoom, server_name: str) -> list[str]:
    """The server we joined through first, then the others that were in the room."""
    ordered = [room.joined_via, *room.servers_in_room]
    return [s for s in dict.fromkeys(ordered) if s and s != server_name]
