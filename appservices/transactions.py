"""Transactions to application services: the body, and one attempt to deliver it.

The durable per-destination queue (homeserver/outbound) owns ordering, retries with backoff and
persistence; it hands this module a `PendingTransaction` (whose `txn_id` it keeps across retries)
and learns from `TransactionSender.attempt` whether the service accepted it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from appservices.client import AppServiceClient
from appservices.metrics import AppServiceMetrics
from appservices.registration import AppServiceRegistration

logger = logging.getLogger(__name__)

UNSTABLE_EPHEMERAL = "de.sorunome.msc2409.ephemeral"
UNSTABLE_TO_DEVICE = "de.sorunome.msc2409.to_device"
MSC3202_OTK_COUNTS = "org.matrix.msc3202.device_one_time_key_counts"
# Synapse sends both spellings: early MSC3202 implementations read the second.
MSC3202_OTK_COUNTS_OLD = "org.matrix.msc3202.device_one_time_keys_count"
MSC3202_FALLBACK_KEYS = "org.matrix.msc3202.device_unused_fallback_key_types"
MSC3202_DEVICE_LISTS = "org.matrix.msc3202.device_lists"


@dataclass(frozen=True)
class TransactionContent:
    """What one transaction carries, already in client format."""

    events: Sequence[Mapping[str, Any]] = ()
    # m.typing / m.receipt (each with room_id) and m.presence.
    ephemeral: Sequence[Mapping[str, Any]] = ()
    # to-device messages, each {"type", "sender", "content", "to_user_id", "to_device_id"}.
    to_device: Sequence[Mapping[str, Any]] = ()
    # MSC3202: user -> device -> algorithm -> count, user -> device -> [algorithm], changed/left users.
    one_time_key_counts: Mapping[str, Mapping[str, Mapping[str, int]]] = field(default_factory=dict)
    unused_fallback_key_types: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)
    device_lists_changed: Sequence[str] = ()
    device_lists_left: Sequence[str] = ()

    def is_empty(self) -> bool:
        return not (self.events or self.ephemeral or self.to_device or self.one_time_key_counts
                    or self.unused_fallback_key_types or self.device_lists_changed or self.device_lists_left)


def build_transaction_body(registration: AppServiceRegistration, content: TransactionContent) -> dict[str, Any]:
    """The PUT /transactions body: only what the registration asked for, under the names it reads."""
    body: dict[str, Any] = {"events": [dict(e) for e in content.events]}
    if registration.wants_ephemeral:
        ephemeral = [dict(e) for e in content.ephemeral]
        if registration.receive_ephemeral:
            body["ephemeral"] = ephemeral
        if registration.unstable_ephemeral:
            body[UNSTABLE_EPHEMERAL] = ephemeral
        if content.to_device:
            to_device = [dict(m) for m in content.to_device]
            body["to_device"] = to_device
            body[UNSTABLE_TO_DEVICE] = to_device
    if registration.msc3202:
        if content.one_time_key_counts:
            counts = {u: {d: dict(c) for d, c in devices.items()} for u, devices in content.one_time_key_counts.items()}
            body[MSC3202_OTK_COUNTS] = counts
            body[MSC3202_OTK_COUNTS_OLD] = counts
        if content.unused_fallback_key_types:
            body[MSC3202_FALLBACK_KEYS] = {u: {d: list(t) for d, t in devices.items()}
                                           for u, devices in content.unused_fallback_key_types.items()}
        if content.device_lists_changed or content.device_lists_left:
            body[MSC3202_DEVICE_LISTS] = {"changed": list(content.device_lists_changed),
                                          "left": list(content.device_lists_left)}
    return body


@dataclass(frozen=True)
class PendingTransaction:
    """A transaction as the queue stores it: the same txn_id on every retry."""

    txn_id: str
    content: TransactionContent


class TransactionSender:
    def __init__(self, client: AppServiceClient, metrics: AppServiceMetrics):
        self._client = client
        self._metrics = metrics

    async def attempt(self, registration: AppServiceRegistration, transaction: PendingTransaction) -> bool:
        """One delivery attempt; True when the service accepted it, False for the queue to retry."""
        body = build_transaction_body(registration, transaction.content)
        return await self._client.send_transaction(registration, transaction.txn_id, body)

    def queue_length_changed(self, registration: AppServiceRegistration, length: int) -> None:
        """For the queue: how many transactions wait for this service (a metric)."""
        self._metrics.set_queue_length(registration.id, length)
