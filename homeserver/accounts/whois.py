"""`GET /admin/whois/{userId}`: a user's sessions and the connections seen for each."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.accounts.access_tokens import AuthService
from homeserver.errors import forbidden, not_found
from homeserver.identifiers import parse_user_id
from homeserver.requester import Requester
from storage.stores.accounts import AccountStore
from storage.stores.login_audit import LoginAuditEntry


class WhoisService:
    def __init__(self, store: AccountStore, auth: AuthService, *,
                 login_audit: Callable[[str], Awaitable[list[LoginAuditEntry]]] | None = None):
        self._store = store
        self._auth = auth
        # `login_audit(user_id)`: the login audit entries (kind, device_id, ip, user_agent, ts) added to the connections.
        self._audit = login_audit

    async def whois(self, requester: Requester, user_id: str) -> dict[str, Any]:
        """Server admins may ask about anyone; users about themselves (as Synapse allows)."""
        parse_user_id(user_id, "userId")
        if requester.user_id != user_id and not await self._auth.is_server_admin(requester.user_id):
            raise forbidden("You are not a server admin")
        if await self._store.get_user(user_id) is None:
            raise not_found("User not found")
        devices: dict[str, Any] = {}
        for sighting in await self._store.get_user_ips(user_id):
            device = devices.setdefault(sighting.device_id or "", {"sessions": [{"connections": []}]})
            device["sessions"][0]["connections"].append({
                "ip": sighting.ip, "last_seen": sighting.last_seen, "user_agent": sighting.user_agent,
            })
        if self._audit is not None:
            for entry in await self._audit(user_id):
                device = devices.setdefault(entry.device_id or "", {"sessions": [{"connections": []}]})
                connections = device["sessions"][0]["connections"]
                if not any(c["ip"] == entry.ip and c["user_agent"] == entry.user_agent for c in connections):
                    connections.append({"ip": entry.ip, "last_seen": entry.ts, "user_agent": entry.user_agent})
        return {"user_id": user_id, "devices": devices}
