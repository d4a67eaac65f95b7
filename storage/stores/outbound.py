"""The durable outbound queue: items waiting per destination, and each destination's delivery state.

Items are grouped into transactions lazily: the first time a batch is taken for sending, its
items get a transaction ID, and every retry takes exactly those items under that ID again (so
a receiver that already processed the transaction can recognise the retry). Once delivered,
the transaction's items are deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction


@dataclass(frozen=True, slots=True)
class OutboundBatch:
    txn_id: str
    item_ids: tuple[int, ...]
    payloads: tuple[dict[str, Any], ...]
    # When the oldest item was queued (ms).
    oldest_ts: int


@dataclass(frozen=True, slots=True)
class DestinationState:
    kind: str
    destination: str
    failures: int
    retry_at_ts: int
    last_success_ts: int | None
    last_failure_ts: int | None
    last_error: str | None
    queued: int
    # When the current run of failures began (None while healthy).
    failing_since_ts: int | None = None
    # Stream ordering of the newest event the destination accepted (federation only).
    last_stream_ordering: int | None = None


async def enqueue_outbound_txn(txn: Transaction, kind: str, destination: str,
                               payloads: Sequence[dict[str, Any]], now_ms: int) -> None:
    """Queue items for a destination inside the caller's transaction (with the work that made them)."""
    await txn.executemany(
        "INSERT INTO outbound_queue (kind, destination, payload, created_ts) VALUES (?, ?, ?, ?)",
        [(kind, destination, encode_str(p), now_ms) for p in payloads],
    )


async def drop_items_txn(txn: Transaction, kind: str, destination: str, item_ids: Sequence[int],
                         txn_ids: Sequence[str]) -> None:
    """Drop queued items (a compacted backlog). A transaction ID names one exact set of items, so
    the `txn_ids` that lost items are forgotten: what remains of them goes out under a new ID."""
    await txn.executemany("DELETE FROM outbound_queue WHERE id = ?", [(item_id,) for item_id in item_ids])
    await txn.executemany(
        "UPDATE outbound_queue SET txn_id = NULL WHERE kind = ? AND destination = ? AND txn_id = ?",
        [(kind, destination, txn_id) for txn_id in txn_ids])


async def record_delivered_position_txn(txn: Transaction, kind: str, destination: str, stream_ordering: int) -> None:
    """The newest event the destination accepted, unless it already accepted a newer one."""
    await txn.execute(
        "UPDATE outbound_destinations SET last_stream_ordering = ? WHERE kind = ? AND destination = ?"
        " AND (last_stream_ordering IS NULL OR last_stream_ordering < ?)",
        (stream_ordering, kind, destination, stream_ordering))


# (payloads queued next, oldest first) -> how many of them one transaction takes (at least one).
BatchFit = Callable[[list[dict[str, Any]]], int]


async def _next_batch(txn: Transaction, kind: str, destination: str, limit: int,
                      fits: BatchFit | None = None) -> OutboundBatch | None:
    rows = await txn.fetch_all(
        "SELECT id, payload, created_ts, txn_id FROM outbound_queue WHERE kind = ? AND destination = ?"
        " ORDER BY id LIMIT ?", (kind, destination, limit))
    if not rows:
        return None
    first_txn = rows[0][3]
    if first_txn is not None:
        # A transaction already sent (perhaps before a restart): the same items again, same ID.
        rows = await txn.fetch_all(
            "SELECT id, payload, created_ts, txn_id FROM outbound_queue WHERE kind = ? AND destination = ?"
            " AND txn_id = ? ORDER BY id", (kind, destination, first_txn))
        txn_id = first_txn
    else:
        rows = [r for r in _until_assigned(rows)]
        if fits is not None:
            rows = rows[:max(1, fits([decode(r[1]) for r in rows]))]
        counter = await txn.fetch_value(
            "INSERT INTO outbound_destinations (kind, destination, txn_counter) VALUES (?, ?, 1)"
            " ON CONFLICT (kind, destination) DO UPDATE SET txn_counter = outbound_destinations.txn_counter + 1"
            " RETURNING txn_counter", (kind, destination))
        txn_id = str(counter)
        await txn.executemany("UPDATE outbound_queue SET txn_id = ? WHERE id = ?", [(txn_id, r[0]) for r in rows])
    return OutboundBatch(txn_id=txn_id, item_ids=tuple(r[0] for r in rows),
                         payloads=tuple(decode(r[1]) for r in rows), oldest_ts=min(r[2] for r in rows))


def _until_assigned(rows: list[Any]) -> list[Any]:
    taken = []
    for row in rows:
        if row[3] is not None:
            break
        taken.append(row)
    return taken


