"""Concurrency: retries on transient conflicts, serialized writes, a free event loop, stream order."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from storage import Database, RetriesExhaustedError, Transaction, create_database
from storage.priority import bulk_reads
from storage.streams import EVENTS, EVENTS_BACKFILL, allocate_stream_positions, get_stream_position
from tests.storage.dbconfig import make_config


async def test_concurrent_read_modify_write_increments_are_never_lost(db: Database) -> None:
    await db.simple_insert("stream_positions", {"stream_name": "counter", "position": 0})
    attempts = 0

    async def increment(txn: Transaction) -> None:
        nonlocal attempts
        attempts += 1
        value = await txn.fetch_value("SELECT position FROM stream_positions WHERE stream_name = 'counter'")
        await asyncio.sleep(0.01)  # widen the race window
        await txn.execute(
            "UPDATE stream_positions SET position = ? WHERE stream_name = 'counter'", (value + 1,)
        )

    await asyncio.gather(*(db.run_interaction("increment", increment) for _ in range(6)))
    assert (
        await db.fetch_value("c", "SELECT position FROM stream_positions WHERE stream_name = 'counter'") == 6
    )
    if db.dialect.is_postgres:
        # Lost updates were prevented by serialization failures and retries, not by luck.
        assert attempts > 6


async def test_non_transient_errors_are_not_retried(db: Database) -> None:
    await db.simple_insert("users", {"user_id": "@taken:x", "created_ts": 0})
    attempts = 0

    async def clash(txn: Transaction) -> None:
        nonlocal attempts
        attempts += 1
        await txn.insert("users", {"user_id": "@taken:x", "created_ts": 0})

    with pytest.raises(Exception, match="(?i)unique"):
        await db.run_interaction("clash", clash)
    assert attempts == 1


async def test_postgres_serialization_failures_are_retried(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = await create_database(make_config("postgres", request, tmp_path))
    try:
        await db.simple_insert("stream_positions", {"stream_name": "counter", "position": 0})
        snapshot_taken = asyncio.Event()
        other_committed = asyncio.Event()
        attempts = 0

        async def add_ten(txn: Transaction) -> None:
            nonlocal attempts
            attempts += 1
            await txn.execute("SELECT position FROM stream_positions WHERE stream_name = 'counter'")
            snapshot_taken.set()
            await other_committed.wait()
            await txn.execute(
                "UPDATE stream_positions SET position = position + 10 WHERE stream_name = 'counter'"
            )

        async def add_one_in_between() -> None:
            await snapshot_taken.wait()
            await db.execute(
                "add_one", "UPDATE stream_positions SET position = position + 1 WHERE stream_name = 'counter'"
            )
            other_committed.set()

        await asyncio.gather(db.run_interaction("add_ten", add_ten), add_one_in_between())
        assert attempts == 2
        assert (
            await db.fetch_value("c", "SELECT position FROM stream_positions WHERE stream_name = 'counter'")
            == 11
        )
    finally:
        await db.close()


def hold_sqlite_write_lock(path: str) -> sqlite3.Connection:
    """Another process's writer, as far as our database can tell."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    return other


async def test_sqlite_database_is_locked_is_retried_until_the_lock_goes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    config = make_config("sqlite", request, tmp_path, busy_timeout_ms=20)
    db = await create_database(config)
    try:
        other = hold_sqlite_write_lock(config["path"])
        asyncio.get_running_loop().call_later(0.3, other.execute, "ROLLBACK")
        started = time.monotonic()
        await db.simple_insert("users", {"user_id": "@patient:x", "created_ts": 0})
        assert time.monotonic() - started >= 0.25
        assert await db.simple_select_one("users", {"user_id": "@patient:x"}, ["user_id"]) is not None
        other.close()
    finally:
        await db.close()


