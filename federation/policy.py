"""Which servers we federate with: the configured allow list and deny list, checked for inbound
requests and outbound ones alike. Entries are server names, or `*.example.org` for every name
under example.org (the port is ignored in both)."""

from __future__ import annotations

from collections.abc import Iterable


def _host(server_name: str) -> str:
    if server_name.startswith("["):
        return server_name.split("]", 1)[0] + "]"
    return server_name.rsplit(":", 1)[0] if server_name.count(":") == 1 else server_name


def _matches(host: str, pattern: str) -> bool:
    pattern = _host(pattern).lower()
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


class ServerPolicy:
    def __init__(self, allowlist: Iterable[str] | None, denylist: Iterable[str], *, enabled: bool = True):
        self._allow = None if allowlist is None else list(allowlist)
        self._deny = list(denylist)
        self._enabled = enabled

    def denial_reason(self, server_name: str) -> str | None:
        """Why we do not federate with `server_name`, or None when we do."""
        if not self._enabled:
            return "federation is disabled on this server"
        host = _host(server_name).lower()
        if any(_matches(host, p) for p in self._deny):
            return f"federation with {server_name} is denied by this server's configuration"
        if self._allow is not None and not any(_matches(host, p) for p in self._allow):
            return f"{server_name} is not on this server's federation allow list"
        return None
