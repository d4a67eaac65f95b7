"""Admin API: federation destinations (`/_synapse/admin/v1/federation/destinations...`)."""

from __future__ import annotations

from aiohttp import web

from homeserver.admin.federation import ORDER_BY, AdminFederationService
from homeserver.http.admin_common import AdminAuthenticator, add_admin_route, choice, direction, paging
from homeserver.http.request import json_response


class AdminFederationHandlers:
    def __init__(self, federation: AdminFederationService, admin: AdminAuthenticator):
        self._federation = federation
        self._admin = admin

    async def list_destinations(self, request: web.Request) -> web.Response:
        await self._admin(request)
        offset, limit = paging(request)
        return json_response(await self._federation.list_destinations(
            offset=offset, limit=limit, order_by=choice(request, "order_by", ORDER_BY, "destination"),
            backwards=direction(request), search=request.query.get("destination")))

    async def get_destination(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._federation.get_destination(request.match_info["destination"]))

    async def destination_rooms(self, request: web.Request) -> web.Response:
        await self._admin(request)
        offset, limit = paging(request)
        return json_response(await self._federation.destination_rooms(
            request.match_info["destination"], offset=offset, limit=limit, backwards=direction(request)))

    async def reset_connection(self, request: web.Request) -> web.Response:
        await self._admin(request)
        await self._federation.reset_connection(request.match_info["destination"])
        return json_response({})

    def register_routes(self, app: web.Application) -> None:
        base = "/v1/federation/destinations"
        add_admin_route(app, "GET", base, self.list_destinations)
        add_admin_route(app, "GET", base + "/{destination}", self.get_destination)
        add_admin_route(app, "GET", base + "/{destination}/rooms", self.destination_rooms)
        add_admin_route(app, "POST", base + "/{destination}/reset_connection", self.reset_connection)
