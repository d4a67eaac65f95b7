"""Resolving a server name to where to connect (server-server API, "Resolving server names").

The answer for a name is a list of `Target`s to try in order: the host to connect to (an IP
literal, or a name the connector resolves through the IP block list), the port, the `Host` header
to send, and the name the TLS certificate must be valid for (also the SNI, unless it is an IP
address, for which no SNI is sent).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from homeserver.clock import Clock
from homeserver.identifiers import ServerName, parse_server_name

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8448
WELL_KNOWN_CACHE_MS = 24 * 60 * 60 * 1000
WELL_KNOWN_MAX_CACHE_MS = 48 * 60 * 60 * 1000
WELL_KNOWN_ERROR_CACHE_MS = 60 * 60 * 1000
# Start of the back-off for a server whose /.well-known keeps failing; doubles up to the error cache.
WELL_KNOWN_ERROR_BACKOFF_START_MS = 2 * 60 * 1000
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Target:
    connect_host: str  # IP literal (without brackets) or DNS name
    port: int
    host_header: str
    tls_name: str  # name or IP the certificate must match

    @property
    def url_host(self) -> str:
        return f"[{self.connect_host}]" if ":" in self.connect_host else self.connect_host


@dataclass(frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class WellKnownResult:
    """The parsed `m.server` (None when the lookup failed or was invalid) and how long to cache it."""

    server: str | None
    cache_ms: int


# GET https://<hostname>/.well-known/matrix/server -> (status, parsed JSON or None, Cache-Control or None).
WellKnownFetch = Callable[[str], Awaitable[tuple[int, Any, str | None]]]
SrvLookup = Callable[[str], Awaitable[list[SrvRecord]]]


async def dns_srv_lookup(name: str) -> list[SrvRecord]:
    """SRV records of `name` through the system's DNS configuration; [] when there are none."""
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

    try:
        answer = await dns.asyncresolver.resolve(name, "SRV", lifetime=10)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
        return []
    except dns.exception.DNSException as e:
        logger.info("SRV lookup of %s failed: %s", name, e)
        return []
    return [SrvRecord(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True)) for r in answer]


def order_srv(records: list[SrvRecord]) -> list[SrvRecord]:
    """RFC 2782 order: lowest priority first, weighted random order within a priority; `.` means
    'no service here'."""
    records = [r for r in records if r.target not in ("", ".")]
    out: list[SrvRecord] = []
    for priority in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == priority]
        while group:
            total = sum(r.weight for r in group)
            pick = random.uniform(0, total) if total else 0
            for r in group:
                pick -= r.weight
                if pick <= 0 or total == 0:
                    break
            out.append(r)
            group.remove(r)
    return out


def _cache_time(cache_control: str | None) -> int:
    if cache_control:
        if "no-store" in cache_control.lower():
            return 0
        match = _MAX_AGE.search(cache_control)
        if match:
            return min(int(match.group(1)) * 1000, WELL_KNOWN_MAX_CACHE_MS)
    return WELL_KNOWN_CACHE_MS


class ServerResolver:
    def __init__(self, clock: Clock, fetch_well_known: WellKnownFetch, srv_lookup: SrvLookup = dns_srv_lookup):
        self._clock = clock
        self._fetch_well_known = fetch_well_known
        self._srv_lookup = srv_lookup
        # hostname -> (result, expires_ms); failures also remember their back-off.
        self._well_known: dict[str, tuple[WellKnownResult, int]] = {}
        self._failures: dict[str, int] = {}

    async def resolve(self, server_name: str) -> list[Target]:
        """Where to reach `server_name`, most preferred first; ValueError when it is not a server name."""
        name = parse_server_name(server_name)
        if name.ip is not None or name.port is not None:
            return [self._direct(name, server_name)]
        delegated = (await self.well_known(name.host)).server
        if delegated is not None:
            try:
                dname = parse_server_name(delegated)
            except ValueError:
                dname = None
            if dname is not None:
                if dname.ip is not None or dname.port is not None:
                    return [self._direct(dname, delegated)]
                return await self._srv_or_default(dname.host)
        return await self._srv_or_default(name.host)

    def _direct(self, name: ServerName, host_header: str) -> Target:
        # Steps 1, 2, 3.1 and 3.2: the literal or name itself, with its port or 8448.
        return Target(name.host, name.port or DEFAULT_PORT, host_header, name.host)

    async def _srv_or_default(self, hostname: str) -> list[Target]:
        # Steps 3.3-3.5 and 4-6: SRV _matrix-fed, then the deprecated _matrix, then the name on 8448.
        # The Host header and the certificate are those of `hostname`, wherever SRV points.
        for service in ("_matrix-fed._tcp", "_matrix._tcp"):
            records = order_srv(await self._srv_lookup(f"{service}.{hostname}"))
            if records:
                return [Target(r.target, r.port, hostname, hostname) for r in records]
        return [Target(hostname, DEFAULT_PORT, hostname, hostname)]

    async def well_known(self, hostname: str) -> WellKnownResult:
        """The delegated server of `hostname` from its `/.well-known/matrix/server`, cached."""
        now = self._clock.time_ms()
        cached = self._well_known.get(hostname)
        if cached is not None and cached[1] > now:
            return cached[0]
        result = await self._lookup_well_known(hostname)
        if result.server is None:
            # Errors are cached briefly, backing off exponentially up to an hour for repeated failures.
            backoff = min(self._failures.get(hostname, WELL_KNOWN_ERROR_BACKOFF_START_MS // 2) * 2,
                          WELL_KNOWN_ERROR_CACHE_MS)
            self._failures[hostname] = backoff
            result = WellKnownResult(None, backoff)
        else:
            self._failures.pop(hostname, None)
        self._well_known[hostname] = (result, now + result.cache_ms)
        return result

    async def _lookup_well_known(self, hostname: str) -> WellKnownResult:
        try:
            status, body, cache_control = await self._fetch_well_known(hostname)
        except Exception as e:  # connection refused, TLS failure, timeout, blocked address...
            logger.info("/.well-known/matrix/server of %s failed: %s", hostname, e)
            return WellKnownResult(None, 0)
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("m.server"), str):
            return WellKnownResult(None, 0)
        server = body["m.server"]
        try:
            parse_server_name(server)
        except ValueError:
            logger.info("/.well-known/matrix/server of %s names an invalid server %r", hostname, server)
            return WellKnownResult(None, 0)
        return WellKnownResult(server, _cache_time(cache_control))
