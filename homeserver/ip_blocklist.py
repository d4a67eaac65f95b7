"""The outbound IP block list shared by every request this server makes on someone's behalf:
URL previews, remote media and federation.

Public unicast addresses may be reached; private, loopback, link-local, reserved and multicast
ones only when an allow list names them. A host name is refused when *any* of its addresses is
blocked, and `GuardedResolver` checks again at connect time, so a DNS answer that changes between
the check and the connection (rebinding) cannot reach a blocked address either. IP literals never
go through a resolver, so callers check them with `check_host` before connecting.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")


class BlockedAddress(OSError):
    """The destination resolves to an address outside what this client may reach."""


class UnresolvableHost(OSError):
    """The destination host name has no address."""


def parse_networks(entries: list[str] | tuple[str, ...]) -> list[IpNetwork]:
    return [ipaddress.ip_network(entry, strict=False) for entry in entries]


def is_address_allowed(address: IpAddress, allowlist: list[IpNetwork]) -> bool:
    """Public unicast addresses are allowed; private, loopback, link-local, reserved and multicast ones
    only when the allow list names them."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address.version == net.version and address in net for net in allowlist):
        return True
    return address.is_global and not address.is_multicast


def ip_literal(host: str) -> IpAddress | None:
    """The address of an IP-literal host (`1.2.3.4`, `::1` or `[::1]`), else None."""
    try:
        return ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    except ValueError:
        return None


class GuardedResolver(AbstractResolver):
    """The default resolver, refusing the whole name if any address it resolves to is not allowed."""

    def __init__(self, allowlist: list[IpNetwork], inner: AbstractResolver | None = None):
        self._inner = inner or ThreadedResolver()
        self._allowlist = allowlist

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if not is_address_allowed(ipaddress.ip_address(result["host"]), self._allowlist):
                raise BlockedAddress(f"{host} resolves to a blocked address")
        return results

    async def close(self) -> None:
        await self._inner.close()


async def check_host(host: str, allowlist: list[IpNetwork]) -> list[IpAddress]:
    """The addresses of `host` (an IP literal or a name); BlockedAddress unless every one is allowed,
    UnresolvableHost when the name does not resolve."""
    literal = ip_literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError:
            raise UnresolvableHost(f"could not resolve {host}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise UnresolvableHost(f"could not resolve {host}")
    if not all(is_address_allowed(a, allowlist) for a in addresses):
        raise BlockedAddress(f"{host} resolves to a blocked address")
    return addresses
