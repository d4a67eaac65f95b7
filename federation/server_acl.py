"""Server ACLs (`m.room.server_acl`): whether a server may take part in a room, in the order the
event's schema gives: no ACL allows; an IP literal with `allow_ip_literals: false` is denied; a
`deny` match denies; an `allow` match allows; anything else is denied. Patterns are
case-insensitive globs (`*`, `?`) matched against the server name without its port."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from homeserver.errors import forbidden
from storage.stores.events import EventStore


def _host(server_name: str) -> str:
    if server_name.startswith("["):
        return server_name.split("]", 1)[0] + "]"
    return server_name.rsplit(":", 1)[0] if server_name.count(":") == 1 else server_name


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") else host)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    body = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL)


def _matches_any(host: str, patterns: Any) -> bool:
    if not isinstance(patterns, list):
        return False
    return any(isinstance(p, str) and _glob(p).match(host) is not None for p in patterns)


def server_allowed_by_acl(server_name: str, acl_content: Mapping[str, Any] | None) -> bool:
    """Whether the ACL (the content of the room's `m.room.server_acl`, None when there is none) lets
    `server_name` take part."""
    if acl_content is None:
        return True
    host = _host(server_name)
    allow_ip_literals = acl_content.get("allow_ip_literals", True)
    if allow_ip_literals is False and _is_ip_literal(host):
        return False
    if _matches_any(host, acl_content.get("deny", [])):
        return False
    return _matches_any(host, acl_content.get("allow", []))


class ServerAcls:
    """The server ACL of each room (its current `m.room.server_acl`), checked on inbound federation."""

    def __init__(self, events: EventStore):
        self._events = events

    async def allows(self, room_id: str, server_name: str) -> bool:
        event_id = await self._events.get_current_state_event_id(room_id, "m.room.server_acl", "")
        if event_id is None:
            return True
        event = await self._events.get_event(event_id)
        if event is None or event.rejected_reason is not None:
            return True
        return server_allowed_by_acl(server_name, event.content)

    async def check(self, room_id: str, server_name: str) -> None:
        if not await self.allows(room_id, server_name):
            raise forbidden(f"Server {server_name} is denied by the server ACL of {room_id}")

    async def check_request(self, origin: str, request: web.Request) -> None:
        """The authenticator's ACL check: requests naming a room are refused to servers its ACL denies."""
        room_id = request.match_info.get("roomId")
        if room_id:
            await self.check(room_id, origin)
