"""State resolution v2 (room versions 2-11) and v2.1 (room version 12).

The spec's algorithm (content/rooms/v2.md and v12.md, "State resolution") with two
choices made where Synapse, the implementation every room we federate with runs,
reads it differently; converging with it matters more than the letter here:

- The create event counts as a power event, and only `m.room.power_levels` /
  `m.room.join_rules` with an empty state key do.
- An event already rejected stays out of the resolved state even if it would pass
  the iterative auth checks (Synapse's matrix-org/synapse#13797).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Collection, Iterable, Mapping, Sequence

from homeserver.event_auth import AuthError, auth_types_for_event, check_auth, get_user_power_level
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion, StateResAlgorithm
from homeserver.state.store import (
    EventCache,
    EventGraphStore,
    StateResStore,
    compute_auth_difference,
)

StateKey = tuple[str, str]
StateMap = Mapping[StateKey, str]

CREATE_KEY: StateKey = ("m.room.create", "")
POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")
JOIN_RULES_KEY: StateKey = ("m.room.join_rules", "")

# Auth checks hand the event loop back this often; each one costs tens of microseconds.
_YIELD_EVERY = 200


def separate(state_sets: Sequence[StateMap]) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """Split the state sets into the unconflicted state map and the conflicted
    state (key -> the differing event IDs); a key missing from any set is conflicted."""
    first, rest = state_sets[0], state_sets[1:]
    if not rest:
        return dict(first), {}
    # One comprehension over the first set: rooms have tens of thousands of members.
    if len(rest) == 1:
        other_get = rest[0].get
        unconflicted = {k: v for k, v in first.items() if other_get(k) == v}
    else:
        unconflicted = {k: v for k, v in first.items() if all(s.get(k) == v for s in rest)}
    conflicted: dict[StateKey, set[str]] = {}
    for state_set in state_sets:
        if len(state_set) == len(unconflicted):
            continue  # every key it has is unconflicted
        for key in state_set.keys() - unconflicted.keys():
            if key not in conflicted:
                conflicted[key] = {s[key] for s in state_sets if key in s}
    return unconflicted, conflicted


def is_power_event(event: Event) -> bool:
    """Whether the event may take away someone's ability to act in the room."""
    event_type = event.type
    if event_type in ("m.room.power_levels", "m.room.join_rules", "m.room.create"):
        return event.state_key == ""
    if event_type == "m.room.member":
        return event.membership in ("leave", "ban") and event.sender != event.state_key
    return False


async def resolve_v2(
    room_version: RoomVersion, state_sets: Sequence[StateMap], store: StateResStore
) -> dict[StateKey, str]:
    """Resolve the state sets with state resolution v2, or v2.1 for room version 12."""
    if not state_sets:
        return {}
    unconflicted, conflicted = separate(state_sets)
    if not conflicted:
        return unconflicted
    is_v2_1 = room_version.state_res is StateResAlgorithm.V2_1

    cache = EventCache(store)
    conflicted_ids: set[str] = set().union(*conflicted.values())
    set_ids = [set(s.values()) for s in state_sets]
    subgraph_of = conflicted_ids if is_v2_1 else None
    if isinstance(store, EventGraphStore):
        # Share this resolution's event cache rather than loading every event twice.
        auth_difference = await compute_auth_difference(cache, set_ids, subgraph_of)
    else:
        auth_difference = await store.get_auth_difference(set_ids, subgraph_of)

    full_conflicted = conflicted_ids | auth_difference
    await cache.load(full_conflicted)
    events = cache.events
    full_conflicted = {e for e in full_conflicted if e in events}
    await cache.load(a for e in full_conflicted for a in cache.auth_ids[e])

    if is_v2_1:
        base: dict[StateKey, str] = {}
    else:
        # Only the keys the checks can read matter; the rest of the unconflicted map
        # is laid over the result at the end anyway.
        keys = {POWER_LEVELS_KEY}
        for event_id in full_conflicted:
            keys.update(auth_types_for_event(events[event_id], room_version))
        base = {k: unconflicted[k] for k in keys if k in unconflicted}
        await cache.load(base.values())

    power_events = [e for e in full_conflicted if is_power_event(events[e])]
    sorted_power = await reverse_topological_power_sort(power_events, full_conflicted, cache, room_version)
    resolved = await iterative_auth_checks(sorted_power, base, cache, room_version)

    sorted_set = set(sorted_power)
    leftover = [e for e in full_conflicted if e not in sorted_set]
    leftover = await mainline_sort(leftover, resolved.get(POWER_LEVELS_KEY), cache)
    resolved = await iterative_auth_checks(leftover, resolved, cache, room_version)

    resolved.update(unconflicted)
    return resolved


def _auth_state_of(event: Event, cache: EventCache) -> dict[StateKey, Event]:
    """The event's own auth events that were not rejected, by (type, state_key)."""
    events = cache.events
    auth_state: dict[StateKey, Event] = {}
    for auth_id in cache.auth_ids[event.event_id]:
        auth_event = events.get(auth_id)
        if auth_event is None or auth_event.rejected_reason is not None:
            continue
        if auth_event.is_state():
            auth_state[auth_event.state_tuple()] = auth_event
    return auth_state


