"""Prometheus metrics per application service, on the server's registry."""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge

# A server restarted in the same process (tests) builds its services again on the same registry.
_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, AppServiceMetrics] = weakref.WeakKeyDictionary()


class AppServiceMetrics:
    @classmethod
    def for_registry(cls, registry: CollectorRegistry) -> AppServiceMetrics:
        """The metrics on `registry`, created on first use."""
        metrics = _BY_REGISTRY.get(registry)
        if metrics is None:
            metrics = _BY_REGISTRY[registry] = cls(registry)
        return metrics

    def __init__(self, registry: CollectorRegistry):
        self.transactions_sent = Counter(
            "appservice_transactions_sent", "Transactions an application service accepted", ["service"],
            registry=registry)
        self.events_sent = Counter(
            "appservice_events_sent", "Room events delivered to an application service", ["service"],
            registry=registry)
        self.ephemeral_sent = Counter(
            "appservice_ephemeral_sent", "Ephemeral events delivered to an application service", ["service"],
            registry=registry)
        self.to_device_sent = Counter(
            "appservice_to_device_sent", "To-device messages delivered to an application service", ["service"],
            registry=registry)
        self.transaction_failures = Counter(
            "appservice_transaction_failures", "Transactions an application service did not accept", ["service"],
            registry=registry)
        self.queue_length = Gauge(
            "appservice_queue_length", "Items waiting to be sent to an application service", ["service"],
            registry=registry)
        self.last_success = Gauge(
            "appservice_last_success_timestamp_seconds",
            "When an application service last accepted a transaction (Unix time)", ["service"], registry=registry)
        self.requests = Counter(
            "appservice_requests", "Requests to application services by kind and outcome",
            ["service", "kind", "outcome"], registry=registry)

    def register(self, service_id: str) -> None:
        """Create the series of a service so dashboards show zeros before the first transaction."""
        for metric in (self.transactions_sent, self.events_sent, self.ephemeral_sent, self.to_device_sent,
                       self.transaction_failures, self.queue_length, self.last_success):
            metric.labels(service_id)

    def set_queue_length(self, service_id: str, length: int) -> None:
        """For the outbound queue: how many items wait for this service."""
        self.queue_length.labels(service_id).set(length)
