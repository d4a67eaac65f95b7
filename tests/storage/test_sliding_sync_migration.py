"""Migration 170: sliding sync connections stored per room; the old per-position rows are dropped."""

from __future__ import annotations

from typing import Any

from storage.engine import open_database
from storage.migrations import apply_migrations, load_migrations
from tests.storage.test_migrations import table_exists


async def test_old_connection_rows_are_dropped_and_the_per_room_tables_start_empty(db_config: dict[str, Any]) -> None:
    db = await open_database(db_config)
    try:
        migrations = load_migrations(db.dialect)
        await apply_migrations(db, [m for m in migrations if m.version < 170])
        await db.execute("old_position",
                         "INSERT INTO sliding_sync_positions (user_id, device_id, conn_id, pos, created_ts, token, state)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)", ("@a:x", "D", "main", "abc.1", 1, "s0", "{}"))
        applied = await apply_migrations(db, migrations)
        assert 170 in applied
        # A client holding `abc.1` gets M_UNKNOWN_POS and starts over (docs/decisions.md).
        assert not await table_exists(db, "sliding_sync_positions")
        for table in ("sliding_sync_connection_positions", "sliding_sync_connection_rooms"):
            assert await db.fetch_all("rows", f"SELECT * FROM {table}", ()) == []
    finally:
        await db.close()
