"""What state resolution needs from storage, and an in-memory implementation of it.

State resolution is pure logic, but the events it reads live in a database. The
resolver therefore asks a `StateResStore` for events in batches (one call per layer
of the auth graph, never one call per event) and for the auth chain difference,
which a database can answer from an index. `EventGraphStore` derives the auth
chain difference from `get_events` alone, so a store only has to implement
`get_events` to be usable; `InMemoryStateResStore` is that over a dict.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping, Sequence
from itertools import chain
from typing import Protocol

from homeserver.events.event import Event

# Walks over big auth graphs hand control back to the event loop this often.
YIELD_EVERY = 2000


class StateResStore(Protocol):
    """Read access to a room's events for state resolution."""

    async def get_events(self, event_ids: Iterable[str]) -> Mapping[str, Event]:
        """The events among `event_ids` that are known, rejected ones included."""
        ...

    async def get_auth_difference(
        self, state_sets: Sequence[Collection[str]], conflicted: Collection[str] | None
    ) -> set[str]:
        """∪Cᵢ − ∩Cᵢ, where Cᵢ is state set i's events plus all their auth chains
        (see `compute_auth_difference`), plus the conflicted state subgraph of
        `conflicted` when it is given (state resolution v2.1)."""
        ...


def auth_event_ids(event: Event) -> list[str]:
    """The event's auth events as the auth graph sees them.

    From room version 12 the create event is not listed in `auth_events`: the room
    ID names it. It is still an auth event of every other event in the room, for
    auth chains, sender power and the iterative auth checks alike.
    """
    ids = event.auth_event_ids
    if event.room_version.room_id_from_create_event and event.type != "m.room.create":
        room_id = event.room_id
        if room_id and room_id.startswith("!"):
            create_id = "$" + room_id[1:]
            if create_id not in ids:
                ids = [*ids, create_id]
    return ids


class EventCache:
    """The events one resolution has loaded, fetched from the store in batches,
    with each event's auth event IDs (see `auth_event_ids`) beside it."""

    __slots__ = ("store", "events", "auth_ids", "_missing", "_complete")

    def __init__(self, store: StateResStore):
        self.store = store
        # IDs the store did not know, so they are not asked for twice.
        self._missing: set[str] = set()
        # An in-memory store is read in place: copying ten thousand events into a
        # cache would cost more than the resolution itself.
        self._complete = isinstance(store, InMemoryStateResStore)
        if isinstance(store, InMemoryStateResStore):
            self.events: dict[str, Event] = store.events
            self.auth_ids: dict[str, tuple[str, ...]] = store.auth_ids
        else:
            self.events = {}
            self.auth_ids = {}

    async def load(self, event_ids: Iterable[str]) -> None:
        if self._complete:
            return
        events = self.events
        missing = self._missing
        wanted = list(dict.fromkeys(e for e in event_ids if e not in events and e not in missing))
        if not wanted:
            return
        found = await self.store.get_events(wanted)
        events.update(found)
        self.auth_ids.update((e, tuple(auth_event_ids(event))) for e, event in found.items())
        if len(found) != len(wanted):
            missing.update(e for e in wanted if e not in found)

    async def get(self, event_id: str) -> Event | None:
        if event_id not in self.events:
            await self.load((event_id,))
        return self.events.get(event_id)


async def walk_auth_chains(
    cache: EventCache, start: Iterable[str], stop: Collection[str] = frozenset()
) -> set[str]:
    """Every event reachable through auth edges from the events in `start`, which
    are themselves excluded unless reached from another one.

    Events in `stop` are collected but not expanded: the caller knows their auth
    chains already.
    """
    seen: set[str] = set()
    auth_ids = cache.auth_ids
    frontier: Collection[str] = start if isinstance(start, (set, frozenset, list)) else list(start)
    while frontier:
        await cache.load(frontier)
        # One layer at a time with map/chain/set so the per-event work runs in C:
        # the shared part of a big room's auth chains is tens of thousands of events.
        layer = set(chain.from_iterable(filter(None, map(auth_ids.get, frontier))))
        layer -= seen
        seen |= layer
        if stop:
            layer -= stop  # type: ignore[operator]
        if len(frontier) >= YIELD_EVERY:
            await asyncio.sleep(0)
        frontier = layer
    return seen


