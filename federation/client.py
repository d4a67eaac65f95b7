"""Outbound federation requests: resolution, TLS verified against the system store (or the configured
CA bundle alone), the shared IP block list, and an X-Matrix signature on every request."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

import aiohttp
from signedjson.types import SigningKey
from yarl import URL

from federation.policy import ServerPolicy
from federation.resolver import ServerResolver, Target
from federation.x_matrix import sign_request
from homeserver.clock import Clock
from homeserver.ip_blocklist import BlockedAddress, GuardedResolver, IpNetwork, check_host, ip_literal

logger = logging.getLogger(__name__)

USER_AGENT = "huiskamer-homeserver federation"
MAX_RESPONSE_BYTES = 50 * 1024 * 1024
MAX_WELL_KNOWN_BYTES = 64 * 1024
MAX_WELL_KNOWN_REDIRECTS = 5
# Error bodies of streamed requests are read only this far (they are small JSON objects).
MAX_ERROR_BYTES = 64 * 1024
MAX_MEDIA_REDIRECTS = 5


class FederationError(Exception):
    """A federation request did not produce a successful answer."""


class FederationDenied(FederationError):
    """The destination is refused by our own configuration (server lists or IP block list)."""


class FederationUnreachable(FederationError):
    """No target of the destination could be reached."""


class FederationHttpError(FederationError):
    """The destination answered with an HTTP error."""

    def __init__(self, destination: str, status: int, body: Any, *, location: str | None = None):
        self.status = status
        self.body = body
        self.location = location
        self.errcode = body.get("errcode") if isinstance(body, dict) else None
        error = body.get("error") if isinstance(body, dict) else None
        super().__init__(f"{destination} answered {status} {self.errcode or ''} {error or ''}".strip())


def build_ssl_context(ca_bundle_path: str | None) -> ssl.SSLContext | bool:
    """Certificate checking as the spec asks: only the configured bundle, or the system store.

    For the system store, True: aiohttp's own verifying context, which it builds at import in any
    case; a second one would hold another parsed copy of the store (about 1 MiB)."""
    if ca_bundle_path:
        return ssl.create_default_context(cafile=ca_bundle_path)
    return True


def encode_path(path: str, query: Mapping[str, Any] | None = None) -> str:
    """An already-encoded request target. `path` segments the caller built with `quote_segment`."""
    if not query:
        return path
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            pairs.append((key, str(item).lower() if isinstance(item, bool) else str(item)))
    return path + "?" + urlencode(pairs, quote_via=quote)


def quote_segment(value: str) -> str:
    """One path segment (a user ID, alias, room ID...) percent-encoded."""
    return quote(value, safe="")


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None once it grows past `limit` bytes."""
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


