"""Federation's share of the outbound queue: PDUs and EDUs waiting per destination server.

Items live in `outbound_queue` under the kind `federation` (storage/stores/outbound.py owns the
table); this store adds what only federation needs: queueing the hand-off stage's PDUs with the
stage's position in one transaction, who was joined at a state, and shrinking a backlog that
grew while a destination was away (catch-up).

A queued PDU is `{"pdu": event_id, "room_id": room_id}` (the event is read when sent, so a
redaction meanwhile is honoured); a queued EDU is `{"edu": {"edu_type": ..., "content": ...}}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from homeserver.jsonutil import decode
from storage.database import Database, Transaction
from storage.stores import room_state
from storage.stores.outbound import drop_items_txn, enqueue_outbound_txn, record_delivered_position_txn
from storage.stores.stages import save_stage_position_txn

FEDERATION_KIND = "federation"


async def _compact(txn: Transaction, destination: str, threshold: int) -> int:
    rows = await txn.fetch_all(
        "SELECT id, payload, txn_id FROM outbound_queue WHERE kind = ? AND destination = ? ORDER BY id",
        (FEDERATION_KIND, destination))
    pdus = [(row[0], decode(row[1]), row[2]) for row in rows]
    pdus = [(item_id, payload, txn_id) for item_id, payload, txn_id in pdus if "pdu" in payload]
    if len(pdus) <= threshold:
        return 0
    newest: dict[str, int] = {}
    for item_id, payload, _ in pdus:
        newest[payload.get("room_id") or ""] = item_id
    keep = set(newest.values())
    dropped = [(item_id, txn_id) for item_id, _, txn_id in pdus if item_id not in keep]
    # A transaction that lost items is sent under a new ID (the destination may have processed the
    # old one; it ignores PDUs it already has).
    await drop_items_txn(txn, FEDERATION_KIND, destination, [item_id for item_id, _ in dropped],
                         sorted({txn_id for _, txn_id in dropped if txn_id is not None}))
    return len(dropped)


class FederationOutboundStore:
    def __init__(self, db: Database):
        self.db = db

    async def queue_pdus(self, queued: Mapping[str, Sequence[dict[str, Any]]], *, stage: str, upto: int,
                         now_ms: int) -> None:
        """Queue PDUs per destination and move the hand-off stage to `upto`, in one transaction."""
        await self.queue_items(queued, stage=stage, upto=upto, now_ms=now_ms)

    async def queue_items(self, queued: Mapping[str, Sequence[dict[str, Any]]], *, stage: str, upto: int,
                          now_ms: int) -> None:
        """Queue items (PDUs or EDUs) per destination and move a stage to `upto`, in one transaction."""

        async def txn_fn(txn: Transaction) -> None:
            for destination, payloads in queued.items():
                await enqueue_outbound_txn(txn, FEDERATION_KIND, destination, payloads, now_ms)
            await save_stage_position_txn(txn, stage, upto)

        await self.db.run_interaction("queue_federation_items", txn_fn)

    async def queue_edus(self, destination: str, edus: Sequence[dict[str, Any]], now_ms: int) -> None:
        """Queue EDUs for a destination in their own transaction."""
        if edus:
            await self.db.run_interaction("queue_federation_edus", enqueue_outbound_txn, FEDERATION_KIND,
                                          destination, [{"edu": edu} for edu in edus], now_ms)

    async def compact_backlog(self, destination: str, threshold: int) -> int:
        """When more than `threshold` PDUs wait for `destination`, keep only each room's newest
        (the destination fetches the rest with /get_missing_events); returns how many were dropped."""
        return await self.db.run_interaction("compact_federation_backlog", _compact, destination, threshold)

    async def record_delivered(self, destination: str, event_ids: Sequence[str]) -> None:
        """A destination accepted a transaction with these events: remember the newest one's stream
        ordering (the admin API's `last_successful_stream_ordering`)."""
        if not event_ids:
            return

        async def txn_fn(txn: Transaction) -> None:
            clause, params = txn.dialect.in_list("event_id", list(event_ids))
            newest = await txn.fetch_value(f"SELECT MAX(stream_ordering) FROM events WHERE {clause}", params)
            if newest is None:
                return
            await record_delivered_position_txn(txn, FEDERATION_KIND, destination, int(newest))

        await self.db.run_interaction("record_federation_delivered", txn_fn)

    async def rooms_shared_with(self, server_name: str) -> list[tuple[str, int]]:
        """(room ID, newest event's stream ordering) of each room where a user of `server_name` is
        joined now, by room ID."""
        pattern = "%:" + server_name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

        async def txn_fn(txn: Transaction) -> list[tuple[str, int]]:
            rows = await room_state.joined_members_matching(txn, pattern)
            rooms = sorted({room_id for room_id, user_id in rows if user_id.split(":", 1)[-1] == server_name})
            out: list[tuple[str, int]] = []
            for start in range(0, len(rooms), 500):
                clause, params = txn.dialect.in_list("room_id", rooms[start:start + 500])
                newest = dict(await txn.fetch_all(
                    f"SELECT room_id, MAX(stream_ordering) FROM events WHERE {clause} GROUP BY room_id", params))
                out.extend((room_id, int(newest.get(room_id) or 0)) for room_id in rooms[start:start + 500])
            return out

        return await self.db.run_interaction("federation_rooms_shared_with", txn_fn, write=False)
