"""Client API: server-side search (POST /search)."""

from __future__ import annotations

from aiohttp import web

from homeserver.directory.search import SearchService
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response
from homeserver.http.routing import add_client_route


class SearchHandlers:
    def __init__(self, search: SearchService, authenticate: RequestAuthenticator):
        self._search = search
        self._authenticate = authenticate

    async def search(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        return json_response(await self._search.search(requester, body, request.query.get("next_batch")))

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "POST", "/search", self.search)
