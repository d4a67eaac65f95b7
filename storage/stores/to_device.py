"""The to-device inbox: messages queued per device on the `to_device` stream until a sync acknowledges them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction
from storage.streams import allocate_stream_positions, get_stream_position


async def forget_device_txn(txn: Transaction, user_id: str, device_id: str) -> None:
    """Forget a deleted device's undelivered messages and the transaction IDs of its sends."""
    await txn.execute("DELETE FROM to_device_inbox WHERE user_id = ? AND device_id = ?", (user_id, device_id))
    await txn.execute("DELETE FROM to_device_txns WHERE user_id = ? AND device_id = ?", (user_id, device_id))

TO_DEVICE = "to_device"
ALL_DEVICES = "*"
TXN_MEMORY_MS = 24 * 3600 * 1000


class ToDeviceStore:
    def __init__(self, db: Database):
        self.db = db

    async def current_position(self) -> int:
        return await self.db.run_interaction("to_device_position", get_stream_position, TO_DEVICE, write=False)

    async def add_messages(self, sender_user_id: str, sender_device_id: str, txn_id: str,
                           messages: Sequence[tuple[str, str, dict[str, Any]]], now_ms: int
                           ) -> tuple[int, set[str]] | None:
        """Queue (user_id, device_id or `*`, message) deliveries under one new position.

        Returns (position, recipients who got something), or None when the sender already used
        `txn_id` (a retried request: nothing is queued twice). `*` means every device the user has now.
        """

        async def txn_fn(txn: Transaction) -> tuple[int, set[str]] | None:
            # Clients retry within minutes; a day of memory per device keeps the table small.
            await txn.execute("DELETE FROM to_device_txns WHERE user_id = ? AND device_id = ? AND added_ts < ?",
                              (sender_user_id, sender_device_id, now_ms - TXN_MEMORY_MS))
            first_use = await txn.fetch_all(
                "INSERT INTO to_device_txns (user_id, device_id, txn_id, added_ts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id, device_id, txn_id) DO NOTHING RETURNING txn_id",
                (sender_user_id, sender_device_id, txn_id, now_ms))
            if not first_use:
                return None
            (position,) = await allocate_stream_positions(txn, TO_DEVICE)
            rows: dict[tuple[str, str], str] = {}
            devices_of: dict[str, list[str]] = {}
            for user_id, device_id, message in messages:
                if device_id == ALL_DEVICES:
                    if user_id not in devices_of:
                        devices_of[user_id] = [r[0] for r in await txn.fetch_all(
                            "SELECT device_id FROM devices WHERE user_id = ?", (user_id,))]
                    targets = devices_of[user_id]
                else:
                    exists = await txn.fetch_value(
                        "SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id))
                    targets = [device_id] if exists else []
                for target in targets:
                    rows[(user_id, target)] = encode_str(message)
            await txn.insert_many("to_device_inbox", ("stream_id", "user_id", "device_id", "message_json"),
                                  [(position, user_id, device_id, text) for (user_id, device_id), text in rows.items()])
            return position, {user_id for user_id, _ in rows}

        return await self.db.run_interaction("add_to_device_messages", txn_fn, isolation="read_committed")

    async def get_messages(self, user_id: str, device_id: str, after: int, upto: int, limit: int
                           ) -> list[tuple[int, dict[str, Any]]]:
        """Up to `limit` queued messages with after < position <= upto, oldest first."""
        rows = await self.db.fetch_all(
            "get_to_device_messages",
            "SELECT stream_id, message_json FROM to_device_inbox WHERE user_id = ? AND device_id = ?"
            " AND stream_id > ? AND stream_id <= ? ORDER BY stream_id LIMIT ?",
            (user_id, device_id, after, upto, limit))
        return [(int(stream_id), decode(text)) for stream_id, text in rows]

    async def delete_messages(self, user_id: str, device_id: str, upto: int) -> int:
        """Drop the messages a sync acknowledged (position <= upto); how many went."""
        return await self.db.execute(
            "delete_to_device_messages",
            "DELETE FROM to_device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?",
            (user_id, device_id, upto))

    async def count_messages(self, user_id: str, device_id: str) -> int:
        return int(await self.db.fetch_value(
            "count_to_device_messages",
            "SELECT COUNT(*) FROM to_device_inbox WHERE user_id = ? AND device_id = ?", (user_id, device_id)))
