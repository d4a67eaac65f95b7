"""Read paths run a bounded number of queries however much they return (no N+1 patterns).

Each test measures the same request over a small and a large amount of data, with the event
cache emptied first so every event comes from the database, and requires the same number of
statements (give or take a couple for chunked IN lists).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

from tests.support.rooms import new_user

SLACK = 2


async def fill_room(hs, room_id: str, sender: str, count: int) -> None:
    async def send(i: int) -> None:
        await hs.event_sender.send(room_id, sender, "m.room.message", {"msgtype": "m.text", "body": f"n{i}"})

    for start in range(0, count, 100):
        await asyncio.gather(*(send(i) for i in range(start, min(start + 100, count))))


async def statements_of(hs, request) -> int:
    """Statements run by `request()` alone: background stages idle, event cache cold."""
    for stage in (hs.notifications.stage, hs.pushers.stage, hs.search.stage, hs.federation.handoff.stage,
                  hs.app_service_delivery.stage):
        assert await stage.wait_for_live(10)
        await stage.save_position()  # not by the idle timer during the measurement
    # Sightings of earlier requests are written now, not by the periodic flush during the measurement.
    await hs.auth.flush_last_seen()
    hs.event_store._cache.clear()
    before = hs.db.statements_run
    seen: list[str] = []
    metrics = hs.db.on_transaction

    def note(name: str, write: bool, seconds: float) -> None:
        seen.append(name)
        if metrics is not None:
            metrics(name, write, seconds)

    hs.db.on_transaction = note
    try:
        await request()
    finally:
        hs.db.on_transaction = metrics
    return Statements(hs.db.statements_run - before, seen)


class Statements(int):
    """A statement count that also names the transactions that ran them (for failure messages)."""

    transactions: list[str]

    def __new__(cls, count: int, transactions: list[str]) -> Statements:
        value = super().__new__(cls, count)
        value.transactions = transactions
        return value

    def __repr__(self) -> str:
        return f"{int(self)} in {self.transactions}"


async def test_a_page_of_a_thousand_events_costs_what_a_page_of_ten_does(hs, client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    await fill_room(hs, room_id, alice.user_id, 1000)
    pages = {}

    async def page(limit: int) -> None:
        pages[limit] = await alice.call("GET", f"/rooms/{quote(room_id)}/messages", dir="b", limit=str(limit))

    small = await statements_of(hs, lambda: page(10))
    large = await statements_of(hs, lambda: page(1000))
    assert len(pages[1000]["chunk"]) == 1000
    assert large <= small + SLACK, (small, large)


async def initial_syncs_of_ten_and_two_rooms(hs, client, messages_per_room: int
                                            ) -> tuple[int, int, list[str], dict[str, Any]]:
    """Alice in ten rooms of `messages_per_room` messages, Bob in two of them: the statements of each
    one's initial /sync (timeline limit 20), Alice's rooms and her /sync's joined rooms."""
    # A setup slowed by a loaded machine can outlast presence's offline timeout; the /sync would
    # then write the user's return to online (and, a moment later, send it to other servers).
    # Presence holds still instead: registering makes both online, and nothing times them out.
    await hs.presence.stop()
    alice = await new_user(client, "alice")
    rooms = [await alice.create_room() for _ in range(10)]
    for room_id in rooms:
        await fill_room(hs, room_id, alice.user_id, messages_per_room)
    bob = await new_user(client, "bob")
    for room_id in rooms[:2]:
        await alice.call("POST", f"/rooms/{quote(room_id)}/invite", {"user_id": bob.user_id})
        await bob.join(room_id)
    timeline = json.dumps({"room": {"timeline": {"limit": 20}}})
    bodies = {}

    async def sync(user) -> None:
        bodies[user.user_id] = await user.call("GET", "/sync", filter=timeline)

    two_rooms = await statements_of(hs, lambda: sync(bob))
    ten_rooms = await statements_of(hs, lambda: sync(alice))
    return ten_rooms, two_rooms, rooms, bodies[alice.user_id]["rooms"]["join"]


async def test_an_initial_sync_of_ten_rooms_costs_what_one_of_two_rooms_does(hs, client):
    ten_rooms, two_rooms, rooms, joined = await initial_syncs_of_ten_and_two_rooms(hs, client, 30)
    assert set(joined) == set(rooms)
    assert all(len(joined[r]["timeline"]["events"]) == 20 for r in rooms)
    assert ten_rooms <= two_rooms + SLACK, (two_rooms, ten_rooms)


async def test_an_initial_sync_whose_timelines_reach_before_the_join_costs_the_same_for_ten_rooms(hs, client):
    # Pages that start before the user's join need history visibility checked; that is done for
    # all rooms of the sync together, not with a few queries per room.
    ten_rooms, two_rooms, rooms, joined = await initial_syncs_of_ten_and_two_rooms(hs, client, 3)
    assert set(joined) == set(rooms)
    # Every page reaches back to the room's creation, which the creator may see.
    assert all(r["timeline"]["events"][0]["type"] == "m.room.create" for r in joined.values())
    assert ten_rooms <= two_rooms + SLACK, (two_rooms, ten_rooms)


async def test_a_woken_long_poll_reads_neither_memberships_nor_which_rooms_moved_from_the_database(hs, client):
    # The persister's commits answer them (homeserver/streams/recent.py); the first poll after the
    # server started remembers the user's memberships.
    from tests.sync.test_sync import bodies, sync

    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    rooms = []
    for _ in range(3):
        room_id = await bob.create_room(preset="public_chat")
        await alice.join(room_id)
        rooms.append(room_id)
    since = (await sync(alice, timeout=1))["next_batch"]
    await bob.send(rooms[0], "warm up")
    since = (await sync(alice, since=since, timeout=5000))["next_batch"]
    # A burst past the timeline limit: the gapless page's "where does a room overflow" too.
    for n in range(12):
        await bob.send(rooms[1], f"burst {n}")
    names: list[str] = []
    hs.db.on_transaction, previous = (lambda name, write, elapsed: names.append(name)), hs.db.on_transaction
    try:
        reply = await sync(alice, since=since, timeout=5000, filter={"room": {"timeline": {"limit": 10}}})
    finally:
        hs.db.on_transaction = previous
    assert bodies(reply["rooms"]["join"][rooms[1]]) == [f"burst {n}" for n in range(10)]
    assert not reply["rooms"]["join"][rooms[1]]["timeline"]["limited"]
    assert not {"sync_memberships_at", "sync_membership_changes", "sync_rooms_with_new_events",
                "sync_first_overflowing_event"} & set(names)
    assert "sync_timelines" in names
