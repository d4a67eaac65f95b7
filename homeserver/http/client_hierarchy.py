"""Client API: the space hierarchy (GET /_matrix/client/v1/rooms/{roomId}/hierarchy)."""

from __future__ import annotations

from aiohttp import web

from homeserver.directory.hierarchy import MAX_LIMIT, SpaceHierarchyService
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_response, query_bool, query_int
from homeserver.http.routing import add_client_route

CLIENT_V1 = ("/_matrix/client/v1", "/_matrix/client/unstable/org.matrix.msc2946")


class HierarchyHandlers:
    def __init__(self, hierarchy: SpaceHierarchyService, authenticate: RequestAuthenticator):
        self._hierarchy = hierarchy
        self._authenticate = authenticate

    async def hierarchy(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        result = await self._hierarchy.hierarchy(
            requester, request.match_info["roomId"],
            limit=query_int(request, "limit", minimum=1, maximum=MAX_LIMIT),
            max_depth=query_int(request, "max_depth", minimum=0),
            suggested_only=query_bool(request, "suggested_only"),
            from_token=request.query.get("from"))
        return json_response(result)

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "GET", "/rooms/{roomId}/hierarchy", self.hierarchy, prefixes=CLIENT_V1)
