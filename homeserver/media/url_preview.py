"""URL previews: fetch a page (guarded against reaching private networks), read its OpenGraph data,
fetch and store its image, and cache the answer.

Every outbound connection is checked twice with the shared block list (homeserver/ip_blocklist.py):
before the request and again by the connector's resolver at connect time. Redirects are followed by
hand so each hop is checked the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from homeserver.clock import Clock
from homeserver.errors import MatrixError, forbidden, invalid_param
from homeserver.ip_blocklist import (
    BlockedAddress,
    GuardedResolver,
    IpNetwork,
    UnresolvableHost,
    check_host,
    parse_networks,
)
from homeserver.media.opengraph import decode_html, parse_opengraph
from storage.stores.media import MediaStore

logger = logging.getLogger(__name__)

# Stores fetched image bytes as media; returns the og:image* keys describing it.
SaveImage = Callable[[bytes, str | None, str], Awaitable[dict[str, Any]]]

MAX_REDIRECTS = 5
USER_AGENT = "Mozilla/5.0 (compatible; HuiskamerHomeserver URL preview)"


@dataclass(frozen=True)
class PreviewLimits:
    max_page_bytes: int = 10 * 1024 * 1024
    timeout_s: float = 10.0
    cache_ms: int = 60 * 60 * 1000


async def check_destination(host: str, allowlist: list[IpNetwork]) -> None:
    """Resolve `host` (or take it as an IP literal) and refuse with 403 unless every address is allowed."""
    try:
        await check_host(host, allowlist)
    except UnresolvableHost:
        raise MatrixError(502, "M_UNKNOWN", f"url: could not resolve {host}") from None
    except BlockedAddress:
        raise forbidden(f"url: {host} resolves to an address previews may not reach") from None


def check_url(url: str) -> tuple[str, str]:
    """(scheme, host) of an http(s) URL, or 400 M_INVALID_PARAM naming the parameter."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise invalid_param("url: not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise invalid_param("url: must be an absolute http or https URL")
    return parts.scheme, host


@dataclass(frozen=True)
class FetchedResource:
    url: str
    content_type: str | None
    body: bytes


class UrlPreviewer:
    def __init__(self, store: MediaStore, clock: Clock, save_image: SaveImage, *, allowlist: list[str],
                 limits: PreviewLimits = PreviewLimits()):
        self._store = store
        self._clock = clock
        self._save_image = save_image
        self._allowlist = parse_networks(allowlist)
        self._limits = limits
        self._in_flight: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self._allowlist), limit=20,
                                             use_dns_cache=False)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": USER_AGENT},
                timeout=aiohttp.ClientTimeout(total=self._limits.timeout_s),
            )
        return self._session

    async def preview(self, url: str) -> dict[str, Any]:
        """The OpenGraph data of `url`, from the cache when fresh; concurrent requests share one fetch."""
        check_url(url)
        cached = await self._store.get_url_preview(url, self._clock.time_ms())
        if cached is not None:
            return json.loads(cached)
        pending = self._in_flight.get(url)
        if pending is None:
            pending = asyncio.ensure_future(self._build_and_cache(url))
            self._in_flight[url] = pending
            pending.add_done_callback(lambda _: self._in_flight.pop(url, None))
        return await asyncio.shield(pending)

    async def _build_and_cache(self, url: str) -> dict[str, Any]:
        resource = await self.fetch(url, self._limits.max_page_bytes)
        og = await self._describe(resource)
        now = self._clock.time_ms()
        await self._store.store_url_preview(url, json.dumps(og), now, now + self._limits.cache_ms)
        return og

    async def _describe(self, resource: FetchedResource) -> dict[str, Any]:
        media_type = (resource.content_type or "").split(";", 1)[0].strip().lower()
        if media_type.startswith("image/"):
            return await self._save_image(resource.body, media_type, resource.url)
        if media_type not in ("text/html", "application/xhtml+xml"):
            return {}
        og = parse_opengraph(decode_html(resource.body, resource.content_type), resource.url)
        image_url = og.pop("og:image", None)
        if image_url:
            try:
                image = await self.fetch(image_url, self._limits.max_page_bytes)
                image_type = (image.content_type or "").split(";", 1)[0].strip().lower()
                if image_type.startswith("image/"):
                    og.update(await self._save_image(image.body, image_type, image.url))
            except MatrixError as e:
                # A page whose image cannot be fetched still has a title worth showing.
                logger.info("URL preview: image %s skipped: %s", image_url, e.message)
        return og

    async def fetch(self, url: str, max_bytes: int) -> FetchedResource:
        """GET `url` following redirects, each hop checked; the body is capped at `max_bytes`."""
        for _ in range(MAX_REDIRECTS + 1):
            _, host = check_url(url)
            await check_destination(host, self._allowlist)
            try:
                async with self._http().get(url, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                        url = urljoin(url, response.headers["Location"])
                        continue
                    if response.status != 200:
                        raise MatrixError(502, "M_UNKNOWN", f"url: the server answered HTTP {response.status}")
                    if (response.content_length or 0) > max_bytes:
                        raise MatrixError(502, "M_TOO_LARGE", f"url: larger than {max_bytes} bytes")
                    body = bytearray()
                    async for chunk in response.content.iter_any():
                        body += chunk
                        if len(body) > max_bytes:
                            raise MatrixError(502, "M_TOO_LARGE", f"url: larger than {max_bytes} bytes")
                    return FetchedResource(str(response.url), response.headers.get("Content-Type"), bytes(body))
            except BlockedAddress:
                raise forbidden(f"url: {host} resolves to an address previews may not reach") from None
            except aiohttp.ClientConnectorError as e:
                if isinstance(e.os_error, BlockedAddress):
                    raise forbidden(f"url: {host} resolves to an address previews may not reach") from None
                raise MatrixError(502, "M_UNKNOWN", f"url: could not connect to {host}") from None
            except (TimeoutError, aiohttp.ClientError):
                raise MatrixError(502, "M_UNKNOWN", f"url: fetching {host} failed or timed out") from None
        raise MatrixError(502, "M_UNKNOWN", "url: too many redirects")
