"""create_database: config validation, engine set-up, pool limits."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from storage import Database, DatabaseConfigError, Transaction, create_database
from storage.engine import parse_database_config
from tests.storage.dbconfig import make_config


@pytest.mark.parametrize(
    ("config", "complaint"),
    [
        ({"engine": "oracle"}, "database.engine: unknown engine 'oracle'"),
        ({"engine": "sqlite"}, "database.path: required"),
        ({"engine": "postgres"}, "database.dsn: required"),
        (
            {"engine": "sqlite", "path": "x.db", "dsn": "host=x"},
            "database.dsn: not an option for the sqlite engine",
        ),
        ({"engine": "postgres", "dsn": "host=x", "pool_max": "ten"}, "database.pool_max: expected int"),
        ({"engine": "postgres", "dsn": "host=x", "pool_min": True}, "database.pool_min: expected int"),
        ({"engine": "sqlite", "path": "x.db", "readers": 1.5}, "database.readers: expected int"),
    ],
)
def test_bad_configs_are_rejected_with_the_offending_key(config: dict[str, Any], complaint: str) -> None:
    with pytest.raises(DatabaseConfigError) as caught:
        parse_database_config(config)
    assert complaint in str(caught.value)


def test_defaults_are_filled_in_and_engine_aliases_accepted() -> None:
    engine, options = parse_database_config({"engine": "postgresql", "dsn": "host=x", "pool_timeout": 5})
    assert engine == "postgres"
    assert options == {"dsn": "host=x", "pool_min": 1, "pool_max": 10, "pool_timeout": 5.0, "upkeep_interval_s": 15.0,
                       "max_retries": 8}
    engine, options = parse_database_config({"path": "h.db"})
    assert engine == "sqlite" and options["readers"] == 2 and options["synchronous"] == "FULL"


async def test_invalid_engine_options_are_reported_before_connecting(tmp_path: Path) -> None:
    with pytest.raises(DatabaseConfigError, match="synchronous"):
        await create_database(
            {"engine": "sqlite", "path": str(tmp_path / "h.db"), "synchronous": "SOMETIMES"}
        )
    with pytest.raises(DatabaseConfigError, match="pool_min"):
        await create_database({"engine": "postgres", "dsn": "host=127.0.0.1", "pool_min": 5, "pool_max": 2})


async def test_sqlite_databases_run_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    db = await create_database({"engine": "sqlite", "path": str(tmp_path / "h.db")})
    try:
        assert await db.fetch_value("mode", "PRAGMA journal_mode") == "wal"
        assert (tmp_path / "h.db-wal").exists()
        # 2 = FULL
        assert await db.run_interaction("sync", Transaction.fetch_value, "PRAGMA synchronous") == 2
    finally:
        await db.close()


async def test_an_in_memory_sqlite_database_serves_reads_through_its_writer() -> None:
    db = await create_database({"engine": "sqlite", "path": ":memory:"})
    try:
        await db.simple_insert("users", {"user_id": "@mem:x", "created_ts": 0})
        assert await db.simple_select_one("users", {"user_id": "@mem:x"}, ["user_id"]) == {
            "user_id": "@mem:x"
        }
    finally:
        await db.close()


async def test_the_postgres_pool_never_exceeds_its_maximum_size(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db: Database = await create_database(make_config("postgres", request, tmp_path, pool_min=1, pool_max=2))
    running = peak = 0

    async def hold(txn: Transaction) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await txn.execute("SELECT pg_sleep(0.05)")
        running -= 1

    try:
        # Reads may use only part of the pool (a connection stays free for writes); together they
        # fill it and never go past it.
        await asyncio.gather(*(db.run_interaction("hold", hold, write=False) for _ in range(6)),
                             *(db.run_interaction("hold", hold, write=True) for _ in range(3)))
        assert peak == 2
    finally:
        await db.close()


async def test_closing_lets_the_running_write_commit(db: Database, db_config: dict[str, Any]) -> None:
    started = asyncio.Event()

    async def slow(txn: Transaction) -> None:
        await txn.insert("users", {"user_id": "@slow:x", "created_ts": 0})
        started.set()
        await asyncio.sleep(0.1)

    writer = asyncio.create_task(db.run_interaction("slow", slow))
    await started.wait()
    await db.close()
    await writer
    reopened = await create_database(db_config)
    try:
        assert await reopened.simple_select_one("users", {"user_id": "@slow:x"}, ["user_id"]) is not None
    finally:
        await reopened.close()
