"""Client API: the legacy /events, /events/{eventId}, /initialSync and /rooms/{roomId}/initialSync."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_response, query_bool, query_int
from homeserver.http.routing import CLIENT_PREFIXES_V3, add_client_route
from homeserver.rooms.legacy import DEFAULT_LIMIT, DEFAULT_TIMEOUT_MS, MAX_LIMIT, LegacyRoomViews

# Synapse still serves these under the pre-r0 prefix too, where the oldest clients call them.
LEGACY_PREFIXES = (*CLIENT_PREFIXES_V3, "/_matrix/client/api/v1")


class LegacyHandlers:
    def __init__(self, views: LegacyRoomViews, authenticate: RequestAuthenticator):
        self._views = views
        self._authenticate = authenticate

    async def event_stream(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        result = await self._views.event_stream(
            requester, from_token=request.query.get("from") or None,
            timeout_ms=query_int(request, "timeout", DEFAULT_TIMEOUT_MS, minimum=0) or 0,
            room_id=request.query.get("room_id") or None,
            limit=query_int(request, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT) or DEFAULT_LIMIT)
        return json_response(result)

    async def get_event(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response(await self._views.get_event(requester, request.match_info["eventId"]))

    async def initial_sync(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response(await self._views.initial_sync(
            requester, limit=query_int(request, "limit", DEFAULT_LIMIT, minimum=0, maximum=MAX_LIMIT) or 0,
            archived=query_bool(request, "archived")))

    async def room_initial_sync(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        return json_response(await self._views.room_initial_sync(
            requester, request.match_info["roomId"],
            limit=query_int(request, "limit", DEFAULT_LIMIT, minimum=0, maximum=MAX_LIMIT) or 0))

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "GET", "/events", self.event_stream, prefixes=LEGACY_PREFIXES)
        add_client_route(app, "GET", "/events/{eventId}", self.get_event, prefixes=LEGACY_PREFIXES)
        add_client_route(app, "GET", "/initialSync", self.initial_sync, prefixes=LEGACY_PREFIXES)
        add_client_route(app, "GET", "/rooms/{roomId}/initialSync", self.room_initial_sync, prefixes=LEGACY_PREFIXES)
