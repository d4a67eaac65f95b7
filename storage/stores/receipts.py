"""Read receipts: the latest receipt per (room, receipt type, user, thread), on the `receipts` stream.

The `receipts` table keeps only the latest row per key; its `stream_id` is the position of the
write that put it there, so "what changed since position X" is a range scan on `stream_id`.
A receipt replacing an earlier one must point at a later event: the comparison uses the events'
stream orderings (backfilled history has negative ones, so it sorts before live events).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction
from storage.streams import allocate_stream_positions, get_stream_position

RECEIPTS = "receipts"
# The column value of an unthreaded receipt (the table's primary key cannot hold NULL).
UNTHREADED = ""


@dataclass(frozen=True, slots=True)
class StoredReceipt:
    room_id: str
    receipt_type: str
    user_id: str
    thread_id: str | None  # None when unthreaded
    event_id: str
    stream_id: int
    data: dict[str, Any]


class ReceiptStore:
    def __init__(self, db: Database):
        self.db = db

    async def upsert_receipt(
        self, room_id: str, receipt_type: str, user_id: str, thread_id: str | None, event_id: str,
        event_stream_ordering: int | None, data: dict[str, Any],
    ) -> int | None:
        """Store a receipt unless the current one is for the same or a later event; its position or None.

        `event_stream_ordering` None: the event is not known here (a receipt from another server can
        arrive before its event), so there is nothing to compare with and the receipt is stored."""

        async def txn_fn(txn: Transaction) -> int:
            # Allocating first makes concurrent writers queue on the stream row, so the
            # compare-then-write below cannot interleave with another writer's.
            (position,) = await allocate_stream_positions(txn, RECEIPTS)
            existing = await txn.fetch_value(
                "SELECT e.stream_ordering FROM receipts AS r JOIN events AS e ON e.event_id = r.event_id"
                " WHERE r.room_id = ? AND r.receipt_type = ? AND r.user_id = ? AND r.thread_id = ?",
                (room_id, receipt_type, user_id, thread_id or UNTHREADED),
            )
            if existing is not None and event_stream_ordering is not None and int(existing) >= event_stream_ordering:
                raise _NotNewer  # rolls the allocation back: nothing to deliver
            await txn.upsert(
                "receipts",
                {"room_id": room_id, "receipt_type": receipt_type, "user_id": user_id,
                 "thread_id": thread_id or UNTHREADED},
                {"event_id": event_id, "stream_id": position, "data": encode_str(data)},
            )
            return position

        try:
            return await self.db.run_interaction("upsert_receipt", txn_fn, isolation="read_committed")
        except _NotNewer:
            return None

    async def get_current_position(self) -> int:
        return await self.db.run_interaction("receipts_position", get_stream_position, RECEIPTS, write=False)

    async def get_receipts_for_rooms(
        self, room_ids: Sequence[str], from_pos: int, to_pos: int
    ) -> list[StoredReceipt]:
        """Receipts in these rooms written after `from_pos` up to and including `to_pos`, oldest first."""
        if not room_ids:
            return []

        async def txn_fn(txn: Transaction) -> list[Any]:
            clause, params = txn.dialect.in_list("room_id", list(room_ids))
            return await txn.fetch_all(
                "SELECT room_id, receipt_type, user_id, thread_id, event_id, stream_id, data FROM receipts"
                f" WHERE {clause} AND stream_id > ? AND stream_id <= ? ORDER BY stream_id",
                (*params, from_pos, to_pos),
            )

        rows = await self.db.run_interaction("get_receipts_for_rooms", txn_fn, write=False)
        return [_receipt(row) for row in rows]

    async def get_receipts_for_user(
        self, user_id: str, room_id: str, receipt_types: Sequence[str]
    ) -> list[StoredReceipt]:
        """The user's current receipts of these types in one room (every thread)."""

        async def txn_fn(txn: Transaction) -> list[Any]:
            clause, params = txn.dialect.in_list("receipt_type", list(receipt_types))
            return await txn.fetch_all(
                "SELECT room_id, receipt_type, user_id, thread_id, event_id, stream_id, data FROM receipts"
                f" WHERE user_id = ? AND room_id = ? AND {clause}",
                (user_id, room_id, *params),
            )

        rows = await self.db.run_interaction("get_receipts_for_user", txn_fn, write=False)
        return [_receipt(row) for row in rows]


# --- for other stores' transactions (purge, erasure) -----------------------------------------


async def delete_user_receipts_txn(txn: Transaction, user_id: str) -> None:
    """Drop every receipt the user sent (erasure)."""
    await txn.execute("DELETE FROM receipts WHERE user_id = ?", (user_id,))


async def delete_room_receipts_txn(txn: Transaction, room_id: str) -> None:
    """Drop every receipt in the room (the room is being deleted)."""
    await txn.execute("DELETE FROM receipts WHERE room_id = ?", (room_id,))


async def delete_event_receipts_txn(txn: Transaction, event_ids: Sequence[str]) -> None:
    """Drop the receipts that point at these events (the events are being purged)."""
    clause, params = txn.dialect.in_list("event_id", list(event_ids))
    await txn.execute(f"DELETE FROM receipts WHERE {clause}", params)


class _NotNewer(Exception):
    pass


def _receipt(row: Sequence[Any]) -> StoredReceipt:
    room_id, receipt_type, user_id, thread_id, event_id, stream_id, data = row
    return StoredReceipt(room_id, receipt_type, user_id, thread_id or None, event_id, int(stream_id),
                         decode(data))
