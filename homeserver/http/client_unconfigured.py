"""Client API of services this server does not run: third-party networks and TURN.

Element calls `/thirdparty/protocols` and `/voip/turnServer` at start-up. With no
application service bridging a network and no TURN server configured, the honest
answers are empty ones (as Synapse gives), not 404s that clients treat as failures.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.auth import RequestAuthenticator
from homeserver.http.request import json_response
from homeserver.http.routing import add_client_route


class UnconfiguredServiceHandlers:
    def __init__(self, authenticate: RequestAuthenticator):
        self._authenticate = authenticate

    async def protocols(self, request: web.Request) -> web.Response:
        await self._authenticate(request)
        return json_response({})

    async def protocol(self, request: web.Request) -> web.Response:
        await self._authenticate(request)
        raise MatrixError(404, "M_NOT_FOUND", f"No bridge serves the protocol {request.match_info['protocol']!r}")

    async def lookup(self, request: web.Request) -> web.Response:
        await self._authenticate(request)
        return json_response([])

    async def turn_server(self, request: web.Request) -> web.Response:
        await self._authenticate(request)
        return json_response({})

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "GET", "/thirdparty/protocols", self.protocols)
        add_client_route(app, "GET", "/thirdparty/protocol/{protocol}", self.protocol)
        for kind in ("location", "user"):
            add_client_route(app, "GET", f"/thirdparty/{kind}", self.lookup)
            add_client_route(app, "GET", f"/thirdparty/{kind}/{{protocol}}", self.lookup)
        add_client_route(app, "GET", "/voip/turnServer", self.turn_server)
