"""Client API: the spec's server administration module (`/admin/whois`)."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.whois import WhoisService
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_response
from homeserver.http.routing import add_client_route


class ClientAdminHandlers:
    def __init__(self, whois: WhoisService, authenticate: RequestAuthenticator):
        self._whois = whois
        self._authenticate = authenticate

    async def whois(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response(await self._whois.whois(requester, request.match_info["userId"]))

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "GET", "/admin/whois/{userId}", self.whois)
