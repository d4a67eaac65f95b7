"""One sender's events across every room: what a privacy export reads and an erasure prunes.

The events tables belong to the event store; these are the few whole-sender queries the
privacy mechanisms need, kept apart so the event store stays about rooms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.events.redaction import redact
from homeserver.events.room_versions import get_room_version
from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction
from storage.stores import events, search

PRUNE_BATCH = 200


@dataclass(frozen=True, slots=True)
class SentEventSummary:
    event_id: str
    room_id: str
    type: str
    state_key: str | None
    redacted: bool


class UserEventStore:
    def __init__(self, db: Database):
        self.db = db

    async def sent_events_page(self, user_id: str, *, after: int | None, since_ts: int | None,
                               until_ts: int | None, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` events `user_id` sent, in stream order after the stream position `after`.

        Each carries `position` (to page on), and its content as clients see it: redacted
        events show their pruned content.
        """
        sql = ("SELECT e.stream_ordering, e.event_id, e.room_id, e.type, e.state_key, e.origin_server_ts,"
               " e.redacted_by, j.json, r.room_version FROM events e JOIN event_json j ON j.event_id = e.event_id"
               " JOIN rooms r ON r.room_id = e.room_id WHERE e.sender = ? AND e.rejected_reason IS NULL")
        params: list[Any] = [user_id]
        if after is not None:
            sql += " AND e.stream_ordering > ?"
            params.append(after)
        if since_ts is not None:
            sql += " AND e.origin_server_ts >= ?"
            params.append(since_ts)
        if until_ts is not None:
            sql += " AND e.origin_server_ts <= ?"
            params.append(until_ts)
        sql += " ORDER BY e.stream_ordering LIMIT ?"
        params.append(limit)
        rows = await self.db.fetch_all("sent_events_page", sql, params)
        found = []
        for position, event_id, room_id, event_type, state_key, ts, redacted_by, raw, version in rows:
            pdu = decode(raw)
            if redacted_by is not None:
                pdu = redact(pdu, get_room_version(version))
            event = {"position": position, "event_id": event_id, "room_id": room_id, "type": event_type,
                     "content": pdu.get("content", {}), "origin_server_ts": ts, "redacted": redacted_by is not None}
            if state_key is not None:
                event["state_key"] = state_key
            found.append(event)
        return found

    async def sent_event_summaries(self, user_id: str) -> list[SentEventSummary]:
        """Every event `user_id` sent: ID, room, type, state key, and whether it is redacted."""
        rows = await self.db.fetch_all(
            "sent_event_summaries",
            "SELECT event_id, room_id, type, state_key, redacted_by FROM events WHERE sender = ?"
            " AND rejected_reason IS NULL ORDER BY stream_ordering", (user_id,))
        return [SentEventSummary(*r[:4], redacted=r[4] is not None) for r in rows]

    async def prune_redacted_originals(self, user_id: str) -> list[str]:
        """Replace the kept original JSON of `user_id`'s redacted events by the redacted form, now
        rather than after the retention window; returns the IDs of the rewritten events."""
        rewritten: list[str] = []
        while True:
            batch = await self.db.run_interaction("prune_redacted_originals_of_user", _prune_redacted_batch, user_id)
            rewritten.extend(batch)
            if len(batch) < PRUNE_BATCH:
                return rewritten

    async def prune_events(self, event_ids: Sequence[str]) -> list[str]:
        """Store these events in redacted form without sending a redaction (events nobody local
        may redact any more); returns the IDs whose JSON changed."""
        rewritten: list[str] = []
        for start in range(0, len(event_ids), PRUNE_BATCH):
            chunk = list(event_ids[start:start + PRUNE_BATCH])
            rewritten.extend(await self.db.run_interaction("prune_events", _prune_events, chunk))
        return rewritten


async def _prune_redacted_batch(txn: Transaction, user_id: str) -> list[str]:
    rows = await txn.fetch_all(
        "SELECT r.event_id, e.event_id, j.json, rm.room_version FROM events e"
        " JOIN redactions r ON r.event_id = e.redacted_by JOIN event_json j ON j.event_id = e.event_id"
        " JOIN rooms rm ON rm.room_id = e.room_id WHERE e.sender = ? AND r.have_censored = ? LIMIT ?",
        (user_id, False, PRUNE_BATCH))
    for redaction_id, event_id, raw, version in rows:
        pruned = redact(decode(raw), get_room_version(version))
        await events.set_event_json_txn(txn, event_id, encode_str(pruned))
        await events.mark_redaction_censored_txn(txn, redaction_id)
    return [row[1] for row in rows]


async def _prune_events(txn: Transaction, event_ids: list[str]) -> list[str]:
    clause, params = txn.dialect.in_list("event_id", event_ids)
    rows = await txn.fetch_all(
        "SELECT j.event_id, j.json, rm.room_version FROM event_json j JOIN rooms rm ON rm.room_id = j.room_id"
        f" WHERE j.{clause}", params)
    rewritten = []
    for event_id, raw, version in rows:
        pdu = decode(raw)
        pruned = redact(pdu, get_room_version(version))
        if pruned != pdu:
            await events.set_event_json_txn(txn, event_id, encode_str(pruned))
            rewritten.append(event_id)
    await search.delete_events_search_txn(txn, event_ids)
    return rewritten
