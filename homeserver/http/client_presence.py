"""Client API: presence (GET/PUT /presence/{userId}/status)."""

from __future__ import annotations

from aiohttp import web

from homeserver.ephemeral.presence import PresenceService
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response
from homeserver.http.routing import add_client_route


class PresenceHandlers:
    def __init__(self, presence: PresenceService, authenticate: RequestAuthenticator):
        self._presence = presence
        self._authenticate = authenticate

    async def get_status(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response(await self._presence.get_presence(requester, request.match_info["userId"]))

    async def set_status(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        await self._presence.set_presence(requester, request.match_info["userId"], body)
        return json_response({})

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "GET", "/presence/{userId}/status", self.get_status)
        add_client_route(app, "PUT", "/presence/{userId}/status", self.set_status)
