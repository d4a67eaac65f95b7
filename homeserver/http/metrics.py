"""Prometheus metrics: per-server registry, request counters and latency histograms."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class HttpMetrics:
    """Holds one registry per server process so that several servers can share a Python process (tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "http_requests", "HTTP requests served", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to serve an HTTP request",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        # Awaited before each scrape, to sample what needs a query (user counts). Keyed by name so
        # that a server started again in the same process replaces its old callbacks.
        self._before_scrape: dict[str, Callable[[], Awaitable[None]]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def set_scrape_callback(self, name: str, callback: Callable[[], Awaitable[None]]) -> None:
        """Await `callback()` before each scrape is rendered."""
        self._before_scrape[name] = callback

    async def render(self, request: web.Request) -> web.Response:
        for callback in self._before_scrape.values():
            await callback()
        body = generate_latest(self.registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    def register_routes(self, app: web.Application) -> None:
        app.router.add_get("/metrics", self.render)