class OutboundStore:
    def __init__(self, db: Database):
        self.db = db

    async def enqueue(self, kind: str, destination: str, payloads: Sequence[dict[str, Any]], now_ms: int) -> None:
        if payloads:
            await self.db.run_interaction("enqueue_outbound", enqueue_outbound_txn, kind, destination, payloads,
                                          now_ms)

    async def next_batch(self, kind: str, destination: str, limit: int,
                         fits: BatchFit | None = None) -> OutboundBatch | None:
        """The destination's next transaction to send: an unfinished one, else up to `limit` new items
        (fewer when `fits` says the transaction is full)."""
        return await self.db.run_interaction("next_outbound_batch", _next_batch, kind, destination, limit, fits,
                                             isolation="read_committed")

    async def complete(self, kind: str, destination: str, batch: OutboundBatch, now_ms: int) -> None:
        """The batch was delivered (or given up on): delete its items and clear the backoff."""

        async def txn_fn(txn: Transaction) -> None:
            await txn.executemany("DELETE FROM outbound_queue WHERE id = ?", [(i,) for i in batch.item_ids])
            await txn.execute(
                "INSERT INTO outbound_destinations (kind, destination, failures, retry_at_ts, last_success_ts)"
                " VALUES (?, ?, 0, 0, ?) ON CONFLICT (kind, destination) DO UPDATE SET failures = 0,"
                " retry_at_ts = 0, failing_since_ts = NULL, last_success_ts = excluded.last_success_ts",
                (kind, destination, now_ms))

        await self.db.run_interaction("complete_outbound_batch", txn_fn)

    async def drop(self, kind: str, batch: OutboundBatch) -> None:
        """Delete a batch's items without counting a success (the destination will never take them)."""
        await self.db.run_interaction(
            "drop_outbound_batch",
            lambda txn: txn.executemany("DELETE FROM outbound_queue WHERE id = ?", [(i,) for i in batch.item_ids]))

    async def record_failure(self, kind: str, destination: str, error: str, retry_at_ts: int,
                             now_ms: int) -> int:
        """Count a failed attempt and when to try again; returns the failures in a row."""
        return int(await self.db.run_interaction(
            "record_outbound_failure",
            lambda txn: txn.fetch_value(
                "INSERT INTO outbound_destinations (kind, destination, failures, retry_at_ts, last_failure_ts,"
                " failing_since_ts, last_error) VALUES (?, ?, 1, ?, ?, ?, ?) ON CONFLICT (kind, destination)"
                " DO UPDATE SET failures = outbound_destinations.failures + 1,"
                " retry_at_ts = excluded.retry_at_ts, last_failure_ts = excluded.last_failure_ts,"
                " failing_since_ts = CASE WHEN outbound_destinations.failures = 0"
                " OR outbound_destinations.failing_since_ts IS NULL THEN excluded.failing_since_ts"
                " ELSE outbound_destinations.failing_since_ts END,"
                " last_error = excluded.last_error RETURNING failures",
                (kind, destination, retry_at_ts, now_ms, now_ms, error[:500]))))

    async def get_backoff(self, kind: str, destination: str) -> tuple[int, int]:
        """(failures in a row, retry-at time in ms) of a destination; (0, 0) when healthy."""
        row = await self.db.fetch_one(
            "get_outbound_backoff",
            "SELECT failures, retry_at_ts FROM outbound_destinations WHERE kind = ? AND destination = ?",
            (kind, destination))
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def reset_backoff(self, kind: str, destination: str) -> None:
        await self.db.execute("reset_outbound_backoff",
                              "UPDATE outbound_destinations SET retry_at_ts = 0 WHERE kind = ? AND destination = ?",
                              (kind, destination))

    async def clear_backoff(self, kind: str, destination: str) -> None:
        """Forget a destination's failures altogether (an admin says it is back): the next failure
        starts again from the shortest retry interval."""
        await self.db.execute("clear_outbound_backoff",
                              "UPDATE outbound_destinations SET failures = 0, retry_at_ts = 0, failing_since_ts = NULL"
                              " WHERE kind = ? AND destination = ?", (kind, destination))

    async def destinations(self, kind: str | None = None) -> list[DestinationState]:
        """Every destination with queued items or a delivery history, with its queue length."""

        async def txn_fn(txn: Transaction) -> list[DestinationState]:
            counts = {(k, d): int(n) for k, d, n in await txn.fetch_all(
                "SELECT kind, destination, COUNT(*) FROM outbound_queue GROUP BY kind, destination")}
            rows = await txn.fetch_all(
                "SELECT kind, destination, failures, retry_at_ts, last_success_ts, last_failure_ts, last_error,"
                " failing_since_ts, last_stream_ordering FROM outbound_destinations")
            known = {(r[0], r[1]): r for r in rows}
            out = []
            for key in sorted(set(counts) | set(known)):
                if kind is not None and key[0] != kind:
                    continue
                row = known.get(key)
                out.append(DestinationState(
                    kind=key[0], destination=key[1], failures=int(row[2]) if row else 0,
                    retry_at_ts=int(row[3]) if row else 0, last_success_ts=row[4] if row else None,
                    last_failure_ts=row[5] if row else None, last_error=row[6] if row else None,
                    queued=counts.get(key, 0), failing_since_ts=row[7] if row else None,
                    last_stream_ordering=row[8] if row else None))
            return out

        return await self.db.run_interaction("outbound_destinations", txn_fn, write=False)

    async def queue_length(self, kind: str, destination: str) -> int:
        return int(await self.db.fetch_value(
            "outbound_queue_length", "SELECT COUNT(*) FROM outbound_queue WHERE kind = ? AND destination = ?",
            (kind, destination)))
