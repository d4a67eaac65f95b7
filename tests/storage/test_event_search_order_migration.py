"""Migration 160: the search index keeps each text's stream position and timestamp, filled in for
texts indexed before it, so the newest-first order and paging work on an upgraded index."""

from __future__ import annotations

from typing import Any

from storage.engine import open_database
from storage.migrations import apply_migrations, load_migrations
from storage.stores.search import SearchQuery, SearchStore
from storage.stores.timeline import EventConditions

ROOM = "!room:example.org"


async def _old_index_row(db: Any, event_id: str, text: str) -> None:
    if db.dialect.is_postgres:
        await db.execute("old_index", "INSERT INTO event_search (event_id, room_id, key, vector)"
                         " VALUES (?, ?, 'content.body', to_tsvector('english', ?))", (event_id, ROOM, text))
    else:
        await db.execute("old_index", "INSERT INTO event_search (value, event_id, room_id, key)"
                         " VALUES (?, ?, ?, 'content.body')", (text, event_id, ROOM))


def _query(**fields: Any) -> SearchQuery:
    base: dict[str, Any] = {"words": ("marmalade",), "room_ids": (ROOM,), "keys": ("content.body",),
                            "conditions": EventConditions(), "order_by_rank": False, "limit": 10}
    return SearchQuery(**{**base, **fields})


async def test_texts_indexed_before_the_migration_get_their_stream_position(db_config: dict[str, Any]) -> None:
    db = await open_database(db_config)
    try:
        migrations = load_migrations(db.dialect)
        await apply_migrations(db, [m for m in migrations if m.version < 160])
        for n in range(1, 4):
            await db.simple_insert("events", {
                "event_id": f"$e{n}", "room_id": ROOM, "type": "m.room.message", "sender": "@a:example.org",
                "stream_ordering": n * 10, "depth": n, "origin_server_ts": 1000 + n, "received_ts": 0})
            await _old_index_row(db, f"$e{n}", f"marmalade number {n}")
        # A text whose event is gone could never be returned; the migration drops it.
        await _old_index_row(db, "$gone", "marmalade without an event")
        if not db.dialect.is_postgres:
            # The old FTS5 table had no key: an event indexed twice keeps one row (its first).
            await _old_index_row(db, "$e1", "marmalade number 1 again")

        assert 160 in await apply_migrations(db, migrations)

        if db.dialect.is_postgres:
            rows = await db.fetch_all("check", "SELECT event_id, stream_ordering, origin_server_ts FROM event_search")
        else:
            rows = await db.fetch_all("check", "SELECT event_id, rowid, origin_server_ts FROM event_search")
        assert sorted(tuple(r) for r in rows) == [("$e1", 10, 1001), ("$e2", 20, 1002), ("$e3", 30, 1003)]

        store = SearchStore(db)
        hits, count = await store.search(_query())
        assert [h.row.event_id for h in hits] == ["$e3", "$e2", "$e1"]
        assert count == 3
        hits, _ = await store.search(_query(before_stream=30))
        assert [h.row.event_id for h in hits] == ["$e2", "$e1"]
        # Texts indexed after the migration take their position from `events` too.
        await db.simple_insert("events", {
            "event_id": "$e4", "room_id": ROOM, "type": "m.room.message", "sender": "@a:example.org",
            "stream_ordering": 40, "depth": 4, "origin_server_ts": 1004, "received_ts": 0})
        await store.index_batch([("$e4", ROOM, "content.body", "more marmalade")], [], stage="search_index", upto=40)
        await store.index_batch([("$e4", ROOM, "content.body", "more marmalade")], [], stage="search_index", upto=40)
        hits, count = await store.search(_query(limit=2))
        assert [h.row.event_id for h in hits] == ["$e4", "$e3"]
        assert count == 4
        # Unindexing (a redaction) finds the row by the event.
        await store.remove_event("$e3")
        hits, count = await store.search(_query())
        assert [h.row.event_id for h in hits] == ["$e4", "$e2", "$e1"]
        assert count == 3
    finally:
        await db.close()
