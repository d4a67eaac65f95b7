"""Client API: reporting rooms, events and users."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response
from homeserver.http.routing import add_client_route
from homeserver.ratelimit import RateLimiter
from homeserver.rooms.reports import ReportService


class ReportHandlers:
    def __init__(self, reports: ReportService, authenticate: RequestAuthenticator, ratelimiter: RateLimiter):
        self._reports = reports
        self._authenticate = authenticate
        self._ratelimiter = ratelimiter

    async def report_event(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        self._ratelimiter.check("message", requester.user_id)
        await self._reports.report_event(requester, request.match_info["roomId"], request.match_info["eventId"], body)
        return json_response({})

    async def report_room(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        self._ratelimiter.check("message", requester.user_id)
        await self._reports.report_room(requester, request.match_info["roomId"], body)
        return json_response({})

    async def report_user(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        self._ratelimiter.check("message", requester.user_id)
        await self._reports.report_user(requester, request.match_info["userId"], body)
        return json_response({})

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "POST", "/rooms/{roomId}/report/{eventId:.+}", self.report_event)
        add_client_route(app, "POST", "/rooms/{roomId}/report", self.report_room)
        add_client_route(app, "POST", "/users/{userId}/report", self.report_user)
