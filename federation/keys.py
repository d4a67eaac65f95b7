"""Server signing keys: publishing ours, fetching and caching other servers', and acting as a notary
(server-server API, "Retrieving server keys").

A key answers "may this signature be trusted at time T": a key a server currently publishes is good
until the `valid_until_ts` of the response it came in; one moved to `old_verify_keys` is good for
what was signed before its `expired_ts`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from signedjson.types import SigningKey, VerifyKey

from homeserver.clock import Clock
from homeserver.events.signing import (
    SignatureError,
    decode_verify_key,
    encode_verify_key_base64,
    get_verify_key,
    key_id_of,
    sign_json,
    verify_json_signature,
)
from homeserver.identifiers import parse_server_name
from storage.stores.server_keys import ServerKeyStore, StoredServerKey

logger = logging.getLogger(__name__)

# How soon after a failed or fruitless fetch the same server is asked again.
REFETCH_INTERVAL_MS = 10_000
# A notary answering for a server it cannot reach hands out what it has, however old.
KEY_QUERY_PATH = "/_matrix/key/v2/query"
SERVER_KEY_PATH = "/_matrix/key/v2/server"


class KeyLookupError(Exception):
    """No usable key: unknown, expired, or the server's keys could not be fetched or verified."""


class KeyResponseError(ValueError):
    """A key response is malformed, or not signed as it must be."""


class KeyLookup(Protocol):
    async def get_verify_key(self, server_name: str, key_id: str, *, valid_at_ts: int) -> VerifyKey: ...


@dataclass(frozen=True)
class TrustedKeyServer:
    server_name: str
    # key ID -> verify key; empty means "fetch the notary's own keys directly and trust them".
    verify_keys: Mapping[str, VerifyKey]


def parse_trusted_key_servers(entries: list[Mapping[str, Any]]) -> list[TrustedKeyServer]:
    """The `federation.trusted_key_servers` config; ValueError naming a bad entry."""
    out = []
    for i, entry in enumerate(entries):
        name = entry["server_name"]
        try:
            parse_server_name(name)
        except ValueError as e:
            raise ValueError(f"federation.trusted_key_servers[{i}].server_name: {e}") from None
        keys = {}
        for key_id, key_b64 in (entry.get("verify_keys") or {}).items():
            try:
                keys[key_id] = decode_verify_key(key_id, key_b64)
            except ValueError as e:
                raise ValueError(f"federation.trusted_key_servers[{i}].verify_keys: {e}") from None
        out.append(TrustedKeyServer(name, keys))
    return out


class LocalKeys:
    """Our own signing key and the keys it replaced."""

    def __init__(self, server_name: str, signing_key: SigningKey, old_verify_keys: Mapping[str, Mapping[str, Any]],
                 clock: Clock, validity_period_ms: int):
        self.server_name = server_name
        self.signing_key = signing_key
        self.key_id = key_id_of(signing_key)
        self.verify_key = get_verify_key(signing_key)
        self._old = {k: (decode_verify_key(k, v["key"]), int(v["expired_ts"])) for k, v in old_verify_keys.items()
                     if k != self.key_id}
        self._clock = clock
        self.validity_period_ms = validity_period_ms

    def server_keys_response(self) -> dict[str, Any]:
        """The signed body of `GET /_matrix/key/v2/server`."""
        body = {
            "server_name": self.server_name,
            "valid_until_ts": self._clock.time_ms() + self.validity_period_ms,
            "verify_keys": {self.key_id: {"key": encode_verify_key_base64(self.verify_key)}},
            "old_verify_keys": {
                key_id: {"key": encode_verify_key_base64(key), "expired_ts": expired_ts}
                for key_id, (key, expired_ts) in self._old.items()
            },
        }
        return sign_json(body, self.server_name, self.signing_key)

    def get_verify_key(self, key_id: str, valid_at_ts: int) -> VerifyKey:
        if key_id == self.key_id:
            return self.verify_key
        if key_id in self._old:
            key, expired_ts = self._old[key_id]
            if valid_at_ts < expired_ts:
                return key
            raise KeyLookupError(f"our key {key_id} expired at {expired_ts}")
        raise KeyLookupError(f"{key_id} is not one of our keys")


