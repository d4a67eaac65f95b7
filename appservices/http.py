"""Client API of the Application Service API: ping, and the third-party lookups bridges answer."""

from __future__ import annotations

from aiohttp import web

from appservices.service import AppServices
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response
from homeserver.http.routing import add_client_route

CLIENT_V1 = ("/_matrix/client/v1",)


class AppServiceHandlers:
    def __init__(self, app_services: AppServices, authenticate: RequestAuthenticator):
        self._app_services = app_services
        self._authenticate = authenticate

    async def ping(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request, allow_empty=True)
        return json_response(await self._app_services.ping(requester, request.match_info["appserviceId"], body))

    async def protocols(self, request: web.Request) -> web.Response:
        await self._authenticate(request)
        return json_response(await self._app_services.protocols())

    async def protocol(self, request: web.Request) -> web.Response:
        await self._authenticate(request)
        return json_response(await self._app_services.protocol(request.match_info["protocol"]))

    async def lookup(self, request: web.Request) -> web.Response:
        await self._authenticate(request)
        kind = request.match_info["kind"]
        fields = {k: v for k, v in request.query.items() if k not in ("access_token", "user_id", "device_id")}
        return json_response(await self._app_services.third_party_lookup(kind, request.match_info.get("protocol"),
                                                                          fields))

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "POST", "/appservice/{appserviceId}/ping", self.ping, prefixes=CLIENT_V1)
        add_client_route(app, "GET", "/thirdparty/protocols", self.protocols)
        add_client_route(app, "GET", "/thirdparty/protocol/{protocol}", self.protocol)
        add_client_route(app, "GET", "/thirdparty/{kind:user|location}", self.lookup)
        add_client_route(app, "GET", "/thirdparty/{kind:user|location}/{protocol}", self.lookup)
