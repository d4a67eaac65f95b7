"""Client API (v1): /relations and /threads."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import invalid_param
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.client_history import direction_param, room_id_param
from homeserver.http.request import json_response, query_bool, query_int
from homeserver.http.routing import add_client_route
from homeserver.rooms.relations import (
    DEFAULT_RELATIONS_LIMIT,
    DEFAULT_THREADS_LIMIT,
    MAX_LIMIT,
    RelationsService,
)

CLIENT_V1 = ("/_matrix/client/v1",)


class RelationHandlers:
    def __init__(self, relations: RelationsService, authenticate: RequestAuthenticator):
        self._relations = relations
        self._authenticate = authenticate

    async def relations(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        room_id = room_id_param(request)
        limit = query_int(request, "limit", DEFAULT_RELATIONS_LIMIT, minimum=0, maximum=MAX_LIMIT)
        recurse = query_bool(request, "recurse", False)
        body = await self._relations.get_relations(
            requester, room_id, request.match_info["eventId"],
            relation_type=request.match_info.get("relType"), event_type=request.match_info.get("eventType"),
            from_token=request.query.get("from") or None, to_token=request.query.get("to") or None,
            limit=limit, direction=direction_param(request, "b"), recurse=recurse,
        )
        return json_response(body)

    async def threads(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        room_id = room_id_param(request)
        include = request.query.get("include", "all")
        if include not in ("all", "participated"):
            raise invalid_param("include: must be 'all' or 'participated'")
        limit = query_int(request, "limit", DEFAULT_THREADS_LIMIT, minimum=1, maximum=MAX_LIMIT)
        body = await self._relations.get_threads(requester, room_id, include=include,
                                                 from_token=request.query.get("from") or None, limit=limit)
        return json_response(body)

    def register_routes(self, app: web.Application) -> None:
        # aiohttp matches on the still-percent-encoded path, so an event ID with an encoded '/'
        # (room version 3) stays one segment here.
        base = "/rooms/{roomId}/relations/{eventId}"
        for suffix in ("", "/{relType}", "/{relType}/{eventType}"):
            add_client_route(app, "GET", base + suffix, self.relations, prefixes=CLIENT_V1)
        add_client_route(app, "GET", "/rooms/{roomId}/threads", self.threads, prefixes=CLIENT_V1)
