"""Client API of services this server does not run: TURN.

Element calls `/voip/turnServer` at start-up. With no TURN server configured, the honest
answer is an empty one (as Synapse gives), not a 404 that clients treat as a failure.
Third-party lookups (`/thirdparty/...`) are answered by the application services package.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_response
from homeserver.http.routing import add_client_route


class UnconfiguredServiceHandlers:
    def __init__(self, authenticate: RequestAuthenticator):
        self._authenticate = authenticate

    async def turn_server(self, request: web.Request) -> web.Response:
        await self._authenticate(request)
        return json_response({})

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "GET", "/voip/turnServer", self.turn_server)
