"""Metrics read from the server's state when Prometheus scrapes: caches, the database, users.

Counters that code paths bump as they go (requests, persistence, queues, stages) live with that
code; what is here is sampled: cache sizes and hit counts kept as plain integers by their owners,
the connection pool, and user counts from two cheap queries, refreshed at most once a minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from homeserver.clock import Clock
from storage.database import Database
from storage.stores.admin import AdminStore

logger = logging.getLogger(__name__)

# (entries, hits, misses) per cache name, from a cache owner's `cache_stats()`.
CacheStats = Callable[[], dict[str, tuple[int, int, int]]]

USER_COUNTS_MAX_AGE_S = 60.0
DAY_MS = 24 * 3600 * 1000
_TRANSACTION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class ServerStateCollector(Collector):
    """Samples caches, the connection pool and user counts into one server's registry."""

    def __init__(self, db: Database, admin_store: AdminStore, clock: Clock, caches: list[CacheStats]):
        self._db = db
        self._admin_store = admin_store
        self._clock = clock
        self._caches = caches
        self._user_counts: dict[str, int] | None = None
        self._user_counts_at = 0.0

    def register(self, registry: CollectorRegistry) -> None:
        """Add the sampled metrics to the registry and time the database's transactions into it."""
        # A server restarted in the same process (tests) replaces its predecessor's collector.
        previous = getattr(registry, "_server_state_collector", None)
        if previous is not None:
            registry.unregister(previous)
        registry.register(self)
        registry._server_state_collector = self  # type: ignore[attr-defined]
        duration, seconds_by_name, count_by_name = _transaction_metrics(registry)

        def observe(name: str, write: bool, elapsed: float) -> None:
            duration.labels("write" if write else "read").observe(elapsed)
            seconds_by_name.labels(name).inc(elapsed)
            count_by_name.labels(name).inc()

        self._db.on_transaction = observe

    async def refresh(self) -> None:
        """Recount users if the last count is older than a minute (called before each scrape)."""
        now = time.monotonic()
        if self._user_counts is not None and now - self._user_counts_at < USER_COUNTS_MAX_AGE_S:
            return
        now_ms = self._clock.time_ms()
        try:
            self._user_counts = await self._admin_store.user_counts(now_ms - DAY_MS, now_ms - 30 * DAY_MS)
        except Exception:
            # A scrape still answers with everything else; the last counts (if any) stay.
            logger.exception("counting users for metrics failed")
        self._user_counts_at = now

    def describe(self) -> Iterator[Metric]:
        # Descriptions without samples, so registering does not run collect() (and query nothing).
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        entries, hits, misses, pool_open, pool_busy, in_flight, statements, retries, registered, daily, \
            monthly = families
        for stats in self._caches:
            for name, (size, hit_count, miss_count) in stats().items():
                entries.add_metric([name], size)
                hits.add_metric([name], hit_count)
                misses.add_metric([name], miss_count)
        opened, busy = self._db.pool_stats()
        pool_open.add_metric([], opened)
        pool_busy.add_metric([], busy)
        in_flight.add_metric([], self._db.interactions_in_flight)
        statements.add_metric([], self._db.statements_run)
        retries.add_metric([], self._db.transaction_retries)
        if self._user_counts is not None:
            registered.add_metric([], self._user_counts["registered"])
            daily.add_metric([], self._user_counts["daily_active"])
            monthly.add_metric([], self._user_counts["monthly_active"])
        yield from families

    @staticmethod
    def _families() -> list[Any]:
        return [
            GaugeMetricFamily("cache_entries", "Entries held by an in-memory cache", labels=["cache"]),
            CounterMetricFamily("cache_hits", "Lookups an in-memory cache answered", labels=["cache"]),
            CounterMetricFamily("cache_misses", "Lookups an in-memory cache had to pass to the database",
                                labels=["cache"]),
            GaugeMetricFamily("db_pool_connections", "Database connections open"),
            GaugeMetricFamily("db_pool_connections_busy", "Database connections inside a transaction"),
            GaugeMetricFamily("db_interactions_in_flight",
                              "Database interactions running or waiting for a connection"),
            CounterMetricFamily("db_statements", "SQL statements sent to the database"),
            CounterMetricFamily("db_transaction_retries", "Transactions run again after a conflict"),
            GaugeMetricFamily("users_registered", "Local accounts, not deactivated and not guests"),
            GaugeMetricFamily("users_daily_active", "Local users seen in the last 24 hours"),
            GaugeMetricFamily("users_monthly_active", "Local users seen in the last 30 days"),
        ]


def _transaction_metrics(registry: CollectorRegistry) -> tuple[Histogram, Counter, Counter]:
    # A server restarted in the same process (tests) wires its new database to the same registry.
    existing = getattr(registry, "_transaction_metrics", None)
    if existing is None:
        existing = (
            Histogram("db_transaction_duration_seconds", "Time to run and commit a transaction, by kind",
                      ("kind",), buckets=_TRANSACTION_BUCKETS, registry=registry),
            Counter("db_transaction_seconds", "Time spent in transactions, by transaction name", ("name",),
                    registry=registry),
            Counter("db_transactions", "Committed transactions, by transaction name", ("name",),
                    registry=registry),
        )
        registry._transaction_metrics = existing  # type: ignore[attr-defined]
    return existing
