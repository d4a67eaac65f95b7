"""Token-bucket rate limiting per (action, key), answering `429 M_LIMIT_EXCEEDED` with `retry_after_ms`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from homeserver.clock import Clock
from homeserver.config import RateLimit
from homeserver.errors import MatrixError


class RateLimiter:
    def __init__(self, clock: Clock, limits: dict[str, RateLimit], enabled: bool = True, max_keys: int = 100_000, *,
                 exemptions: Sequence[Callable[[str], bool]] = ()):
        self._clock = clock
        self._limits = limits
        self._enabled = enabled
        self._max_keys = max_keys
        # (action, key) -> (tokens available, time of last update)
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        # Keys for which `is_exempt(key)` holds are never limited (application services' users).
        self._exempt = tuple(exemptions)
        # (action, key) -> the admin's limit for that key; None there means unlimited.
        self._overrides: dict[tuple[str, str], RateLimit | None] = {}

    def set_override(self, action: str, key: str, limit: RateLimit | None) -> None:
        """Use `limit` for this key instead of the configured one; `None` exempts the key."""
        self._overrides[(action, key)] = limit
        self._buckets.pop((action, key), None)

    def clear_override(self, action: str, key: str) -> None:
        self._overrides.pop((action, key), None)
        self._buckets.pop((action, key), None)

    def check(self, action: str, key: str, *, cost: float = 1.0, update: bool = True) -> None:
        """Take `cost` from the bucket or raise 429 with how long to wait.

        With `update=False` nothing is taken: the call only refuses when `cost` is not
        available, for requests that count against a limit only once they complete.
        """
        if not self._enabled:
            return
        if (action, key) in self._overrides:
            limit = self._overrides[(action, key)]
        else:
            limit = self._limits.get(action)
        if limit is None or any(is_exempt(key) for is_exempt in self._exempt):
            return
        now = self._clock.monotonic()
        tokens, last = self._buckets.get((action, key), (float(limit.burst_count), now))
        tokens = min(float(limit.burst_count), tokens + (now - last) * limit.per_second)
        if tokens < cost:
            retry_after_ms = int((cost - tokens) / limit.per_second * 1000) + 1
            self._buckets[(action, key)] = (tokens, now)
            raise MatrixError(429, "M_LIMIT_EXCEEDED", "Too many requests", retry_after_ms=retry_after_ms)
        self._buckets[(action, key)] = (tokens - cost if update else tokens, now)
        if len(self._buckets) > self._max_keys:
            self._evict_full(now)

    def _evict_full(self, now: float) -> None:
        # Buckets that have refilled completely carry no information; drop them.
        for bucket_key, (tokens, last) in list(self._buckets.items()):
            limit = self._overrides.get(bucket_key) or self._limits[bucket_key[0]]
            if tokens + (now - last) * limit.per_second >= limit.burst_count:
                del self._buckets[bucket_key]
