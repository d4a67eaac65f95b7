"""Properties every resolution must have, over random forked rooms of every algorithm."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.events.event import Event
from homeserver.state import EventGraphStore, InMemoryStateResStore, resolve_state
from homeserver.state.store import EventCache, compute_auth_difference, conflicted_subgraph
from tests.state.randomroom import random_forks
from tests.state.statedag import ALICE, BOB, Room

VERSIONS = ["1", "2", "10", "12"]
seeds = st.integers(0, 2**32)


def run(room: Room, state_sets: list, store: object | None = None) -> dict:
    return asyncio.run(resolve_state(room.room_version, state_sets, store or room.store))


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=60, deadline=None)
@given(seed=seeds, shuffle_seed=st.integers(0, 1000))
def test_the_result_does_not_depend_on_the_order_of_the_state_sets_or_their_keys(
    version: str, seed: int, shuffle_seed: int
) -> None:
    room, state_sets = random_forks(seed, version)
    rng = random.Random(shuffle_seed)
    shuffled = []
    for state_set in rng.sample(state_sets, len(state_sets)):
        items = list(state_set.items())
        rng.shuffle(items)
        shuffled.append(dict(items))
    assert run(room, shuffled) == run(room, state_sets)


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=40, deadline=None)
@given(seed=seeds)
def test_resolving_a_single_state_set_or_copies_of_one_returns_it_unchanged(version: str, seed: int) -> None:
    room, state_sets = random_forks(seed, version)
    only = state_sets[0]
    assert run(room, [only]) == only
    assert run(room, [only, dict(only), dict(only)]) == only


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=60, deadline=None)
@given(seed=seeds)
def test_state_all_sets_agree_on_always_survives(version: str, seed: int) -> None:
    room, state_sets = random_forks(seed, version)
    result = run(room, state_sets)
    agreed = {k: v for k, v in state_sets[0].items() if all(s.get(k) == v for s in state_sets)}
    assert agreed.items() <= result.items()


@pytest.mark.parametrize("version", ["2", "10", "12"])
@settings(max_examples=40, deadline=None)
@given(seed=seeds)
def test_every_resolved_event_is_a_state_event_filling_its_own_key(version: str, seed: int) -> None:
    room, state_sets = random_forks(seed, version)
    for key, event_id in run(room, state_sets).items():
        assert room.store.events[event_id].state_tuple() == key


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=30, deadline=None)
@given(seed=seeds)
def test_a_store_that_only_serves_events_gives_the_same_result_in_few_batches(
    version: str, seed: int
) -> None:
    room, state_sets = random_forks(seed, version)
    store = _CountingStore(room.store.events)
    assert run(room, state_sets, store) == run(room, state_sets)
    # Batched by auth graph layer, never one call per event.
    assert store.calls <= 40


class _CountingStore(EventGraphStore):
    """Like a database store: hands out events by ID and nothing else."""

    def __init__(self, events: Mapping[str, Event]):
        self.events = events
        self.calls = 0

    async def get_events(self, event_ids: Iterable[str]) -> Mapping[str, Event]:
        self.calls += 1
        return {e: self.events[e] for e in event_ids if e in self.events}


class _IndexedStore:
    """A store with its own auth difference, the way a database with an index has."""

    def __init__(self, events: Mapping[str, Event]):
        self.inner = InMemoryStateResStore(events)
        self.difference_calls = 0

    async def get_events(self, event_ids: Iterable[str]) -> Mapping[str, Event]:
        return await self.inner.get_events(event_ids)

    async def get_auth_difference(self, state_sets, conflicted):  # type: ignore[no-untyped-def]
        self.difference_calls += 1
        return await compute_auth_difference(EventCache(self.inner), state_sets, conflicted)


def test_a_store_with_its_own_auth_difference_is_asked_for_it() -> None:
    room, state_sets = random_forks(7, "10", forks=2)
    while state_sets[0] == state_sets[1]:
        room, state_sets = random_forks(random.randrange(10**6), "10", forks=2)
    store = _IndexedStore(room.store.events)
    assert run(room, state_sets, store) == run(room, state_sets)
    assert store.difference_calls == 1


def test_events_the_store_does_not_have_are_left_out_rather_than_failing() -> None:
    room = Room("10")
    state = room.create(ALICE, users={BOB: 50})
    fork_a = room.topic("topic_a", state, ALICE, "a")
    fork_b = room.topic("topic_b", state, ALICE, "b")
    partial = InMemoryStateResStore(
        e for e in room.store.events.values() if e.event_id != room.ids["topic_b"]
    )
    result = asyncio.run(resolve_state(room.room_version, [fork_a, fork_b], partial))
    assert result[("m.room.topic", "")] == room.ids["topic_a"]


# --- the graph helpers on a toy graph ------------------------------------------------------


def _toy_room() -> tuple[Room, dict]:
    """After the usual first four events, power levels p1 <- p2 <- p3 (each cites the
    one before as an auth event) and px, a sibling of p1."""
    room = Room("10")
    state = room.create(ALICE)
    s1 = room.power("p1", state, ALICE, {ALICE: 100})
    s2 = room.power("p2", s1, ALICE, {ALICE: 100, BOB: 1})
    room.power("p3", s2, ALICE, {ALICE: 100, BOB: 2})
    room.power("px", state, ALICE, {ALICE: 100, BOB: 3})
    return room, state


def test_the_conflicted_subgraph_holds_the_events_between_two_conflicted_ones() -> None:
    room, _ = _toy_room()
    ids = room.ids
    cache = EventCache(room.store)
    subgraph = asyncio.run(conflicted_subgraph(cache, {ids["p1"], ids["p3"], ids["px"]}))
    assert {room.names[e] for e in subgraph} == {"p1", "p2", "p3", "px"}
    only_ends = asyncio.run(conflicted_subgraph(cache, {ids["p3"], ids["px"]}))
    assert {room.names[e] for e in only_ends} == {"p3", "px"}


def test_the_auth_difference_is_what_some_but_not_all_state_sets_reach() -> None:
    room, state = _toy_room()
    ids = room.ids
    key = ("m.room.power_levels", "")
    set_a = {**state, key: ids["p3"]}
    set_b = {**state, key: ids["px"]}
    cache = EventCache(room.store)
    difference = asyncio.run(compute_auth_difference(cache, [set(set_a.values()), set(set_b.values())], None))
    # p3 reaches p2, p1 and ipower; px reaches ipower only.
    assert {room.names[e] for e in difference} == {"p1", "p2", "p3", "px"}


async def test_a_big_resolution_lets_other_tasks_run_while_it_works() -> None:
    room = Room("10")
    state = room.create(ALICE, users={BOB: 50})
    state = room.join("jbob", state, BOB)
    for i in range(3000):
        state = room.join(f"j{i}", state, f"@u{i}:example.com", check=False)
    fork_a = room.topic("ta", state, ALICE, "a")
    fork_b = room.member("kick", state, BOB, "@u1:example.com", "leave")
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    await resolve_state(room.room_version, [fork_a, fork_b], room.store)
    during = ticks - before
    done = True
    await task
    assert during > 0
