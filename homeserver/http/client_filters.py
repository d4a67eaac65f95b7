"""Client API: uploading and downloading sync filters."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.user_filters import FilterService
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response
from homeserver.http.routing import add_client_route


class FilterHandlers:
    def __init__(self, filters: FilterService, authenticate: RequestAuthenticator):
        self._filters = filters
        self._authenticate = authenticate

    async def create(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        filter_id = await self._filters.create_filter(requester.user_id, request.match_info["user_id"], body)
        return json_response({"filter_id": filter_id})

    async def get(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        m = request.match_info
        return json_response(await self._filters.get_filter(requester.user_id, m["user_id"], m["filter_id"]))

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "POST", "/user/{user_id}/filter", self.create)
        add_client_route(app, "GET", "/user/{user_id}/filter/{filter_id}", self.get)
