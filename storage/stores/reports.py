"""Content reports."""

from __future__ import annotations

from typing import Any

from storage.database import Database, Transaction


class ReportStore:
    def __init__(self, db: Database):
        self.db = db

    async def add_report(self, reporter: str, *, room_id: str | None, event_id: str | None,
                         target_user_id: str | None, reason: str | None, score: int | None, received_ts: int) -> int:
        async def txn_fn(txn: Transaction) -> int:
            return int(await txn.fetch_value(
                "INSERT INTO content_reports (reporter, room_id, event_id, target_user_id, reason, score, received_ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (reporter, room_id, event_id, target_user_id, reason, score, received_ts),
            ))

        return await self.db.run_interaction("add_report", txn_fn)

    async def list_reports(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self.db.fetch_all(
            "list_reports",
            "SELECT id, reporter, room_id, event_id, target_user_id, reason, score, received_ts"
            " FROM content_reports ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        keys = ("id", "reporter", "room_id", "event_id", "target_user_id", "reason", "score", "received_ts")
        return [dict(zip(keys, row, strict=True)) for row in rows]
