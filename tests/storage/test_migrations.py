"""Schema migrations: applied once, recorded, refused when the database is newer than the code."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from storage import Database, MigrationError, SchemaTooNewError, create_database
from storage.engine import open_database
from storage.migrations import SCHEMA_DIR, apply_migrations, current_schema_version, load_migrations
from storage.sql import POSTGRES, SQLITE


def write_schema(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


async def table_exists(db: Database, table: str) -> bool:
    async def probe(txn: Any) -> bool:
        if txn.dialect.is_postgres:
            sql = "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?"
        else:
            sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return await txn.fetch_one(sql, (table,)) is not None

    return await db.run_interaction("table_exists", probe, write=False)


async def test_every_migration_is_applied_and_recorded(db: Database) -> None:
    expected = [(m.version, m.name) for m in load_migrations(db.dialect)]
    assert expected, "there must be at least the initial schema"
    recorded = await db.fetch_all("versions", "SELECT version, name FROM schema_version ORDER BY version")
    assert recorded == expected
    assert await current_schema_version(db) == expected[-1][0]
    for table in ["users", "events", "state_groups_state", "receipts", "stream_positions"]:
        assert await table_exists(db, table), table


async def test_running_migrations_again_applies_nothing(db: Database) -> None:
    before = await db.fetch_all("versions", "SELECT version, name, applied_ts FROM schema_version")
    assert await apply_migrations(db) == []
    assert await db.fetch_all("versions", "SELECT version, name, applied_ts FROM schema_version") == before


async def test_reopening_a_migrated_database_keeps_its_data(db_config: dict[str, Any]) -> None:
    first = await create_database(db_config)
    await first.simple_insert("users", {"user_id": "@kept:x", "created_ts": 0})
    await first.close()
    second = await create_database(db_config)
    try:
        assert await second.simple_select_one("users", {"user_id": "@kept:x"}, ["user_id"]) == {
            "user_id": "@kept:x"
        }
        assert await second.fetch_value("n", "SELECT COUNT(*) FROM schema_version") == len(
            load_migrations(second.dialect)
        )
    finally:
        await second.close()


async def test_a_database_newer_than_the_code_refuses_to_start(db_config: dict[str, Any]) -> None:
    db = await create_database(db_config)
    await db.execute(
        "future",
        "INSERT INTO schema_version (version, name, applied_ts) VALUES (?, ?, ?)",
        (999, "future", 0),
    )
    await db.close()
    with pytest.raises(SchemaTooNewError) as caught:
        await create_database(db_config)
    assert caught.value.database_version == 999
    assert "999" in str(caught.value) and "newer" in str(caught.value)


async def test_new_migrations_apply_on_top_of_recorded_ones_in_order(
    db_config: dict[str, Any], tmp_path: Path
) -> None:
    schema = write_schema(tmp_path / "schema", {"001_first.sql": "CREATE TABLE t1 (x INTEGER);"})
    db = await open_database(db_config)
    try:
        assert await apply_migrations(db, load_migrations(db.dialect, schema)) == [1]
        write_schema(
            schema,
            {
                "002_second.sqlite.sql": "CREATE TABLE t2 (x INTEGER); INSERT INTO t2 VALUES (2);",
                "002_second.postgres.sql": "CREATE TABLE t2 (x INTEGER); INSERT INTO t2 VALUES (20);",
                "003_third.sql": "ALTER TABLE t2 ADD COLUMN y TEXT DEFAULT 'a;b';",
            },
        )
        assert await apply_migrations(db, load_migrations(db.dialect, schema)) == [2, 3]
        expected = 20 if db.dialect.is_postgres else 2
        assert await db.fetch_one("t2", "SELECT x, y FROM t2") == (expected, "a;b")
        assert await current_schema_version(db) == 3
    finally:
        await db.close()


async def test_a_lower_numbered_migration_that_arrives_later_still_runs(
    db_config: dict[str, Any], tmp_path: Path
) -> None:
    schema = write_schema(tmp_path / "schema", {"001_first.sql": "CREATE TABLE t1 (x INTEGER);",
                                                "013_late.sql": "CREATE TABLE t13 (x INTEGER);"})
    db = await open_database(db_config)
    try:
        assert await apply_migrations(db, load_migrations(db.dialect, schema)) == [1, 13]
        write_schema(schema, {"010_gap.sql": "CREATE TABLE t10 (x INTEGER);"})
        assert await apply_migrations(db, load_migrations(db.dialect, schema)) == [10]
        assert await table_exists(db, "t10")
        assert await apply_migrations(db, load_migrations(db.dialect, schema)) == []
    finally:
        await db.close()


async def test_a_failing_migration_leaves_no_trace(db_config: dict[str, Any], tmp_path: Path) -> None:
    schema = write_schema(
        tmp_path / "schema",
        {
            "001_fine.sql": "CREATE TABLE fine (x INTEGER);",
            "002_broken.sql": "CREATE TABLE half (x INTEGER); THIS IS NOT SQL;",
        },
    )
    db = await open_database(db_config)
    try:
        with pytest.raises(Exception, match="(?i)syntax"):
            await apply_migrations(db, load_migrations(db.dialect, schema))
        assert await current_schema_version(db) == 0
        assert not await table_exists(db, "fine")
        assert not await table_exists(db, "half")
    finally:
        await db.close()


async def test_concurrent_startups_apply_each_migration_exactly_once(db_config: dict[str, Any]) -> None:
    databases = await asyncio.gather(*(create_database(db_config) for _ in range(3)))
    try:
        versions = await databases[0].fetch_all(
            "versions", "SELECT version FROM schema_version ORDER BY version"
        )
        assert versions == [(m.version,) for m in load_migrations(databases[0].dialect)]
    finally:
        for db in databases:
            await db.close()


def test_engine_specific_files_replace_the_shared_one_for_their_engine(tmp_path: Path) -> None:
    schema = write_schema(
        tmp_path,
        {
            "001_base.sql": "CREATE TABLE a (id {{AUTO_ID}});",
            "002_diff.sqlite.sql": "-- sqlite",
            "002_diff.postgres.sql": "-- postgres",
        },
    )
    sqlite, postgres = load_migrations(SQLITE, schema), load_migrations(POSTGRES, schema)
    assert [(m.version, m.name) for m in sqlite] == [(1, "base"), (2, "diff")]
    assert sqlite[1].sql == "-- sqlite" and postgres[1].sql == "-- postgres"
    assert "AUTOINCREMENT" in sqlite[0].sql and "IDENTITY" in postgres[0].sql


@pytest.mark.parametrize(
    ("files", "complaint"),
    [
        ({"1-bad-name.sql": ""}, "not named"),
        ({"001_a.sql": "", "001_b.sql": ""}, "two names"),
        ({"001_a.sqlite.sql": ""}, "no file for postgres"),
        ({"001_a.sql": "", "001_a.postgres.sql": ""}, "both a shared file"),
        ({"001_a.sql": "x {{MISSING}}"}, "unknown schema token"),
    ],
)
def test_inconsistent_schema_directories_are_rejected(
    tmp_path: Path, files: dict[str, str], complaint: str
) -> None:
    schema = write_schema(tmp_path, files)
    with pytest.raises((MigrationError, ValueError), match=complaint):
        load_migrations(POSTGRES, schema)


def test_the_shipped_schema_loads_for_both_engines() -> None:
    assert [m.version for m in load_migrations(SQLITE)] == [m.version for m in load_migrations(POSTGRES)]
    assert any(SCHEMA_DIR.glob("001_*.sql"))
