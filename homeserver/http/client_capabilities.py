"""Client API: GET /capabilities."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.http.auth import RequestAuthenticator
from homeserver.http.request import json_response
from homeserver.http.routing import add_client_route


class CapabilitiesHandlers:
    def __init__(self, capabilities: dict[str, Any], authenticate: RequestAuthenticator):
        self._capabilities = capabilities
        self._authenticate = authenticate

    async def get(self, request: web.Request) -> web.Response:
        await self._authenticate(request, allow_guest=True)
        return json_response({"capabilities": self._capabilities})

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "GET", "/capabilities", self.get)