class FederationClient:
    def __init__(self, server_name: str, signing_key: SigningKey, clock: Clock, *, policy: ServerPolicy,
                 ip_allowlist: list[IpNetwork], ca_bundle_path: str | None, timeout_s: float,
                 max_response_bytes: int = MAX_RESPONSE_BYTES, resolver: ServerResolver | None = None):
        self.server_name = server_name
        self._signing_key = signing_key
        self._policy = policy
        self._allowlist = ip_allowlist
        self._ssl = build_ssl_context(ca_bundle_path)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_response_bytes = max_response_bytes
        self._session: aiohttp.ClientSession | None = None
        self.resolver = resolver or ServerResolver(clock, self.fetch_well_known)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self._allowlist), ssl=self._ssl,
                                             limit_per_host=20, use_dns_cache=False)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  headers={"User-Agent": USER_AGENT}, auto_decompress=True)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _check_target(self, target: Target) -> None:
        # IP literals never reach the connector's resolver, so the block list is applied here.
        if ip_literal(target.connect_host) is not None:
            await check_host(target.connect_host, self._allowlist)

    async def _send(self, method: str, destination: str, path: str, query: Mapping[str, Any] | None,
                    content: Any, timeout: aiohttp.ClientTimeout | None) -> aiohttp.ClientResponse:
        """The answer of the first target that answers at all, its body not yet read (the caller releases it)."""
        reason = self._policy.denial_reason(destination)
        if reason is not None:
            raise FederationDenied(reason)
        target_uri = encode_path(path, query)
        auth = sign_request(self.server_name, self._signing_key, destination, method, target_uri, content)
        body = None if content is None else json.dumps(content, ensure_ascii=False).encode("utf-8")
        try:
            targets = await self.resolver.resolve(destination)
        except ValueError as e:
            raise FederationError(f"destination: {e}") from None
        last_error: Exception | None = None
        for target in targets:
            headers = {"Authorization": auth, "Host": target.host_header}
            if body is not None:
                headers["Content-Type"] = "application/json"
            url = URL(f"https://{target.url_host}:{target.port}{target_uri}", encoded=True)
            try:
                await self._check_target(target)
                return await self._http().request(
                    method, url, data=body, headers=headers, allow_redirects=False,
                    server_hostname=None if ip_literal(target.tls_name) else target.tls_name,
                    timeout=timeout or self._timeout,
                )
            except BlockedAddress as e:
                raise FederationDenied(f"{destination}: {e}") from None
            except aiohttp.ClientConnectorError as e:
                if isinstance(e.os_error, BlockedAddress):
                    raise FederationDenied(f"{destination}: {e.os_error}") from None
                last_error = e
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                last_error = e
        raise FederationUnreachable(f"{destination}: could not be reached: {last_error}")

    async def request(self, method: str, destination: str, path: str, *, query: Mapping[str, Any] | None = None,
                      content: Any = None) -> Any:
        """Send a signed request and return the parsed JSON answer; FederationError on any failure.

        The whole exchange (connecting, waiting, reading) has the configured time limit and the answer
        at most `max_response_bytes`: a remote that hangs, dribbles or floods fails like one that is down."""
        response = await self._send(method, destination, path, query, content, None)
        async with response:
            try:
                raw = await _read_capped(response, self._max_response_bytes)
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                raise FederationUnreachable(f"{destination}: the answer to {method} {path} broke off: {e!r}") from None
            if raw is None:
                raise FederationError(f"{destination}: the answer is larger than {self._max_response_bytes} bytes")
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            if response.status >= 300:
                raise FederationHttpError(destination, response.status, parsed,
                                          location=response.headers.get("Location"))
            if parsed is None and raw.strip() != b"null":
                raise FederationError(f"{destination}: the answer to {method} {path} is not JSON")
            return parsed

    async def open_stream(self, destination: str, path: str, *, query: Mapping[str, Any] | None = None,
                          timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        """A signed GET whose successful answer is returned unread, for bodies too large to hold (media).

        FederationHttpError (with `location` for redirects) unless the answer is 2xx; the caller reads the
        body within its own limits and releases the response."""
        response = await self._send("GET", destination, path, query, None, timeout)
        if response.status < 300:
            return response
        async with response:
            try:
                raw = await _read_capped(response, MAX_ERROR_BYTES)
                parsed = json.loads(raw) if raw else None
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
                parsed = None
            raise FederationHttpError(destination, response.status, parsed, location=response.headers.get("Location"))

    async def open_url(self, url: str, *, timeout: aiohttp.ClientTimeout,
                       max_redirects: int = MAX_MEDIA_REDIRECTS) -> aiohttp.ClientResponse:
        """An unsigned GET of a plain http(s) URL (where a remote redirected us), following redirects; every
        hop checked against the IP block list. The 2xx answer is returned unread; FederationError otherwise."""
        for _ in range(max_redirects + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise FederationError(f"redirect: {url!r} is not an http(s) URL")
            try:
                if ip_literal(parts.hostname) is not None:
                    await check_host(parts.hostname, self._allowlist)
                response = await self._http().get(URL(url), allow_redirects=False, timeout=timeout)
            except BlockedAddress as e:
                raise FederationDenied(f"redirect: {e}") from None
            except aiohttp.ClientConnectorError as e:
                if isinstance(e.os_error, BlockedAddress):
                    raise FederationDenied(f"redirect: {e.os_error}") from None
                raise FederationUnreachable(f"redirect: {parts.hostname} could not be reached: {e}") from None
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                raise FederationUnreachable(f"redirect: {parts.hostname} could not be reached: {e!r}") from None
            if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                url = urljoin(url, response.headers["Location"])
                response.release()
                continue
            if response.status >= 300:
                response.release()
                raise FederationHttpError(parts.hostname, response.status, None)
            return response
        raise FederationError(f"redirect: more than {max_redirects} redirects")

    async def get_json(self, destination: str, path: str, query: Mapping[str, Any] | None = None) -> Any:
        return await self.request("GET", destination, path, query=query)

    async def post_json(self, destination: str, path: str, content: Any,
                        query: Mapping[str, Any] | None = None) -> Any:
        return await self.request("POST", destination, path, query=query, content=content)

    async def put_json(self, destination: str, path: str, content: Any,
                       query: Mapping[str, Any] | None = None) -> Any:
        return await self.request("PUT", destination, path, query=query, content=content)

    async def key_request(self, destination: str, path: str, content: Any) -> Any:
        """The key fetcher's transport: GET when `content` is None, else POST."""
        if content is None:
            return await self.get_json(destination, path)
        return await self.post_json(destination, path, content)

    async def fetch_well_known(self, hostname: str) -> tuple[int, Any, str | None]:
        """GET https://<hostname>/.well-known/matrix/server, following redirects (each hop checked)."""
        url = f"https://{hostname}/.well-known/matrix/server"
        for _ in range(MAX_WELL_KNOWN_REDIRECTS + 1):
            host = urlsplit(url).hostname or ""
            if ip_literal(host) is not None:
                await check_host(host, self._allowlist)
            async with self._http().get(URL(url), allow_redirects=False) as response:
                if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                    next_url = urljoin(url, response.headers["Location"])
                    if not next_url.startswith("https://"):
                        return 0, None, None
                    url = next_url
                    continue
                raw = await _read_capped(response, MAX_WELL_KNOWN_BYTES)
                try:
                    body = json.loads(raw) if raw is not None else None
                except ValueError:
                    body = None
                return response.status, body, response.headers.get("Cache-Control")
        return 0, None, None
