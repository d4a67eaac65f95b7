"""Per-destination delivery of queued items, at least once, in order, across restarts.

Producers put items in the `outbound_queue` table inside the transaction that made them
(`storage.stores.outbound.enqueue_outbound_txn`), then `poke` the queue. For each destination
with items, one task sends them in order, a transaction at a time, through the courier of the
item's kind (pushers, application services, federation). A transaction keeps its ID and its
items across retries and restarts, so receivers that deduplicate by transaction ID see each
item once. A failed attempt backs off exponentially from `min_retry_s` to `max_retry_s` (with
jitter) per destination, so one dead destination delays nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from homeserver.clock import Clock
from storage.stores.outbound import OutboundBatch, OutboundStore

logger = logging.getLogger(__name__)


class PermanentDeliveryError(Exception):
    """The destination will never accept these items: drop them instead of retrying."""


class Courier(Protocol):
    """Sends one kind's transactions to its destinations.

    Optionally a courier also has `fits(payloads) -> int` (how many of the leading queued items
    one transaction takes, when item classes have their own limits: federation's 50 PDUs and 100
    EDUs) and `async catch_up(destination)` (called before the next attempt after failures, to
    shrink a backlog built while the destination was away).
    """

    # Items per transaction (federation: 50 PDUs + 100 EDUs; pushers: one notification per request).
    max_items: int
    # Optional `metrics_per_destination = False`: couriers whose destinations name users (pushers)
    # have their series summed over the kind, keeping user IDs out of metrics.

    async def deliver(self, destination: str, txn_id: str, items: list[dict[str, Any]]) -> None:
        """Send a transaction; raise to retry later, PermanentDeliveryError to drop it."""


class OutboundQueue:
    def __init__(self, store: OutboundStore, clock: Clock, couriers: Mapping[str, Courier], *,
                 min_retry_s: float = 2.0, max_retry_s: float = 3600.0, max_concurrent: int = 50,
                 min_retry_s_by_kind: Mapping[str, float] | None = None,
                 registry: CollectorRegistry | None = None):
        self._store = store
        self._clock = clock
        self._couriers = dict(couriers)
        self.min_retry_s = min_retry_s
        # Kinds with their own first retry interval (federation: `federation.min_retry_interval_ms`).
        self.min_retry_s_by_kind = dict(min_retry_s_by_kind or {})
        self.max_retry_s = max_retry_s
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        # Set when a destination got new items while its task was running (or sleeping).
        self._poked: dict[tuple[str, str], asyncio.Event] = {}
        # Set by `retry_now`: ends a destination's backoff sleep early.
        self._woken: dict[tuple[str, str], asyncio.Event] = {}
        self._slots = asyncio.Semaphore(max_concurrent)
        self._stopping = False
        self._metrics = _metrics(registry)

    async def start(self) -> None:
        """Resume every destination that still has items queued (after a restart)."""
        self._stopping = False
        queued: dict[tuple[str, str], int] = {}
        for state in await self._store.destinations():
            if state.queued and state.kind in self._couriers:
                key = (state.kind, self._label(state.kind, state.destination))
                queued[key] = queued.get(key, 0) + state.queued
                self.poke(state.kind, state.destination)
        if self._metrics is not None:
            for (kind, label), count in queued.items():
                self._metrics["queued"].labels(kind, label).set(count)

    async def stop(self) -> None:
        self._stopping = True
        for woken in self._woken.values():
            woken.set()  # a task that missed its cancellation (see retry_now) still stops
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    # --- producers -----------------------------------------------------------------------------
    def poke(self, kind: str, destination: str, added: int = 0) -> None:
        """New items for a destination have committed: make sure a task is delivering them."""
        if self._stopping:
            return
        if kind not in self._couriers:
            raise ValueError(f"no courier for outbound kind {kind!r}")
        key = (kind, destination)
        if added and self._metrics is not None:
            self._metrics["queued"].labels(kind, self._label(kind, destination)).inc(added)
        self._poked.setdefault(key, asyncio.Event()).set()
        if key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._deliver_all(kind, destination),
                                                   name=f"outbound-{kind}-{destination[:32]}")

    async def enqueue(self, kind: str, destination: str, payloads: list[dict[str, Any]]) -> None:
        """Queue items in their own transaction and start delivering them."""
        await self._store.enqueue(kind, destination, payloads, self._clock.time_ms())
        self.poke(kind, destination, len(payloads))

    async def retry_now(self, kind: str, destination: str, *, forget_failures: bool = False) -> None:
        """Forget the destination's backoff (it is known to be back) and deliver what is queued;
        `forget_failures` also resets its count of failures (the next one backs off from the start).

        A delivery task sleeping out the backoff is woken; one that is sending carries on. Nothing
        is cancelled or awaited here: a request of the destination's calls this, and must not wait
        on a task that might not stop (a cancellation can be swallowed by a library's wait_for).
        """
        if forget_failures:
            await self._store.clear_backoff(kind, destination)
        else:
            await self._store.reset_backoff(kind, destination)
        # Set after the reset committed: a task that cleared this before it read the backoff is
        # woken; one that clears it later reads the reset.
        self._woken.setdefault((kind, destination), asyncio.Event()).set()
        self.poke(kind, destination)

    # --- delivery ------------------------------------------------------------------------------
    async def _deliver_all(self, kind: str, destination: str) -> None:
        key = (kind, destination)
        courier = self._couriers[kind]
        try:
            while not self._stopping:
                poked = self._poked.setdefault(key, asyncio.Event())
                poked.clear()
                failures = await self._wait_for_backoff(kind, destination)
                if self._stopping:
                    return
                catch_up = getattr(courier, "catch_up", None)
                if failures and catch_up is not None:
                    await catch_up(destination)
                batch = await self._store.next_batch(kind, destination, courier.max_items,
                                                     getattr(courier, "fits", None))
                if batch is None:
                    if poked.is_set():
                        continue
                    return
                async with self._slots:
                    await self._attempt(courier, kind, destination, batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("outbound delivery to %s %s failed unexpectedly; will resume on the next poke",
                             kind, destination)
        finally:
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]

    async def _wait_for_backoff(self, kind: str, destination: str) -> int:
        """Sleep until the destination may be tried again, or `retry_now` says it is back;
        returns its failures in a row."""
        woken = self._woken.setdefault((kind, destination), asyncio.Event())
        woken.clear()
        failures, retry_at = await self._store.get_backoff(kind, destination)
        wait_ms = retry_at - self._clock.time_ms()
        if wait_ms > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_ms / 1000):
                    await woken.wait()
        return failures

    async def _attempt(self, courier: Courier, kind: str, destination: str, batch: OutboundBatch) -> None:
        try:
            await courier.deliver(destination, batch.txn_id, list(batch.payloads))
        except asyncio.CancelledError:
            raise
        except PermanentDeliveryError as error:
            logger.warning("%s %s refused transaction %s for good (%s); dropping %d item(s)", kind, destination,
                           batch.txn_id, error, len(batch.item_ids))
            await self._store.drop(kind, batch)
            self._count(kind, destination, "dropped", len(batch.item_ids))
            return
        except Exception as error:
            now = self._clock.time_ms()
            failures = (await self._store.get_backoff(kind, destination))[0] + 1
            min_retry_s = self.min_retry_s_by_kind.get(kind, self.min_retry_s)
            delay = min(self.max_retry_s, min_retry_s * 2 ** min(failures - 1, 30))
            delay *= random.uniform(0.8, 1.2)
            await self._store.record_failure(kind, destination, str(error) or type(error).__name__,
                                             now + int(delay * 1000), now)
            logger.info("delivering to %s %s failed (%s); retry %d in %.1fs", kind, destination, error, failures,
                        delay)
            if self._metrics is not None:
                self._metrics["failures"].labels(kind, self._label(kind, destination)).inc()
            return
        await self._store.complete(kind, destination, batch, self._clock.time_ms())
        self._count(kind, destination, "sent", len(batch.item_ids))

    def _label(self, kind: str, destination: str) -> str:
        return destination if getattr(self._couriers[kind], "metrics_per_destination", True) else ""

    def _count(self, kind: str, destination: str, outcome: str, items: int) -> None:
        if self._metrics is None:
            return
        destination = self._label(kind, destination)
        self._metrics["transactions"].labels(kind, destination, outcome).inc()
        self._metrics["items"].labels(kind, destination, outcome).inc(items)
        self._metrics["queued"].labels(kind, destination).dec(items)
        if outcome == "sent":
            self._metrics["last_success"].labels(kind, destination).set(self._clock.time_ms() / 1000)


def _metrics(registry: CollectorRegistry | None) -> dict[str, Any] | None:
    if registry is None:
        return None
    existing = getattr(registry, "_outbound_metrics", None)
    if existing is not None:
        return existing
    labels = ("kind", "destination")
    metrics = {
        "queued": Gauge("outbound_queue_items", "Items waiting for delivery", labels, registry=registry),
        "transactions": Counter("outbound_transactions", "Transactions finished, by outcome (sent, dropped)",
                                (*labels, "outcome"), registry=registry),
        "items": Counter("outbound_items", "Items finished, by outcome (sent, dropped)", (*labels, "outcome"),
                         registry=registry),
        "failures": Counter("outbound_failures", "Failed delivery attempts (retried later)", labels,
                            registry=registry),
        "last_success": Gauge("outbound_last_success_timestamp_seconds", "When a transaction last got through",
                              labels, registry=registry),
    }
    registry._outbound_metrics = metrics  # type: ignore[attr-defined]
    return metrics
