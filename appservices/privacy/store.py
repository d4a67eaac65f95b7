"""Named queries over the privacy database: requests, consents, the audit log and the bot's state."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from appservices.privacy.database import Database

OPEN_STATUSES = ("open", "awaiting_confirmation", "in_progress")


@dataclass(frozen=True)
class PrivacyRequest:
    request_id: str
    user_id: str
    kind: str
    status: str
    created_ts: int
    updated_ts: int
    completed_ts: int | None
    code: str | None
    detail: dict[str, Any]

    def as_json(self, now_ms: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "request_id": self.request_id, "user_id": self.user_id, "kind": self.kind, "status": self.status,
            "created_ts": self.created_ts, "updated_ts": self.updated_ts, "completed_ts": self.completed_ts,
            "detail": self.detail,
        }
        if now_ms is not None:
            body["age_ms"] = now_ms - self.created_ts
        return body


REQUEST_COLUMNS = "request_id, user_id, kind, status, created_ts, updated_ts, completed_ts, code, detail"


def _request(row: tuple[Any, ...]) -> PrivacyRequest:
    return PrivacyRequest(*row[:8], json.loads(row[8]))


def new_request_id() -> str:
    return "PR" + secrets.token_hex(6).upper()


class PrivacyStore:
    def __init__(self, db: Database):
        self._db = db

    # --- requests and the audit log ---------------------------------------------------------
    def _audit_statement(self, ts: int, actor: str, user_id: str | None, action: str, request_id: str | None,
                         detail: dict[str, Any]) -> tuple[str, list[Any]]:
        return ("INSERT INTO audit_log (ts, actor, user_id, action, request_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
                [ts, actor, user_id, action, request_id, json.dumps(detail, sort_keys=True)])

    async def audit(self, ts: int, actor: str, user_id: str | None, action: str, request_id: str | None = None,
                    detail: dict[str, Any] | None = None) -> None:
        await self._db.transaction([self._audit_statement(ts, actor, user_id, action, request_id, detail or {})])

    async def create_request(self, ts: int, user_id: str, kind: str, status: str = "open", code: str | None = None,
                             detail: dict[str, Any] | None = None) -> PrivacyRequest:
        request_id = new_request_id()
        detail = detail or {}
        await self._db.transaction([
            (f"INSERT INTO requests ({REQUEST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
             [request_id, user_id, kind, status, ts, ts, code, json.dumps(detail, sort_keys=True)]),
            self._audit_statement(ts, user_id, user_id, f"{kind}.requested", request_id, {"status": status}),
        ])
        return PrivacyRequest(request_id, user_id, kind, status, ts, ts, None, code, detail)

    async def update_request(self, ts: int, request_id: str, status: str, detail: dict[str, Any] | None = None,
                             *, actor: str, action: str) -> None:
        """Move a request to `status` (finished ones get `completed_ts`), with its audit entry, atomically."""
        done = status not in OPEN_STATUSES
        sets = "status = ?, updated_ts = ?" + (", completed_ts = ?" if done else "") + \
            (", detail = ?" if detail is not None else "")
        params: list[Any] = [status, ts] + ([ts] if done else []) + \
            ([json.dumps(detail, sort_keys=True)] if detail is not None else [])
        row = await self._db.fetch_one("SELECT user_id FROM requests WHERE request_id = ?", [request_id])
        user_id = row[0] if row else None
        await self._db.transaction([
            (f"UPDATE requests SET {sets} WHERE request_id = ?", [*params, request_id]),
            self._audit_statement(ts, actor, user_id, action, request_id, {"status": status, **(detail or {})}),
        ])

    async def get_request(self, request_id: str) -> PrivacyRequest | None:
        row = await self._db.fetch_one(f"SELECT {REQUEST_COLUMNS} FROM requests WHERE request_id = ?", [request_id])
        return _request(row) if row else None

    async def pending_request(self, user_id: str, kind: str, status: str) -> PrivacyRequest | None:
        row = await self._db.fetch_one(
            f"SELECT {REQUEST_COLUMNS} FROM requests WHERE user_id = ? AND kind = ? AND status = ?"
            " ORDER BY created_ts DESC LIMIT 1", [user_id, kind, status])
        return _request(row) if row else None

    async def open_requests(self) -> list[PrivacyRequest]:
        marks = ", ".join("?" for _ in OPEN_STATUSES)
        rows = await self._db.fetch_all(
            f"SELECT {REQUEST_COLUMNS} FROM requests WHERE status IN ({marks}) ORDER BY created_ts", OPEN_STATUSES)
        return [_request(r) for r in rows]

    async def requests_of(self, user_id: str) -> list[PrivacyRequest]:
        rows = await self._db.fetch_all(
            f"SELECT {REQUEST_COLUMNS} FROM requests WHERE user_id = ? ORDER BY created_ts", [user_id])
        return [_request(r) for r in rows]

    async def audit_entries(self, *, since_seq: int = 0, limit: int = 1000, user_id: str | None = None,
                            ) -> list[dict[str, Any]]:
        where, params = "seq > ?", [since_seq]
        if user_id is not None:
            where += " AND user_id = ?"
            params.append(user_id)
        rows = await self._db.fetch_all(
            f"SELECT seq, ts, actor, user_id, action, request_id, detail FROM audit_log WHERE {where}"
            " ORDER BY seq LIMIT ?", [*params, limit])
        return [{"seq": r[0], "ts": r[1], "actor": r[2], "user_id": r[3], "action": r[4], "request_id": r[5],
                 "detail": json.loads(r[6])} for r in rows]

    # --- consent --------------------------------------------------------------------------------
    async def record_consent(self, ts: int, user_id: str, version: str, request_id: str | None) -> bool:
        """Record an acceptance; False when this version was accepted before (the first time is kept)."""
        if await self._db.fetch_one("SELECT 1 FROM consents WHERE user_id = ? AND version = ?", [user_id, version]):
            return False
        await self._db.transaction([
            ("INSERT INTO consents (user_id, version, ts, request_id) VALUES (?, ?, ?, ?)",
             [user_id, version, ts, request_id]),
            self._audit_statement(ts, user_id, user_id, "consent.given", request_id, {"version": version}),
        ])
        return True

    async def consents_of(self, user_id: str) -> list[dict[str, Any]]:
        rows = await self._db.fetch_all(
            "SELECT version, ts, request_id FROM consents WHERE user_id = ? ORDER BY ts", [user_id])
        return [{"version": r[0], "ts": r[1], "request_id": r[2]} for r in rows]

    # --- the bot's own state ------------------------------------------------------------------
    async def set_dm_room(self, ts: int, user_id: str, room_id: str) -> None:
        await self._db.transaction([
            ("DELETE FROM dm_rooms WHERE user_id = ?", [user_id]),
            ("INSERT INTO dm_rooms (user_id, room_id, updated_ts) VALUES (?, ?, ?)", [user_id, room_id, ts]),
        ])

    async def dm_room(self, user_id: str) -> str | None:
        row = await self._db.fetch_one("SELECT room_id FROM dm_rooms WHERE user_id = ?", [user_id])
        return row[0] if row else None

    async def language(self, user_id: str) -> str | None:
        row = await self._db.fetch_one("SELECT language FROM preferences WHERE user_id = ?", [user_id])
        return row[0] if row else None

    async def set_language(self, user_id: str, language: str) -> None:
        await self._db.transaction([
            ("DELETE FROM preferences WHERE user_id = ?", [user_id]),
            ("INSERT INTO preferences (user_id, language) VALUES (?, ?)", [user_id, language]),
        ])

    async def store_transaction(self, ts: int, txn_id: str, events: list[dict[str, Any]]) -> bool:
        """Keep a transaction's events before acknowledging it; False when it was seen before."""
        if await self._db.fetch_one("SELECT 1 FROM transactions WHERE txn_id = ?", [txn_id]):
            return False
        await self._db.transaction(
            [("INSERT INTO transactions (txn_id, received_ts) VALUES (?, ?)", [txn_id, ts])]
            + [("INSERT INTO inbox (txn_id, idx, event, processed) VALUES (?, ?, ?, FALSE)",
                [txn_id, i, json.dumps(event)]) for i, event in enumerate(events)])
        return True

    async def unprocessed_events(self) -> list[tuple[str, int, dict[str, Any]]]:
        rows = await self._db.fetch_all(
            "SELECT i.txn_id, i.idx, i.event FROM inbox i JOIN transactions t ON t.txn_id = i.txn_id"
            " WHERE NOT i.processed ORDER BY t.received_ts, i.txn_id, i.idx")
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    async def mark_processed(self, txn_id: str, idx: int) -> None:
        await self._db.execute("UPDATE inbox SET processed = TRUE WHERE txn_id = ? AND idx = ?", [txn_id, idx])

    async def prune_transactions(self, before_ts: int) -> None:
        """Forget fully handled transactions received before `before_ts` (the homeserver retries only new ones)."""
        old = "SELECT txn_id FROM transactions WHERE received_ts < ? AND txn_id NOT IN " \
              "(SELECT txn_id FROM inbox WHERE NOT processed)"
        await self._db.transaction([
            (f"DELETE FROM inbox WHERE txn_id IN ({old})", [before_ts]),
            (f"DELETE FROM transactions WHERE txn_id IN ({old})", [before_ts]),
        ])

    async def get_value(self, key: str) -> str | None:
        row = await self._db.fetch_one("SELECT value FROM kv WHERE key = ?", [key])
        return row[0] if row else None

    async def set_value(self, key: str, value: str) -> None:
        await self._db.transaction([("DELETE FROM kv WHERE key = ?", [key]),
                                    ("INSERT INTO kv (key, value) VALUES (?, ?)", [key, value])])

    # --- exports and retention ------------------------------------------------------------------
    async def add_export_file(self, mxc: str, user_id: str, request_id: str, expires_ts: int) -> None:
        await self._db.execute("INSERT INTO export_files (mxc, user_id, request_id, expires_ts) VALUES (?, ?, ?, ?)",
                               [mxc, user_id, request_id, expires_ts])

    async def expired_exports(self, now_ms: int) -> list[tuple[str, str, str]]:
        rows = await self._db.fetch_all(
            "SELECT mxc, user_id, request_id FROM export_files WHERE deleted_ts IS NULL AND expires_ts <= ?", [now_ms])
        return [(r[0], r[1], r[2]) for r in rows]

    async def export_deleted(self, ts: int, mxc: str, user_id: str, request_id: str) -> None:
        await self._db.transaction([
            ("UPDATE export_files SET deleted_ts = ? WHERE mxc = ?", [ts, mxc]),
            self._audit_statement(ts, "service", user_id, "export.expired", request_id, {"mxc": mxc}),
        ])

    async def inactivity_warnings(self) -> dict[str, int]:
        rows = await self._db.fetch_all("SELECT user_id, warned_ts FROM inactivity_warnings")
        return {r[0]: r[1] for r in rows}

    async def set_inactivity_warning(self, user_id: str, warned_ts: int | None, last_seen_ts: int | None) -> None:
        statements: list[tuple[str, list[Any]]] = [("DELETE FROM inactivity_warnings WHERE user_id = ?", [user_id])]
        if warned_ts is not None:
            statements.append(("INSERT INTO inactivity_warnings (user_id, warned_ts, last_seen_ts) VALUES (?, ?, ?)",
                               [user_id, warned_ts, last_seen_ts]))
        await self._db.transaction(statements)

    async def start_retention_run(self, run_id: str, ts: int, trigger: str) -> None:
        await self._db.transaction([
            ("INSERT INTO retention_runs (run_id, started_ts, trigger) VALUES (?, ?, ?)", [run_id, ts, trigger]),
            self._audit_statement(ts, "service", None, "retention.started", None, {"run_id": run_id,
                                                                                  "trigger": trigger}),
        ])

    async def finish_retention_run(self, run_id: str, ts: int, counts: dict[str, Any]) -> None:
        await self._db.transaction([
            ("UPDATE retention_runs SET finished_ts = ?, counts = ? WHERE run_id = ?",
             [ts, json.dumps(counts, sort_keys=True), run_id]),
            self._audit_statement(ts, "service", None, "retention.finished", None, {"run_id": run_id, **counts}),
        ])

    async def retention_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self._db.fetch_all(
            "SELECT run_id, started_ts, finished_ts, trigger, counts FROM retention_runs"
            " ORDER BY started_ts DESC LIMIT ?", [limit])
        return [{"run_id": r[0], "started_ts": r[1], "finished_ts": r[2], "trigger": r[3],
                 "counts": json.loads(r[4])} for r in rows]
