"""Queueing items for application services on the outbound queue, with the hand-off stage's position."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.jsonutil import decode
from storage.database import Database, Transaction
from storage.stores.outbound import enqueue_outbound_txn
from storage.stores.stages import save_stage_position_txn

# The outbound queue kind of application service transactions; the destination is the service's ID.
APPSERVICE_KIND = "appservice"


@dataclass(frozen=True, slots=True)
class StoredToDevice:
    """A to-device message waiting in a device's inbox; `message` is its JSON (sender, type, content)."""
    user_id: str
    device_id: str
    message: dict[str, Any]


class AppServiceQueueStore:
    def __init__(self, db: Database):
        self.db = db

    async def queue_events(self, queued: Mapping[str, Sequence[dict[str, Any]]], *, stage: str, upto: int,
                           now_ms: int) -> None:
        """Queue items per service and move the hand-off stage to `upto`, in one transaction."""

        async def txn_fn(txn: Transaction) -> None:
            for service_id, payloads in queued.items():
                await enqueue_outbound_txn(txn, APPSERVICE_KIND, service_id, payloads, now_ms)
            await save_stage_position_txn(txn, stage, upto)

        await self.db.run_interaction("queue_appservice_events", txn_fn)

    async def queue(self, queued: Mapping[str, Sequence[dict[str, Any]]], now_ms: int) -> None:
        """Queue items (ephemeral data) per service, in one transaction of their own."""

        async def txn_fn(txn: Transaction) -> None:
            for service_id, payloads in queued.items():
                await enqueue_outbound_txn(txn, APPSERVICE_KIND, service_id, payloads, now_ms)

        if any(queued.values()):
            await self.db.run_interaction("queue_appservice_items", txn_fn)

    async def queue_length(self, service_id: str) -> int:
        return int(await self.db.fetch_value(
            "appservice_queue_length", "SELECT COUNT(*) FROM outbound_queue WHERE kind = ? AND destination = ?",
            (APPSERVICE_KIND, service_id)))

    async def to_device_messages_at(self, position: int, user_ids: Sequence[str]) -> list[StoredToDevice]:
        """The to-device messages stored at `position` for these users, by user and device."""
        if not user_ids:
            return []

        async def txn_fn(txn: Transaction) -> list[StoredToDevice]:
            clause, params = txn.dialect.in_list("user_id", list(user_ids))
            rows = await txn.fetch_all(
                f"SELECT user_id, device_id, message_json FROM to_device_inbox WHERE stream_id = ? AND {clause}"
                " ORDER BY user_id, device_id", (position, *params))
            return [StoredToDevice(user_id, device_id, decode(message)) for user_id, device_id, message in rows]

        return await self.db.run_interaction("appservice_to_device_messages", txn_fn, write=False)
