"""Our resolver and Synapse's give the same state on random forked rooms.

Needs Synapse importable (it is not a dependency of the project; the test extra installs it into
.venv, and `make synctest-synapse` keeps one in .venv-synapse); skipped otherwise:

    .venv/bin/python -m pytest tests/state -q
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

pytest.importorskip("synapse")

import synapse.event_auth  # noqa: E402,F401  (first: synapse.state and event_auth import each other)
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS as SYNAPSE_ROOM_VERSIONS  # noqa: E402
from synapse.events import make_event_from_dict  # noqa: E402
from synapse.state import v1 as synapse_v1  # noqa: E402
from synapse.state import v2 as synapse_v2  # noqa: E402
from synapse.storage.databases.main.event_federation import StateDifference  # noqa: E402

from homeserver.events.room_versions import RoomVersion  # noqa: E402
from homeserver.state import resolve_state  # noqa: E402
from tests.state.randomroom import random_forks  # noqa: E402


def _synapse_pdu(pdu: dict[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    pdu = copy.deepcopy(pdu)
    if room_version.event_id_in_event:
        # Room versions 1 and 2 reference events as [event_id, hashes] pairs.
        for field in ("auth_events", "prev_events"):
            pdu[field] = [[e, {"sha256": "aGFzaA"}] for e in pdu[field]]
    return pdu


def _synapse_event_id(pdu: dict[str, Any], room_version: RoomVersion) -> str:
    return make_event_from_dict(
        _synapse_pdu(pdu, room_version), SYNAPSE_ROOM_VERSIONS[room_version.identifier]
    ).event_id


class _Clock:
    async def sleep(self, duration: Any) -> None:
        await asyncio.sleep(0)


class _SynapseStore:
    """Synapse's store interface over a dict, auth chains computed the naive way so
    that our own auth difference code is checked too, not reused."""

    def __init__(self, events: dict[str, Any]):
        self.events = events
        self._chains: dict[str, frozenset[str]] = {}

    async def get_events(self, event_ids: Any, allow_rejected: bool = False) -> dict[str, Any]:
        return {e: self.events[e] for e in event_ids if e in self.events}

    def chain(self, event_id: str) -> frozenset[str]:
        if event_id not in self._chains:
            result: set[str] = set()
            event = self.events.get(event_id)
            for parent in event.auth_event_ids() if event is not None else ():
                result.add(parent)
                result |= self.chain(parent)
            self._chains[event_id] = frozenset(result)
        return self._chains[event_id]

    async def get_auth_chain_difference(
        self, room_id: str, state_sets: list[set[str]], conflicted: set[str] | None, additional: Any
    ) -> StateDifference:
        # A state set's chain includes its own events, as Synapse's chain cover
        # index (and its in-memory path for unpersisted events) computes it.
        chains = [set(s).union(*(self.chain(e) for e in s)) for s in state_sets]
        difference = set().union(*chains) - set.intersection(*chains)
        subgraph = None
        if conflicted is not None:
            below = set(conflicted).union(*(self.chain(c) for c in conflicted))
            subgraph = {e for e in below if e in conflicted or self.chain(e) & conflicted}
        return StateDifference(auth_difference=difference, conflicted_subgraph=subgraph)


async def _synapse_resolve(room: Any, state_sets: list[dict]) -> dict:
    version = SYNAPSE_ROOM_VERSIONS[room.room_version.identifier]
    events = {
        event_id: make_event_from_dict(_synapse_pdu(dict(event.pdu), room.room_version), version)
        for event_id, event in room.store.events.items()
    }
    store = _SynapseStore(events)
    if room.room_version.identifier == "1":
        result = await synapse_v1.resolve_events_with_store(
            room.room_id, version, state_sets, None, lambda ids: store.get_events(ids)
        )
    else:
        result = await synapse_v2.resolve_events_with_store(
            _Clock(), room.room_id, version, state_sets, None, store
        )
    return dict(result)


def _both(seed: int, room_version: str) -> tuple[Any, dict, dict]:
    room, state_sets = random_forks(seed, room_version, id_factory=_synapse_event_id)
    ours = asyncio.run(resolve_state(room.room_version, state_sets, room.store))
    theirs = asyncio.run(_synapse_resolve(room, state_sets))
    return room, ours, theirs


@pytest.mark.parametrize("room_version", ["1", "2", "6", "10", "11", "12"])
@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_random_forks_resolve_to_the_same_state_as_synapse(room_version: str, seed: int) -> None:
    room, ours, theirs = _both(seed, room_version)
    assert room.named(ours) == room.named(theirs)


def test_the_random_rooms_actually_conflict_on_power_and_membership() -> None:
    # Guards the test above against a generator that stopped producing conflicts.
    conflicted_types: set[str] = set()
    for seed in range(40):
        _, state_sets = random_forks(seed, "10", id_factory=_synapse_event_id, forks=2)
        for key in state_sets[0].keys() | state_sets[1].keys():
            if state_sets[0].get(key) != state_sets[1].get(key):
                conflicted_types.add(key[0])
    assert {"m.room.power_levels", "m.room.member", "m.room.join_rules", "m.room.topic"} <= conflicted_types
