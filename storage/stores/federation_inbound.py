"""Inbound federation transactions already answered (`PUT /send/{txnId}`), for idempotent retries."""

from __future__ import annotations

from typing import Any

from homeserver.jsonutil import decode, encode_str
from storage.database import Database


class ReceivedTransactionStore:
    def __init__(self, db: Database):
        self.db = db

    async def get_response(self, origin: str, txn_id: str) -> dict[str, Any] | None:
        """The answer given to the transaction the first time, or None when it is new."""
        raw = await self.db.fetch_value(
            "get_received_txn", "SELECT response_json FROM federation_received_txns WHERE origin = ? AND txn_id = ?",
            (origin, txn_id))
        return decode(raw) if raw is not None else None

    async def store_response(self, origin: str, txn_id: str, response: dict[str, Any], now_ms: int) -> None:
        await self.db.execute(
            "store_received_txn",
            "INSERT INTO federation_received_txns (origin, txn_id, response_json, received_ts) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (origin, txn_id) DO NOTHING",
            (origin, txn_id, encode_str(response), now_ms))

    async def prune(self, before_ts: int) -> int:
        """Forget answers older than `before_ts` (an origin retries a transaction for minutes, not days)."""
        return await self.db.execute("prune_received_txns",
                                     "DELETE FROM federation_received_txns WHERE received_ts < ?", (before_ts,))
