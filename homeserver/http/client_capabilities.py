"""Client API: GET /capabilities."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_response
from homeserver.http.routing import add_client_route


class CapabilitiesHandlers:
    def __init__(self, capabilities: dict[str, Any], authenticate: RequestAuthenticator,
                 is_server_admin: Callable[[str], Awaitable[bool]] | None = None):
        self._capabilities = capabilities
        self._authenticate = authenticate
        self._is_server_admin = is_server_admin

    async def get(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        capabilities = self._capabilities
        if self._is_server_admin is not None and await self._is_server_admin(requester.user_id):
            # The spec's account moderation (lock, suspend): offered to server admins only.
            capabilities = {**capabilities, "m.account_moderation": {"lock": True, "suspend": True}}
        return json_response({"capabilities": capabilities})

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "GET", "/capabilities", self.get)
