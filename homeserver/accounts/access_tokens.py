"""Access-token authentication: token -> Requester, with a cache and batched last-seen writes.

Token lookup runs on every authenticated request, so it must not cost a database round
trip each time: resolved tokens are cached (bounded, short TTL) and invalidated the
moment a token is deleted through this process. Last-seen IP/user agent sightings are
coalesced in memory and written in one batch every few seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from homeserver.accounts.token_values import hash_token
from homeserver.clock import Clock
from homeserver.errors import MatrixError
from homeserver.requester import Requester
from storage.stores.access_tokens import TokenInfo
from storage.stores.accounts import AccountStore

logger = logging.getLogger(__name__)

# (user_id, device_id, ip, user_agent, ts)
Sighting = tuple[str, str | None, str, str, int]


class AuthService:
    def __init__(self, store: AccountStore, clock: Clock, *, cache_size: int = 10_000,
                 cache_ttl_s: float = 300.0, last_seen_flush_s: float = 5.0,
                 on_sightings: Sequence[Callable[[list[Sighting]], Awaitable[None]]] = ()):
        self._store = store
        self._clock = clock
        self._cache: OrderedDict[str, tuple[TokenInfo, float]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_ttl_s = cache_ttl_s
        self._cache_hits = self._cache_misses = 0
        self._pending_last_seen: dict[tuple[str, str | None, str, str], int] = {}
        self._last_seen_flush_s = last_seen_flush_s
        self._flusher: asyncio.Task[None] | None = None
        # Bumped on every invalidation, so a lookup that raced with one does not re-cache a dead token.
        self._generation = 0
        # `callback(entries)` with each batch of (user, device, ip, user agent, ts) before it is written.
        self._on_sightings = tuple(on_sightings)

    def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_periodically())

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        await self.flush_last_seen()

    # --- lookups ---------------------------------------------------------------
    async def get_requester(self, token: str | None, *, ip: str = "-", user_agent: str = "",
                            allow_guest: bool = False, allow_expired: bool = False) -> Requester:
        """Resolve an access token; 401 `M_MISSING_TOKEN` / `M_UNKNOWN_TOKEN` when it does not."""
        if not token:
            raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
        token_hash = hash_token(token)
        info = await self._lookup(token_hash)
        if info is None or info.deactivated:
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown access token", soft_logout=False)
        if info.locked:
            # The spec's account locking: the client keeps its session and shows the lock.
            raise MatrixError(401, "M_USER_LOCKED", "This account has been locked", soft_logout=True)
        if not allow_expired and info.valid_until_ms is not None and info.valid_until_ms <= self._clock.time_ms():
            # The client may refresh: a soft logout keeps its keys and session.
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Access token has expired", soft_logout=True)
        if info.is_guest and not allow_guest:
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is not allowed here")
        self._note_last_seen(info.user_id, info.device_id, ip, user_agent)
        return Requester(info.user_id, info.device_id, info.token_id, info.is_guest)

    async def _lookup(self, token_hash: str) -> TokenInfo | None:
        now = self._clock.monotonic()
        cached = self._cache.get(token_hash)
        if cached is not None and now - cached[1] < self._cache_ttl_s:
            self._cache.move_to_end(token_hash)
            self._cache_hits += 1
            return cached[0]
        self._cache_misses += 1
        generation = self._generation
        info = await self._store.get_access_token(token_hash)
        if info is not None and generation == self._generation:
            self._cache[token_hash] = (info, now)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return info

    def cache_stats(self) -> dict[str, tuple[int, int, int]]:
        """(entries, hits, misses) of the access token cache, for metrics."""
        return {"access_tokens": (len(self._cache), self._cache_hits, self._cache_misses)}

    async def is_server_admin(self, user_id: str) -> bool:
        user = await self._store.get_user(user_id)
        return bool(user is not None and user.admin)

    def invalidate_token_hashes(self, token_hashes: list[str]) -> None:
        self._generation += 1
        for token_hash in token_hashes:
            self._cache.pop(token_hash, None)

    def invalidate_user(self, user_id: str) -> None:
        self._generation += 1
        for token_hash in [h for h, (info, _) in self._cache.items() if info.user_id == user_id]:
            del self._cache[token_hash]

    def forget_pending_last_seen(self, user_id: str) -> None:
        """Drop the user's sightings not yet written (erasure: none may be written afterwards)."""
        for key in [k for k in self._pending_last_seen if k[0] == user_id]:
            del self._pending_last_seen[key]

    # --- last seen ---------------------------------------------------------------
    def _note_last_seen(self, user_id: str, device_id: str | None, ip: str, user_agent: str) -> None:
        self._pending_last_seen[(user_id, device_id, ip, user_agent[:512])] = self._clock.time_ms()

    async def flush_last_seen(self) -> None:
        if not self._pending_last_seen:
            return
        batch, self._pending_last_seen = self._pending_last_seen, {}
        entries = [(u, d, ip, ua, ts) for (u, d, ip, ua), ts in batch.items()]
        for callback in self._on_sightings:
            try:
                await callback(entries)
            except Exception:
                logger.exception("A last-seen listener failed on %d entries", len(entries))
        try:
            await self._store.record_last_seen(entries)
        except Exception:
            logger.exception("Could not record %d last-seen entries", len(entries))

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._last_seen_flush_s)
            await self.flush_last_seen()
