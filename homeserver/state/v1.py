"""State resolution v1 (room version 1), content/rooms/v1.md "State resolution".

Where the spec's prose leaves room, this follows Synapse so that v1 rooms converge:
each conflicted membership is resolved against the state after the join rules pass
(not against the other memberships resolved before it, which would make the result
depend on the order of keys), and the first event of each ordered list is taken
without a check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from homeserver.event_auth import AuthError, auth_types_for_event, check_auth
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.state.store import StateResStore

StateKey = tuple[str, str]
StateMap = Mapping[StateKey, str]

POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")


def separate_v1(state_sets: Sequence[StateMap]) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """Unconflicted state (the union, minus keys the sets disagree on) and the
    conflicted keys with their event IDs. A key only some sets have is not a conflict."""
    unconflicted: dict[StateKey, str] = dict(state_sets[0])
    conflicted: dict[StateKey, set[str]] = {}
    for state_set in state_sets[1:]:
        for key, event_id in state_set.items():
            current = unconflicted.get(key)
            if current is None:
                if key in conflicted:
                    conflicted[key].add(event_id)
                else:
                    unconflicted[key] = event_id
            elif current != event_id:
                conflicted[key] = {current, event_id}
                del unconflicted[key]
    return unconflicted, conflicted


def _sha1(event_id: str) -> str:
    return hashlib.sha1(event_id.encode("utf-8")).hexdigest()


def _by_depth_ascending(events: list[Event]) -> list[Event]:
    """Ascending depth, then descending sha1(event_id)."""
    return sorted(events, key=lambda e: (-e.depth, _sha1(e.event_id)), reverse=True)


def _by_depth_descending(events: list[Event]) -> list[Event]:
    """Descending depth, then ascending sha1(event_id)."""
    return sorted(events, key=lambda e: (-e.depth, _sha1(e.event_id)))


def _passes(event: Event, auth_state: Mapping[StateKey, Event], room_version: RoomVersion) -> bool:
    try:
        check_auth(event, auth_state, room_version)
    except AuthError:
        return False
    return True


def _resolve_auth_events(
    events: list[Event],
    state: Mapping[StateKey, Event],
    auth_keys: Mapping[str, set[StateKey]],
    room_version: RoomVersion,
) -> Event:
    # Take the oldest, then keep taking the next one while the auth rules allow it
    # on top of the one taken before; stop at the first refusal.
    ordered = _by_depth_ascending(events)
    # Only the keys these events' checks read, not a copy of all of R per key.
    auth_state = {k: state[k] for e in events for k in auth_keys[e.event_id] if k in state}
    taken = ordered[0]
    for event in ordered[1:]:
        auth_state[taken.state_tuple()] = taken
        if not _passes(event, auth_state, room_version):
            return taken
        taken = event
    return taken


def _resolve_normal_events(
    events: list[Event], state: Mapping[StateKey, Event], room_version: RoomVersion
) -> Event:
    ordered = _by_depth_descending(events)
    for event in ordered:
        if _passes(event, state, room_version):
            return event
    # None passes: fall back to the last one, the shallowest.
    return ordered[-1]


async def resolve_v1(
    room_version: RoomVersion, state_sets: Sequence[StateMap], store: StateResStore
) -> dict[StateKey, str]:
    """Resolve the state sets with the room version 1 algorithm."""
    if not state_sets:
        return {}
    if len(state_sets) == 1:
        return dict(state_sets[0])
    unconflicted, conflicted_ids = separate_v1(state_sets)
    if not conflicted_ids:
        return unconflicted

    wanted = {e for ids in conflicted_ids.values() for e in ids}
    found = await store.get_events(wanted)
    conflicted: dict[StateKey, list[Event]] = {}
    for key, ids in conflicted_ids.items():
        events = [found[e] for e in ids if e in found]
        if len(events) > 1:
            conflicted[key] = events
        elif events:
            unconflicted[key] = events[0].event_id

    # R starts as the unconflicted state; only the keys the auth rules read matter.
    keys_of = {
        e.event_id: auth_types_for_event(e, room_version) for events in conflicted.values() for e in events
    }
    auth_keys = set().union(*keys_of.values())
    auth_ids = {k: unconflicted[k] for k in auth_keys if k in unconflicted}
    auth_found = await store.get_events(auth_ids.values())
    state: dict[StateKey, Event] = {k: auth_found[e] for k, e in auth_ids.items() if e in auth_found}

    resolved: dict[StateKey, Event] = {}
    if POWER_LEVELS_KEY in conflicted:
        resolved[POWER_LEVELS_KEY] = _resolve_auth_events(
            conflicted[POWER_LEVELS_KEY], state, keys_of, room_version
        )
    state.update(resolved)
    # Sorted keys keep the pass deterministic; within a pass keys do not see each other.
    for event_type in ("m.room.join_rules", "m.room.member"):
        passed = {
            key: _resolve_auth_events(conflicted[key], state, keys_of, room_version)
            for key in sorted(conflicted)
            if key[0] == event_type
        }
        resolved.update(passed)
        state.update(passed)
    for key in sorted(conflicted):
        if key not in resolved:
            resolved[key] = _resolve_normal_events(conflicted[key], state, room_version)

    result = dict(unconflicted)
    result.update((key, event.event_id) for key, event in resolved.items())
    return result