def parse_key_response(response: Any, fetched_ts: int) -> tuple[str, list[StoredServerKey], int]:
    """Check a `/_matrix/key/v2/server`-shaped object: its form, and that every key in `verify_keys`
    signed it. Returns (server name, keys, valid_until_ts)."""
    if not isinstance(response, Mapping):
        raise KeyResponseError("a key response must be a JSON object")
    server_name = response.get("server_name")
    if not isinstance(server_name, str):
        raise KeyResponseError("server_name: missing or not a string")
    valid_until_ts = response.get("valid_until_ts")
    if type(valid_until_ts) is not int:
        raise KeyResponseError("valid_until_ts: missing or not an integer")
    verify_keys = response.get("verify_keys")
    if not isinstance(verify_keys, Mapping) or not verify_keys:
        raise KeyResponseError("verify_keys: missing or empty")
    old_keys = response.get("old_verify_keys") or {}
    if not isinstance(old_keys, Mapping):
        raise KeyResponseError("old_verify_keys: not an object")
    keys: list[StoredServerKey] = []
    for key_id, entry in verify_keys.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("key"), str):
            raise KeyResponseError(f"verify_keys.{key_id}: expected {{\"key\": <base64>}}")
        if not key_id.startswith("ed25519:"):
            continue  # algorithms we do not know are ignored
        try:
            verify_key = decode_verify_key(key_id, entry["key"])
        except ValueError as e:
            raise KeyResponseError(f"verify_keys.{key_id}: {e}") from None
        try:
            verify_json_signature(response, server_name, verify_key)
        except SignatureError as e:
            raise KeyResponseError(f"the key response of {server_name} is not signed by {key_id}: {e}") from None
        keys.append(StoredServerKey(server_name, key_id, entry["key"], valid_until_ts, None, fetched_ts))
    if not keys:
        raise KeyResponseError("verify_keys: no ed25519 key")
    for key_id, entry in old_keys.items():
        if not key_id.startswith("ed25519:"):
            continue
        if (not isinstance(entry, Mapping) or not isinstance(entry.get("key"), str)
                or type(entry.get("expired_ts")) is not int):
            raise KeyResponseError(f"old_verify_keys.{key_id}: expected {{\"key\": ..., \"expired_ts\": ...}}")
        try:
            decode_verify_key(key_id, entry["key"])
        except ValueError as e:
            raise KeyResponseError(f"old_verify_keys.{key_id}: {e}") from None
        expired_ts = entry["expired_ts"]
        keys.append(StoredServerKey(server_name, key_id, entry["key"], expired_ts, expired_ts, fetched_ts))
    return server_name, keys, valid_until_ts


def key_usable(key: StoredServerKey, valid_at_ts: int) -> bool:
    if key.expired_ts is not None:
        return valid_at_ts < key.expired_ts
    return valid_at_ts <= key.valid_until_ts


# (destination, path, json body or None for GET) -> parsed JSON answer; raises on any failure.
KeyRequest = Callable[[str, str, Any], Awaitable[Any]]