async def compute_auth_difference(
    cache: EventCache,
    state_sets: Sequence[Collection[str]],
    conflicted: Collection[str] | None,
) -> set[str]:
    """∪Cᵢ − ∩Cᵢ over the full auth chains Cᵢ of the state sets, plus, when
    `conflicted` is given, the conflicted state subgraph (room version 12).

    Cᵢ counts the events of the state set itself as well as their auth chains.
    The spec's prose leaves them out, but Synapse (chain cover index and in-memory
    path alike) puts them in, and the two differ for an event that is in every
    state set yet in the auth chain of only some: Synapse never re-resolves it.
    Servers must agree on this, so we do what Synapse does.
    """
    if not state_sets:
        return set()
    # Events in every state set, and their auth chains, are in every Cᵢ and never
    # in the difference: walk that shared part once, then only what each set adds.
    sets = [s if isinstance(s, (set, frozenset)) else set(s) for s in state_sets]
    common = set(sets[0]).intersection(*sets[1:])
    shared = await walk_auth_chains(cache, common)
    shared |= common
    extras: list[set[str]] = []
    for state_set in sets:
        own = state_set - common
        reached = await walk_auth_chains(cache, own, shared)
        reached |= own
        reached -= shared
        extras.append(reached)
    difference = set.union(*extras) - set.intersection(*extras)
    if conflicted is not None:
        difference |= await conflicted_subgraph(cache, conflicted)
    return difference


async def conflicted_subgraph(cache: EventCache, conflicted: Collection[str]) -> set[str]:
    """The events on some auth path from one conflicted event to another, endpoints
    included."""
    conflicted = set(conflicted)
    ancestors = await walk_auth_chains(cache, conflicted)
    region = ancestors | conflicted
    auth_ids = cache.auth_ids
    # An event lies on such a path when it is an ancestor of a conflicted event
    # (or one itself) and a conflicted event is among its own ancestors (or it is
    # one). Decide the second half bottom-up with an explicit stack so deep auth
    # chains do not hit the recursion limit.
    leads_to_conflict: dict[str, bool] = {node: True for node in conflicted}
    for root in region:
        if root in leads_to_conflict:
            continue
        stack = [root]
        on_stack = {root}
        while stack:
            node = stack[-1]
            parents = [a for a in auth_ids.get(node, ()) if a in region]
            # A malformed graph may loop; an edge back onto the stack counts as no path.
            pending = [a for a in parents if a not in leads_to_conflict and a not in on_stack]
            if pending:
                stack.extend(pending)
                on_stack.update(pending)
                continue
            stack.pop()
            on_stack.discard(node)
            leads_to_conflict[node] = any(leads_to_conflict.get(a, False) for a in parents)
    return {node for node, leads in leads_to_conflict.items() if leads and node in ancestors} | conflicted


class EventGraphStore:
    """A `StateResStore` that answers everything from `get_events`."""

    async def get_events(self, event_ids: Iterable[str]) -> Mapping[str, Event]:
        raise NotImplementedError

    async def get_auth_difference(
        self, state_sets: Sequence[Collection[str]], conflicted: Collection[str] | None
    ) -> set[str]:
        return await compute_auth_difference(EventCache(self), state_sets, conflicted)


class InMemoryStateResStore(EventGraphStore):
    """Events held in a dict: for tests, benchmarks and events not yet persisted.

    Like a database's auth index, each event's auth event IDs are noted when it is
    added, so auth chain walks never touch the events themselves.
    """

    def __init__(self, events: Iterable[Event] | Mapping[str, Event] = ()):
        self.events: dict[str, Event] = {}
        self.auth_ids: dict[str, tuple[str, ...]] = {}
        for event in events.values() if isinstance(events, Mapping) else events:
            self.add(event)

    def add(self, event: Event) -> None:
        event_id = event.event_id
        self.events[event_id] = event
        self.auth_ids[event_id] = tuple(auth_event_ids(event))

    async def get_events(self, event_ids: Iterable[str]) -> Mapping[str, Event]:
        events = self.events
        return {e: events[e] for e in event_ids if e in events}