async def test_sqlite_gives_up_after_the_retry_budget_with_a_clear_error(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    config = make_config("sqlite", request, tmp_path, busy_timeout_ms=10, max_retries=2)
    db = await create_database(config)
    other = hold_sqlite_write_lock(config["path"])
    try:
        with pytest.raises(RetriesExhaustedError, match="3 attempts"):
            await db.simple_insert("users", {"user_id": "@never:x", "created_ts": 0})
    finally:
        other.execute("ROLLBACK")
        other.close()
        await db.close()


async def test_sqlite_write_transactions_never_overlap(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = await create_database(make_config("sqlite", request, tmp_path))
    timeline: list[tuple[str, int]] = []

    async def write(txn: Transaction, n: int) -> None:
        timeline.append(("start", n))
        await txn.insert("users", {"user_id": f"@u{n}:x", "created_ts": n})
        await asyncio.sleep(0.005)
        await txn.insert("profiles", {"user_id": f"@u{n}:x", "displayname": str(n)})
        timeline.append(("end", n))

    try:
        await asyncio.gather(*(db.run_interaction("write", write, n) for n in range(8)))
        pairs = [timeline[i : i + 2] for i in range(0, len(timeline), 2)]
        assert all(start == ("start", end[1]) and end[0] == "end" for start, end in pairs)
        assert await db.fetch_value("n", "SELECT COUNT(*) FROM profiles") == 8
    finally:
        await db.close()


async def test_a_cancelled_interaction_is_rolled_back_and_the_writer_stays_usable(db: Database) -> None:
    inserted = asyncio.Event()

    async def stuck(txn: Transaction) -> None:
        await txn.insert("users", {"user_id": "@cancelled:x", "created_ts": 0})
        inserted.set()
        await asyncio.sleep(60)

    task = asyncio.create_task(db.run_interaction("stuck", stuck))
    await inserted.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await db.simple_insert("users", {"user_id": "@after:x", "created_ts": 0})
    rows = await db.simple_select_list("users", {}, ["user_id"])
    assert rows == [{"user_id": "@after:x"}]


async def test_an_interaction_cancelled_as_its_connection_arrives_is_cancelled_not_run(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # One connection (SQLite: its one writer), so the second interaction waits for the first
    # one's, and is cancelled at every moment of that hand-over. A task told to stop that carried
    # on instead would keep whoever awaits it waiting: a federation request once hung five
    # minutes on this.
    one_connection = {"pool_min": 1, "pool_max": 1} if engine == "postgres" else {}
    db = await create_database(make_config(engine, request, tmp_path, **one_connection))

    async def write(txn: Transaction) -> str:
        await txn.execute("UPDATE users SET created_ts = created_ts + 1 WHERE user_id = ?", ("@nobody:x",))
        return "ran"

    try:
        carried_on = 0
        rng = random.Random(7)
        for _ in range(300):
            first = asyncio.create_task(db.run_interaction("first", write))
            second = asyncio.create_task(db.run_interaction("second", write))
            for _ in range(rng.randint(0, 30)):
                await asyncio.sleep(0)
            was_pending = second.cancel()
            first_result, second_result = await asyncio.gather(first, second, return_exceptions=True)
            assert first_result == "ran"
            if was_pending and second_result == "ran":
                carried_on += 1
        assert carried_on == 0
    finally:
        await db.close()


async def run_while_ticking(awaitable: Any, interval: float = 0.005) -> tuple[Any, int, float]:
    """Await something while counting how often a timer coroutine gets to run meanwhile."""
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            await asyncio.sleep(interval)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    try:
        result = await awaitable
    finally:
        done = True
        await ticking
    return result, ticks, time.monotonic() - started


async def test_a_slow_query_does_not_block_the_event_loop(db: Database) -> None:
    if db.dialect.is_postgres:
        sql, expected = "SELECT 42 FROM pg_sleep(0.4)", 42
    else:
        sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) SELECT COUNT(*) FROM c"
        expected = 2000000
    result, ticks, elapsed = await run_while_ticking(db.fetch_value("slow", sql))
    assert result == expected
    assert elapsed > 0.1, "the query was meant to be slow"
    # A blocked loop would tick about once; a free one ticks every few milliseconds.
    assert ticks >= elapsed / 0.005 * 0.3


async def test_concurrent_allocations_give_unique_positions_and_readers_never_see_gaps(db: Database) -> None:
    writers_done = False
    observed_gaps: list[list[int]] = []

    async def persist(txn: Transaction, n: int) -> int:
        [position] = await allocate_stream_positions(txn, EVENTS)
        await asyncio.sleep(0.002 * (n % 3))  # let later allocators overtake in wall-clock time
        await txn.insert(
            "events",
            {
                "event_id": f"$e{n}",
                "room_id": "!r:x",
                "type": "m.room.message",
                "sender": "@a:x",
                "stream_ordering": position,
                "depth": n,
                "origin_server_ts": 0,
                "received_ts": 0,
            },
        )
        return position

    async def watch() -> None:
        while not writers_done:
            rows = await db.fetch_all("watch", "SELECT stream_ordering FROM events ORDER BY stream_ordering")
            visible = [r[0] for r in rows]
            if visible != list(range(1, len(visible) + 1)):
                observed_gaps.append(visible)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    positions = await asyncio.gather(
        *(db.run_interaction("persist", persist, n, isolation="read_committed") for n in range(20))
    )
    writers_done = True
    await watcher
    assert sorted(positions) == list(range(1, 21))
    assert observed_gaps == []
    assert await db.run_interaction("pos", get_stream_position, EVENTS, write=False) == 20


async def test_backfill_positions_run_downwards_without_touching_the_forward_stream(db: Database) -> None:
    forward = await db.run_interaction("alloc", allocate_stream_positions, EVENTS, 3)
    backward = await db.run_interaction(
        "alloc", allocate_stream_positions, EVENTS_BACKFILL, 2, backwards=True
    )
    more_backward = await db.run_interaction(
        "alloc", allocate_stream_positions, EVENTS_BACKFILL, backwards=True
    )
    assert forward == [1, 2, 3]
    assert backward == [-1, -2]
    assert more_backward == [-3]
    assert await db.run_interaction("pos", get_stream_position, EVENTS, write=False) == 3
    assert await db.run_interaction("pos", get_stream_position, EVENTS_BACKFILL, write=False) == -3
    assert await db.run_interaction("pos", get_stream_position, "never_used", write=False) == 0


async def test_a_write_is_not_kept_waiting_behind_more_reads_than_there_are_connections(db: Database) -> None:
    # A thousand /sync long polls woken at once read in a burst; a sender's write must still get a
    # connection (PostgreSQL: part of the pool is kept for writes; SQLite: the writer has its own).
    release = asyncio.Event()
    reading = 0

    async def slow_read(txn: Transaction) -> None:
        nonlocal reading
        await txn.fetch_value("SELECT 1")
        reading += 1
        await release.wait()

    readers = [asyncio.create_task(db.run_interaction("slow_read", slow_read, write=False)) for _ in range(12)]
    try:
        await asyncio.sleep(0.3)
        assert reading >= 1
        await asyncio.wait_for(
            db.simple_insert("stream_positions", {"stream_name": "written", "position": 1}), 10)
        assert not any(task.done() for task in readers)
    finally:
        release.set()
        await asyncio.gather(*readers)
    assert await db.fetch_value("w", "SELECT position FROM stream_positions WHERE stream_name = 'written'") == 1


async def test_a_read_outside_bulk_work_gets_the_next_free_connection_before_queued_bulk_reads(db: Database) -> None:
    # A send's reads must not wait behind the reads a wake of many /sync long polls queued first.
    release = asyncio.Event()
    order: list[str] = []

    async def hold(txn: Transaction) -> None:
        await txn.fetch_value("SELECT 1")
        await release.wait()

    async def note(txn: Transaction, label: str) -> None:
        await txn.fetch_value("SELECT 1")
        order.append(label)

    async def in_bulk(name: str, func: Any, *args: Any) -> None:
        bulk_reads()
        await db.run_interaction(name, func, *args, write=False)

    holders = [asyncio.create_task(in_bulk("hold", hold)) for _ in range(12)]  # more than the connections
    await asyncio.sleep(0.3)
    queued_bulk = [asyncio.create_task(in_bulk("bulk", note, "bulk")) for _ in range(3)]
    await asyncio.sleep(0.1)
    urgent = asyncio.create_task(db.run_interaction("urgent", note, "urgent", write=False))
    await asyncio.sleep(0.1)
    assert order == []
    release.set()
    await asyncio.gather(*holders, *queued_bulk, urgent)
    assert order[0] == "urgent"
    assert sorted(order) == ["bulk", "bulk", "bulk", "urgent"]


async def test_a_reader_left_inside_its_read_transaction_starts_the_next_one_on_a_fresh_snapshot(
    db: Database,
) -> None:
    # Under load a reader's COMMIT rides on its next hop: the next read must still see later writes.
    await db.simple_insert("stream_positions", {"stream_name": "seen", "position": 1})
    release = asyncio.Event()

    async def hold(txn: Transaction) -> None:
        await txn.fetch_value("SELECT 1")
        await release.wait()

    async def read(txn: Transaction) -> int:
        return await txn.fetch_value("SELECT position FROM stream_positions WHERE stream_name = 'seen'")

    holders = [asyncio.create_task(db.run_interaction("hold", hold, write=False)) for _ in range(12)]
    await asyncio.sleep(0.2)
    first = [asyncio.create_task(db.run_interaction("read", read, write=False)) for _ in range(4)]
    release.set()
    assert await asyncio.gather(*first) == [1, 1, 1, 1]
    await asyncio.gather(*holders)
    await db.simple_update("stream_positions", {"stream_name": "seen"}, {"position": 2})
    assert await asyncio.gather(*(db.run_interaction("read", read, write=False) for _ in range(8))) == [2] * 8