async def reverse_topological_power_sort(
    event_ids: Iterable[str], full_conflicted: Collection[str], cache: EventCache, room_version: RoomVersion
) -> list[str]:
    """The events and their auth ancestors within the full conflicted set, auth
    events first, ties broken by higher sender power, earlier timestamp, smaller ID."""
    events = cache.events
    auth_ids = cache.auth_ids
    # Auth edges restricted to the full conflicted set.
    graph: dict[str, list[str]] = {}
    stack = list(event_ids)
    while stack:
        event_id = stack.pop()
        if event_id in graph:
            continue
        parents = [a for a in auth_ids[event_id] if a in full_conflicted]
        graph[event_id] = parents
        stack.extend(a for a in parents if a not in graph)

    await cache.load(a for e in graph for a in auth_ids[e])
    sort_key: dict[str, tuple[float, int, str]] = {}
    # Many events share a sender and a power levels event (a moderator's run of
    # kicks): their level is worked out once.
    levels: dict[tuple[str, str | None, str | None], float] = {}
    for i, event_id in enumerate(graph, 1):
        event = events[event_id]
        power_levels_id = create_id = None
        for auth_id in auth_ids[event_id]:
            auth_event = events.get(auth_id)
            if auth_event is None or auth_event.state_key != "":
                continue
            if auth_event.type == "m.room.power_levels":
                power_levels_id = auth_id
            elif auth_event.type == "m.room.create":
                create_id = auth_id
        memo_key = (event.sender, power_levels_id, create_id)
        level = levels.get(memo_key)
        if level is None:
            auth_state = {}
            if power_levels_id is not None:
                auth_state[POWER_LEVELS_KEY] = events[power_levels_id]
            if create_id is not None:
                auth_state[CREATE_KEY] = events[create_id]
            level = levels[memo_key] = get_user_power_level(event.sender, auth_state, room_version)
        sort_key[event_id] = (-level, event.origin_server_ts, event_id)
        if i % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
    return _lexicographic_topological_sort(graph, sort_key)


def _lexicographic_topological_sort(
    graph: Mapping[str, list[str]], sort_key: Mapping[str, tuple[float, int, str]]
) -> list[str]:
    # Kahn's algorithm run from the auth roots: a node becomes ready once all its
    # auth parents are placed, and the smallest ready node goes next.
    remaining: dict[str, int] = {}
    children: dict[str, list[str]] = {node: [] for node in graph}
    for node, parents in graph.items():
        unique = set(parents)
        remaining[node] = len(unique)
        for parent in unique:
            children[parent].append(node)
    ready = [sort_key[n] for n, count in remaining.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[str] = []
    while ready:
        node = heapq.heappop(ready)[2]
        ordered.append(node)
        for child in children[node]:
            remaining[child] -= 1
            if remaining[child] == 0:
                heapq.heappush(ready, sort_key[child])
    return ordered


async def iterative_auth_checks(
    event_ids: Sequence[str], base: Mapping[StateKey, str], cache: EventCache, room_version: RoomVersion
) -> dict[StateKey, str]:
    """Apply each event, in order, to the state if the auth rules allow it there."""
    events = cache.events
    state = dict(base)
    for i, event_id in enumerate(event_ids, 1):
        event = events[event_id]
        if event.rejected_reason is not None:
            continue
        # The event's own auth events fill in keys the state does not have yet.
        auth_state = _auth_state_of(event, cache)
        for key in auth_types_for_event(event, room_version):
            state_id = state.get(key)
            if state_id is None:
                continue
            state_event = events.get(state_id)
            if state_event is None:
                state_event = await cache.get(state_id)
            if state_event is not None and state_event.rejected_reason is None:
                auth_state[key] = state_event
        try:
            check_auth(event, auth_state, room_version)
        except AuthError:
            pass
        else:
            state[event.state_tuple()] = event_id
        if i % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
    return state


async def _power_levels_parent(event: Event, cache: EventCache) -> str | None:
    for auth_id in cache.auth_ids.get(event.event_id, ()):
        auth_event = cache.events.get(auth_id)
        if auth_event is None:
            auth_event = await cache.get(auth_id)
        if auth_event is not None and auth_event.type == "m.room.power_levels" and auth_event.state_key == "":
            return auth_id
    return None


async def mainline_sort(event_ids: list[str], power_levels_id: str | None, cache: EventCache) -> list[str]:
    """Order events by the mainline of `power_levels_id`: those based on an older
    power levels event first, then by timestamp, then by ID."""
    if not event_ids:
        return []
    events = cache.events
    mainline: list[str] = []
    seen: set[str] = set()
    current = power_levels_id
    while current is not None and current not in seen:
        seen.add(current)
        mainline.append(current)
        event = await cache.get(current)
        current = await _power_levels_parent(event, cache) if event is not None else None
    # Depth 1 is the oldest power levels event; 0 means "not based on the mainline",
    # which the spec writes as an infinite mainline position and sorts first.
    depth_of: dict[str, int] = {e: depth for depth, e in enumerate(reversed(mainline), 1)}

    keys: dict[str, tuple[int, int, str]] = {}
    for i, event_id in enumerate(event_ids, 1):
        keys[event_id] = (
            await _mainline_depth(events[event_id], depth_of, cache),
            events[event_id].origin_server_ts,
            event_id,
        )
        if i % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
    return sorted(event_ids, key=keys.__getitem__)


async def _mainline_depth(event: Event, depth_of: dict[str, int], cache: EventCache) -> int:
    # Remembers the answer for every power levels event walked through, so sorting
    # many events based on the same branch walks it once.
    walked: list[str] = []
    depth = 0
    current: Event | None = event
    while current is not None:
        known = depth_of.get(current.event_id)
        if known is not None:
            depth = known
            break
        walked.append(current.event_id)
        parent = await _power_levels_parent(current, cache)
        if parent is None or parent in walked:
            break
        current = cache.events.get(parent)
    for event_id in walked[1:]:
        depth_of[event_id] = depth
    return depth
