"""Migration 180: PostgreSQL's index of search texts takes rows into its tree at once (no GIN
pending list), so a search reads the index alone however far behind vacuuming is."""

from __future__ import annotations

from typing import Any

from storage.engine import open_database
from storage.migrations import apply_migrations, load_migrations

ROOM = "!room:example.org"


async def test_texts_waiting_in_the_pending_list_are_moved_into_the_index(db_config: dict[str, Any]) -> None:
    db = await open_database(db_config)
    try:
        migrations = load_migrations(db.dialect)
        await apply_migrations(db, [m for m in migrations if m.version < 180])
        if db.dialect.is_postgres:
            await db.execute("pending", "CREATE EXTENSION IF NOT EXISTS pgstattuple")
            for n in range(1, 4):
                await db.execute("old_index", "INSERT INTO event_search (event_id, room_id, key, vector,"
                                 " stream_ordering, origin_server_ts) VALUES (?, ?, 'content.body',"
                                 " to_tsvector('english', ?), ?, 0)", (f"$e{n}", ROOM, f"marmalade {n}", n))
            assert await db.fetch_value("pending", "SELECT pending_tuples FROM pgstatginindex("
                                        "'event_search_vector'::regclass)") == 3

        assert 180 in await apply_migrations(db, migrations)

        if db.dialect.is_postgres:
            assert await db.fetch_value("pending", "SELECT pending_tuples FROM pgstatginindex("
                                        "'event_search_vector'::regclass)") == 0
            options = await db.fetch_value("options", "SELECT reloptions FROM pg_class"
                                           " WHERE relname = 'event_search_vector'")
            assert "fastupdate=off" in options
            await db.execute("new_text", "INSERT INTO event_search (event_id, room_id, key, vector,"
                             " stream_ordering, origin_server_ts) VALUES ('$e9', ?, 'content.body',"
                             " to_tsvector('english', 'marmalade'), 9, 0)", (ROOM,))
            assert await db.fetch_value("pending", "SELECT pending_tuples FROM pgstatginindex("
                                        "'event_search_vector'::regclass)") == 0
            assert await db.fetch_value("found", "SELECT COUNT(*) FROM event_search"
                                        " WHERE vector @@ to_tsquery('english', 'marmalade:*')") == 4
    finally:
        await db.close()
