"""Content reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.database import Database, Transaction


@dataclass(frozen=True, slots=True)
class ContentReport:
    """A `content_reports` row: about an event (`event_id`), a room (`room_id` only) or a user."""
    id: int
    reporter: str
    room_id: str | None
    event_id: str | None
    target_user_id: str | None
    reason: str | None
    score: int | None
    received_ts: int


@dataclass(frozen=True, slots=True)
class EventReport:
    """A report about an event, with the event's sender when the event is still stored."""
    id: int
    received_ts: int
    room_id: str
    event_id: str
    reporter: str
    reason: str | None
    score: int | None
    sender: str | None


@dataclass(frozen=True, slots=True)
class UserReport:
    id: int
    received_ts: int
    target_user_id: str
    reporter: str
    reason: str | None


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

    async def list_reports(self, limit: int = 100) -> list[ContentReport]:
        rows = await self.db.fetch_all(
            "list_reports",
            "SELECT id, reporter, room_id, event_id, target_user_id, reason, score, received_ts"
            " FROM content_reports ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [ContentReport(*row) for row in rows]

    async def list_event_reports(self, *, offset: int, limit: int, backwards: bool, room_id: str | None,
                                 reporter: str | None, event_sender: str | None) -> tuple[list[EventReport], int]:
        """A page of reports about events (newest first when `backwards`), and how many match."""
        clauses, params = ["r.event_id IS NOT NULL"], []
        if room_id is not None:
            clauses.append("r.room_id LIKE ?")
            params.append(f"%{room_id}%")
        if reporter is not None:
            clauses.append("r.reporter LIKE ?")
            params.append(f"%{reporter}%")
        if event_sender is not None:
            clauses.append("e.sender = ?")
            params.append(event_sender)
        where = " WHERE " + " AND ".join(clauses)
        order = "DESC" if backwards else "ASC"
        joins = " FROM content_reports r LEFT JOIN events e ON e.event_id = r.event_id"

        async def txn_fn(txn: Transaction) -> tuple[list[EventReport], int]:
            total = int(await txn.fetch_value("SELECT COUNT(*)" + joins + where, tuple(params)))
            rows = await txn.fetch_all(
                "SELECT r.id, r.received_ts, r.room_id, r.event_id, r.reporter, r.reason, r.score, e.sender"
                + joins + where + f" ORDER BY r.received_ts {order}, r.id {order} LIMIT ? OFFSET ?",
                (*params, limit, offset))
            return [EventReport(*row) for row in rows], total

        return await self.db.run_interaction("list_event_reports", txn_fn, write=False)

    async def get_event_report(self, report_id: int) -> EventReport | None:
        row = await self.db.fetch_one(
            "get_event_report",
            "SELECT r.id, r.received_ts, r.room_id, r.event_id, r.reporter, r.reason, r.score, e.sender"
            " FROM content_reports r LEFT JOIN events e ON e.event_id = r.event_id"
            " WHERE r.id = ? AND r.event_id IS NOT NULL", (report_id,))
        return None if row is None else EventReport(*row)

    async def delete_event_report(self, report_id: int) -> bool:
        return await self.db.execute(
            "delete_event_report", "DELETE FROM content_reports WHERE id = ? AND event_id IS NOT NULL",
            (report_id,)) > 0

    async def list_user_reports(self, *, offset: int, limit: int, backwards: bool, reporter: str | None,
                                target: str | None) -> tuple[list[UserReport], int]:
        """A page of reports about users (newest first when `backwards`), and how many match."""
        clauses, params = ["target_user_id IS NOT NULL"], []
        if reporter is not None:
            clauses.append("reporter LIKE ?")
            params.append(f"%{reporter}%")
        if target is not None:
            clauses.append("target_user_id LIKE ?")
            params.append(f"%{target}%")
        where = " WHERE " + " AND ".join(clauses)
        order = "DESC" if backwards else "ASC"

        async def txn_fn(txn: Transaction) -> tuple[list[UserReport], int]:
            total = int(await txn.fetch_value("SELECT COUNT(*) FROM content_reports" + where, tuple(params)))
            rows = await txn.fetch_all(
                "SELECT id, received_ts, target_user_id, reporter, reason FROM content_reports" + where
                + f" ORDER BY received_ts {order}, id {order} LIMIT ? OFFSET ?", (*params, limit, offset))
            return [UserReport(*row) for row in rows], total

        return await self.db.run_interaction("list_user_reports", txn_fn, write=False)

    async def get_user_report(self, report_id: int) -> UserReport | None:
        row = await self.db.fetch_one(
            "get_user_report", "SELECT id, received_ts, target_user_id, reporter, reason FROM content_reports"
            " WHERE id = ? AND target_user_id IS NOT NULL", (report_id,))
        return None if row is None else UserReport(*row)

    async def delete_user_report(self, report_id: int) -> bool:
        return await self.db.execute(
            "delete_user_report", "DELETE FROM content_reports WHERE id = ? AND target_user_id IS NOT NULL",
            (report_id,)) > 0



async def delete_event_reports_txn(txn: Transaction, event_ids: Sequence[str]) -> None:
    """Reports of these events (the events are being purged)."""
    clause, params = txn.dialect.in_list("event_id", event_ids)
    await txn.execute(f"DELETE FROM content_reports WHERE {clause}", params)


async def delete_room_reports_txn(txn: Transaction, room_id: str) -> None:
    """Reports of the room's events (the room is being deleted)."""
    await txn.execute("DELETE FROM content_reports WHERE room_id = ?", (room_id,))
