"""EventStore.get_state_for_groups: many state groups' full state in one transaction, as one by one."""

from __future__ import annotations

from storage import Database
from storage.stores import events as events_module
from storage.stores.events import EventStore


async def test_many_groups_read_together_match_each_read_alone_with_and_without_a_cache(db: Database):
    writer = EventStore(db)
    # Two rooms' chains of deltas, one of them branching, and one group standing alone.
    a1 = await writer.store_state_group("!a:x", {("m.room.create", ""): "$a1"})
    a2 = await writer.store_state_group("!a:x", {("m.room.create", ""): "$a1", ("m.room.name", ""): "$a2"}, a1)
    a3 = await writer.store_state_group(
        "!a:x", {("m.room.create", ""): "$a1", ("m.room.name", ""): "$a3", ("m.room.member", "@u:x"): "$a3m"}, a2)
    a3b = await writer.store_state_group("!a:x", {("m.room.create", ""): "$a1", ("m.room.name", ""): "$a3b"}, a2)
    b1 = await writer.store_state_group("!b:x", {("m.room.create", ""): "$b1"})
    b2 = await writer.store_state_group("!b:x", {("m.room.create", ""): "$b1", ("m.room.topic", ""): "$b2"}, b1)
    groups = [a3, a3b, b2, a1, a3]

    alone = EventStore(db)  # nothing cached
    expected = {g: dict(await alone.get_state_for_group(g)) for g in groups}
    assert expected[a3] == {("m.room.create", ""): "$a1", ("m.room.name", ""): "$a3",
                            ("m.room.member", "@u:x"): "$a3m"}
    assert expected[a3b] == {("m.room.create", ""): "$a1", ("m.room.name", ""): "$a3b"}

    cold = EventStore(db)
    assert {g: dict(s) for g, s in (await cold.get_state_for_groups(groups)).items()} == expected
    partly = EventStore(db)
    await partly.get_state_for_group(a2)  # the walk stops at a cached ancestor
    assert {g: dict(s) for g, s in (await partly.get_state_for_groups(groups)).items()} == expected
    assert await cold.get_state_for_groups([]) == {}


async def test_the_group_cache_drops_the_oldest_groups_past_its_entry_bound_and_reads_them_back(
        db: Database, monkeypatch):
    monkeypatch.setattr(events_module, "GROUP_CACHE_ENTRIES", 25)
    store = EventStore(db)
    big = {("m.room.member", f"@u{i}:x"): f"$m{i}" for i in range(20)}
    first = await store.store_state_group("!a:x", big)
    second = await store.store_state_group("!a:x", {**big, ("m.room.name", ""): "$n"}, first)
    # 41 entries over two groups: the older one went, the newer one stays though it alone is past the bound.
    assert store.cache_stats()["state_groups"][0] == 1
    assert await store.get_state_for_group(second) == {**big, ("m.room.name", ""): "$n"}
    assert await store.get_state_for_group(first) == big  # read back from its rows
    assert store.cache_stats()["state_groups"][0] == 1
    assert (await store.get_state_for_groups([first, second]))[second] == {**big, ("m.room.name", ""): "$n"}