class KeyFetcher:
    """Other servers' keys from the database, fetched when missing or stale: from the trusted key
    servers when any are configured, then (when none had them) from the server itself."""

    def __init__(self, local: LocalKeys, store: ServerKeyStore, clock: Clock, request: KeyRequest,
                 trusted_key_servers: list[TrustedKeyServer]):
        self._local = local
        self._store = store
        self._clock = clock
        self._request = request
        self._trusted = trusted_key_servers
        self._in_flight: dict[str, asyncio.Future[None]] = {}
        self._last_fetch: dict[str, int] = {}

    async def get_verify_key(self, server_name: str, key_id: str, *, valid_at_ts: int) -> VerifyKey:
        """The key `key_id` of `server_name`, usable for a signature made at `valid_at_ts`."""
        if server_name == self._local.server_name:
            return self._local.get_verify_key(key_id, valid_at_ts)
        stored = await self._store.get_server_key(server_name, key_id)
        if stored is None or not key_usable(stored, valid_at_ts):
            if stored is None or stored.expired_ts is None:  # an expired key never comes back
                await self.refresh(server_name, key_id)
                stored = await self._store.get_server_key(server_name, key_id)
        if stored is None:
            raise KeyLookupError(f"unknown key {key_id} of {server_name}")
        if not key_usable(stored, valid_at_ts):
            if stored.expired_ts is not None:
                raise KeyLookupError(f"key {key_id} of {server_name} expired at {stored.expired_ts}")
            raise KeyLookupError(f"key {key_id} of {server_name} is only valid until {stored.valid_until_ts}")
        return decode_verify_key(key_id, stored.verify_key)

    async def prefetch(self, server_name: str) -> None:
        """Fetch a server's keys if we hold none (before its signed answers arrive: a join)."""
        if server_name != self._local.server_name and not await self._store.get_server_keys(server_name):
            await self.refresh(server_name)

    async def refresh(self, server_name: str, key_id: str | None = None, *, force: bool = False) -> None:
        """Fetch `server_name`'s keys now (one fetch at a time per server; not again within
        REFETCH_INTERVAL_MS unless forced). Failures are logged, not raised."""
        now = self._clock.time_ms()
        if not force and now - self._last_fetch.get(server_name, -REFETCH_INTERVAL_MS) < REFETCH_INTERVAL_MS:
            pending = self._in_flight.get(server_name)
            if pending is not None:
                await asyncio.shield(pending)
            return
        pending = self._in_flight.get(server_name)
        if pending is None:
            self._last_fetch[server_name] = now
            pending = asyncio.ensure_future(self._fetch(server_name, key_id))
            self._in_flight[server_name] = pending
            pending.add_done_callback(lambda _: self._in_flight.pop(server_name, None))
        await asyncio.shield(pending)

    async def _fetch(self, server_name: str, key_id: str | None) -> None:
        for notary in self._trusted:
            try:
                if await self._fetch_from_notary(notary, server_name, key_id):
                    return
            except Exception as e:  # one notary failing must not stop us asking the next
                logger.info("Key server %s could not give the keys of %s: %s", notary.server_name, server_name, e)
        # As Synapse does: when no trusted key server has them, ask the server itself.
        try:
            await self._fetch_direct(server_name)
        except Exception as e:
            logger.info("Fetching the keys of %s failed: %s", server_name, e)

    async def _store_response(self, response: Any, expected_server: str) -> None:
        now = self._clock.time_ms()
        server_name, keys, valid_until_ts = parse_key_response(response, now)
        if server_name != expected_server:
            raise KeyResponseError(f"asked for the keys of {expected_server}, got those of {server_name}")
        await self._store.store_server_keys(server_name, keys, dict(response), valid_until_ts, now)

    async def _fetch_direct(self, server_name: str) -> None:
        response = await self._request(server_name, SERVER_KEY_PATH, None)
        await self._store_response(response, server_name)

    async def _notary_keys(self, notary: TrustedKeyServer) -> Mapping[str, VerifyKey]:
        if notary.verify_keys:
            return notary.verify_keys
        await self._fetch_direct(notary.server_name)
        return {k.key_id: decode_verify_key(k.key_id, k.verify_key)
                for k in await self._store.get_server_keys(notary.server_name) if k.expired_ts is None}

    async def _fetch_from_notary(self, notary: TrustedKeyServer, server_name: str, key_id: str | None) -> bool:
        # Naming the key with a minimum validity makes a notary that has nothing fresh (Synapse answers
        # a query naming no key from its cache only) go and fetch it.
        wanted = {key_id: {"minimum_valid_until_ts": self._clock.time_ms()}} if key_id else {}
        body = {"server_keys": {server_name: wanted}}
        answer = await self._request(notary.server_name, KEY_QUERY_PATH, body)
        responses = answer.get("server_keys") if isinstance(answer, Mapping) else None
        if not isinstance(responses, list):
            raise KeyResponseError("server_keys: missing or not a list")
        notary_keys = await self._notary_keys(notary)
        found = False
        for response in responses:
            if not isinstance(response, Mapping) or response.get("server_name") != server_name:
                continue
            if not any(_signed_by(response, notary.server_name, key) for key in notary_keys.values()):
                raise KeyResponseError(f"the answer about {server_name} is not signed by {notary.server_name}")
            await self._store_response(response, server_name)
            found = True
        return found

    # --- notary ------------------------------------------------------------------------------

    async def notary_response(self, server_name: str, minimum_valid_until_ts: int) -> dict[str, Any] | None:
        """`server_name`'s newest signed key response, countersigned by us; fetched first when what
        we have is older than asked. None when we have nothing for it."""
        if server_name == self._local.server_name:
            return self._local.server_keys_response()
        stored = await self._store.get_key_response(server_name)
        if stored is None or stored[1] < minimum_valid_until_ts:
            await self.refresh(server_name, force=True)
            stored = await self._store.get_key_response(server_name)
        if stored is None:
            return None
        return sign_json(stored[0], self._local.server_name, self._local.signing_key)


def _signed_by(obj: Mapping[str, Any], server_name: str, key: VerifyKey) -> bool:
    try:
        verify_json_signature(obj, server_name, key)
    except SignatureError:
        return False
    return True
