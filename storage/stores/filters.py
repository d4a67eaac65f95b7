"""Sync filters uploaded by users, numbered per user from 0."""

from __future__ import annotations

from typing import Any

from canonicaljson import encode_canonical_json

from homeserver.jsonutil import decode
from storage.database import Database, Transaction


class FilterStore:
    def __init__(self, db: Database):
        self.db = db

    async def add_filter(self, user_id: str, filter_json: dict[str, Any]) -> int:
        """Store a filter and return its id; an identical filter already stored keeps its id.

        Clients upload the same filter on every start, so reusing ids keeps the table small.
        """
        text = encode_canonical_json(filter_json).decode("utf-8")

        async def txn_fn(txn: Transaction) -> int:
            existing = await txn.fetch_value(
                "SELECT filter_id FROM filters WHERE user_id = ? AND filter_json = ?", (user_id, text)
            )
            if existing is not None:
                return int(existing)
            # Under read-committed each statement sees the latest commits, so when a concurrent
            # upload took the id this one wanted, the next MAX already counts it.
            while True:
                highest = await txn.fetch_value(
                    "SELECT MAX(filter_id) FROM filters WHERE user_id = ?", (user_id,)
                )
                filter_id = 0 if highest is None else int(highest) + 1
                inserted = await txn.fetch_value(
                    "INSERT INTO filters (user_id, filter_id, filter_json) VALUES (?, ?, ?)"
                    " ON CONFLICT (user_id, filter_id) DO NOTHING RETURNING filter_id",
                    (user_id, filter_id, text),
                )
                if inserted is not None:
                    return filter_id

        return await self.db.run_interaction("add_filter", txn_fn, isolation="read_committed")

    async def get_filter(self, user_id: str, filter_id: int) -> dict[str, Any] | None:
        text = await self.db.fetch_value(
            "get_filter",
            "SELECT filter_json FROM filters WHERE user_id = ? AND filter_id = ?",
            (user_id, filter_id),
        )
        return None if text is None else decode(text)


async def delete_user_filters_txn(txn: Transaction, user_id: str) -> None:
    """Drop every filter the user uploaded (erasure)."""
    await txn.execute("DELETE FROM filters WHERE user_id = ?", (user_id,))
