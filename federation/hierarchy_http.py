"""Route of the federation space hierarchy: GET /_matrix/federation/v1/hierarchy/{roomId}, behind X-Matrix
authentication; homeserver/directory/hierarchy.py decides what the asking server may see."""

from __future__ import annotations

from aiohttp import web

from federation.auth import FederationAuthenticator
from homeserver.directory.hierarchy import SpaceHierarchyService
from homeserver.errors import invalid_param
from homeserver.http.request import json_response, query_bool

FEDERATION_V1 = "/_matrix/federation/v1"


class FederationHierarchyHandlers:
    def __init__(self, authenticator: FederationAuthenticator, hierarchy: SpaceHierarchyService):
        self._auth = authenticator
        self._hierarchy = hierarchy

    async def hierarchy(self, request: web.Request, origin: str) -> web.Response:
        room_id = request.match_info["roomId"]
        if not room_id.startswith("!"):
            raise invalid_param(f"roomId: {room_id!r} is not a room ID")
        suggested_only = query_bool(request, "suggested_only", False)
        return json_response(await self._hierarchy.federation_hierarchy(origin, room_id, suggested_only))

    def register_routes(self, app: web.Application) -> None:
        app.router.add_get(f"{FEDERATION_V1}/hierarchy/{{roomId}}", self._auth.route(self.hierarchy))
