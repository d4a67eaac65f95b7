"""Client API: pushers (GET /pushers, POST /pushers/set) and GET /notifications."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response, query_int
from homeserver.http.routing import add_client_route
from homeserver.push.notifications import NotificationService
from homeserver.push.pushers import PusherService


class PusherHandlers:
    def __init__(self, pushers: PusherService, notifications: NotificationService,
                 authenticate: RequestAuthenticator):
        self._pushers = pushers
        self._notifications = notifications
        self._authenticate = authenticate

    async def get_pushers(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response({"pushers": await self._pushers.get_pushers(requester.user_id)})

    async def set_pusher(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        await self._pushers.set_pusher(requester, await json_object(request))
        return json_response({})

    async def get_notifications(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        limit = query_int(request, "limit", minimum=0)
        return json_response(await self._notifications.get_notifications(
            requester, request.query.get("from") or None, limit, request.query.get("only")))

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "GET", "/pushers", self.get_pushers)
        add_client_route(app, "POST", "/pushers/set", self.set_pusher)
        add_client_route(app, "GET", "/notifications", self.get_notifications)
