"""Client API: PUT /sendToDevice/{eventType}/{txnId}."""

from __future__ import annotations

from aiohttp import web

from homeserver.e2ee.to_device import ToDeviceService
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response
from homeserver.http.routing import add_client_route

PREFIXES = ("/_matrix/client/v3", "/_matrix/client/r0", "/_matrix/client/unstable")


class ToDeviceHandlers:
    def __init__(self, to_device: ToDeviceService, authenticate: RequestAuthenticator):
        self._to_device = to_device
        self._authenticate = authenticate

    async def send(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        body = await json_object(request)
        await self._to_device.send(requester, request.match_info["eventType"], request.match_info["txnId"], body)
        return json_response({})

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "PUT", "/sendToDevice/{eventType}/{txnId}", self.send, PREFIXES)
