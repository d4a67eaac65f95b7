"""Migration 020: stored transaction keys are rewritten to the path-scoped form the server now looks up."""

from __future__ import annotations

from typing import Any

from homeserver.rooms.transactions import scoped_txn_id
from storage.engine import open_database
from storage.migrations import apply_migrations, load_migrations


async def test_stored_send_and_redaction_txn_ids_become_path_scoped_keys(db_config: dict[str, Any]) -> None:
    db = await open_database(db_config)
    try:
        migrations = load_migrations(db.dialect)
        await apply_migrations(db, [m for m in migrations if m.version < 20])
        room = "!room:example.org"
        for n, (event_id, event_type) in enumerate([("$sent", "m.room.message"), ("$redaction", "m.room.redaction")]):
            await db.simple_insert("events", {
                "event_id": event_id, "room_id": room, "type": event_type, "sender": "@a:example.org",
                "stream_ordering": n + 1, "depth": n + 1, "origin_server_ts": 0, "received_ts": 0})
            await db.simple_insert("event_txn_ids", {
                "user_id": "@a:example.org", "device_id": "DEV", "txn_id": "t:1 é", "room_id": room,
                "event_id": event_id, "inserted_ts": 0} if n == 0 else {
                "user_id": "@a:example.org", "device_id": "DEV", "txn_id": "r|2", "room_id": room,
                "event_id": event_id, "inserted_ts": 0})
        await db.simple_insert("redactions", {"event_id": "$redaction", "redacts": "$sent", "received_ts": 0})

        assert 20 in await apply_migrations(db, migrations)

        rows = dict(await db.fetch_all("keys", "SELECT event_id, txn_id FROM event_txn_ids"))
        assert rows == {
            "$sent": scoped_txn_id("send", room, "m.room.message", "t:1 é"),
            "$redaction": scoped_txn_id("redact", room, "$sent", "r|2"),
        }
    finally:
        await db.close()
