"""Client API: simplified sliding sync, POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response, query_int
from homeserver.http.routing import add_client_route
from homeserver.sync.sliding import SlidingSyncService
from homeserver.sync.sliding_request import parse_body

PREFIXES = ("/_matrix/client/unstable/org.matrix.simplified_msc3575",)
# Long polls are capped so that proxies' idle timeouts never cut a held request.
MAX_TIMEOUT_MS = 5 * 60 * 1000


class SlidingSyncHandlers:
    def __init__(self, sliding_sync: SlidingSyncService, authenticate: RequestAuthenticator):
        self._sliding_sync = sliding_sync
        self._authenticate = authenticate

    async def sync(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = parse_body(await json_object(request))
        pos = request.query.get("pos") or None
        timeout_ms = query_int(request, "timeout", 0, minimum=0, maximum=MAX_TIMEOUT_MS) or 0
        return json_response(await self._sliding_sync.sync(requester, body, pos, timeout_ms))

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "POST", "/sync", self.sync, prefixes=PREFIXES)
