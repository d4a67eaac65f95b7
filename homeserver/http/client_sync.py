"""Client API: GET /sync."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import invalid_param
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_response, query_bool, query_int
from homeserver.http.routing import add_client_route
from homeserver.streams.client_tokens import parse_sync_token
from homeserver.sync.handler import PRESENCE_STATES, SyncRequest, SyncService

# Long polls are capped so that proxies' idle timeouts never cut a held request.
MAX_TIMEOUT_MS = 5 * 60 * 1000


class SyncHandlers:
    def __init__(self, sync: SyncService, authenticate: RequestAuthenticator):
        self._sync = sync
        self._authenticate = authenticate

    async def sync(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        query = request.query
        since_text = query.get("since")
        since = parse_sync_token(since_text, "since") if since_text else None
        set_presence = query.get("set_presence", "online")
        if set_presence not in PRESENCE_STATES:
            raise invalid_param(f"set_presence: must be one of {', '.join(PRESENCE_STATES)}")
        # Unknown parameters (Element's `_cacheBuster`, `use_state_after` for now) are ignored.
        sync_request = SyncRequest(
            requester=requester,
            filter=await self._sync.resolve_filter(requester, query.get("filter")),
            since=since,
            full_state=query_bool(request, "full_state"),
            timeout_ms=query_int(request, "timeout", 0, minimum=0, maximum=MAX_TIMEOUT_MS) or 0,
            set_presence=set_presence,
        )
        return json_response(await self._sync.sync(sync_request))

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "GET", "/sync", self.sync)
