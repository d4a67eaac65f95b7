"""A room's head: what the next local event builds on (extremities, state, depth).

Kept in memory per room and advanced as local events are handed to the persister, so a room
can have several events in flight towards one group commit, each built on the one before.
Valid only while the room's lock is held. Dropped whenever the database may differ from it:
an event failed to persist, or events arrived from elsewhere (federation).
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

from homeserver.errors import not_found
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.state import EventGraphStore, resolve_state
from storage.stores.events import EventStore, PersistContext, StateMap

# At most this many prev_events per new event, as Synapse does.
MAX_PREV_EVENTS = 10


@dataclass
class RoomHead:
    extremities: list[str]
    state_group: int | None
    state: StateMap
    depth: int
    # With several extremities, `state` is their resolution and `state_group` the first one's
    # group; the difference goes into the next event's new state group.
    pending_delta: StateMap = dataclasses.field(default_factory=dict)


class StoredEventGraph(EventGraphStore):
    """State resolution's view of stored events, plus `extra` events not stored yet (one being taken)."""

    def __init__(self, events: EventStore, extra: Mapping[str, Event] | None = None):
        self._events = events
        self._extra = dict(extra or {})

    async def get_events(self, event_ids):  # type: ignore[override]
        if not self._extra:
            return await self._events.get_events(event_ids)
        wanted = list(event_ids)
        found = await self._events.get_events([e for e in wanted if e not in self._extra])
        found.update({e: self._extra[e] for e in wanted if e in self._extra})
        return found


class RoomHeads:
    def __init__(self, events: EventStore):
        self._events = events
        self._heads: dict[str, RoomHead] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def lock(self, room_id: str) -> asyncio.Lock:
        """The room's lock: held while an event is built on the head and handed to the persister."""
        lock = self._locks.get(room_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[room_id] = lock
        return lock

    def set(self, room_id: str, head: RoomHead) -> None:
        self._heads[room_id] = head

    def is_current(self, room_id: str, head: RoomHead) -> bool:
        """Whether `head` is still the room's cached head (not dropped since it was loaded)."""
        return self._heads.get(room_id) is head

    def forget(self, room_id: str) -> None:
        """Drop the cached head: the next event reloads it from the database."""
        self._heads.pop(room_id, None)

    async def load(self, room_id: str, room_version: RoomVersion) -> RoomHead:
        head = self._heads.get(room_id)
        if head is not None:
            return head
        extremities = sorted(await self._events.get_forward_extremities(room_id))
        if not extremities:
            raise not_found(f"Unknown room {room_id}")
        prev_events = await self._events.get_events(extremities)
        groups = await self._events.get_state_groups_for_events(extremities)
        depth = max(e.depth for e in prev_events.values())
        group = groups.get(extremities[0])
        base = await self._events.get_state_for_group(group) if group is not None else {}
        pending: StateMap = {}
        if len(extremities) == 1:
            state = dict(base)
        else:
            state_sets = [await self._events.get_state_for_group(groups[e]) for e in extremities if e in groups]
            state = await resolve_state(room_version, state_sets, StoredEventGraph(self._events))
            pending = {k: v for k, v in state.items() if base.get(k) != v}
        head = RoomHead(extremities[:MAX_PREV_EVENTS], group, state, depth, pending)
        self._heads[room_id] = head
        return head

    @staticmethod
    def advance(head: RoomHead, event: Event, context: PersistContext) -> None:
        """Move the head past an event handed to the persister (its state group must be known)."""
        head.extremities = [event.event_id]
        head.depth = event.depth
        head.state_group = context.state_group
        head.pending_delta = {}
        if context.current_state_delta:
            head.state.update(context.current_state_delta)
