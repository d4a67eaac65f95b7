"""Client API: the room directory (/directory/list/room/{roomId}, /publicRooms)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.directory.public_rooms import (
    PublicRoomsQuery,
    RoomDirectoryService,
    parse_limit,
    parse_network,
    parse_public_rooms_body,
    parse_since,
)
from homeserver.errors import bad_json
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response, query_bool, query_int
from homeserver.http.routing import add_client_route


class PublicRoomHandlers:
    def __init__(self, directory: RoomDirectoryService, authenticate: RequestAuthenticator):
        self._directory = directory
        self._authenticate = authenticate

    async def get_visibility(self, request: web.Request) -> web.Response:
        return json_response(await self._directory.get_visibility(request.match_info["roomId"]))

    async def set_visibility(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        await self._directory.set_visibility(requester, request.match_info["roomId"], body)
        return json_response({})

    async def get_public_rooms(self, request: web.Request) -> web.Response:
        # The spec lets anyone read the list; a token, when sent, must still be valid.
        if "Authorization" in request.headers or "access_token" in request.query:
            await self._authenticate(request)
        server = request.query.get("server")
        if self._directory.is_other_server(server):
            params: dict[str, Any] = {}
            limit = query_int(request, "limit", minimum=0)
            if limit is not None:
                params["limit"] = limit
            for key in ("since", "third_party_instance_id"):
                if key in request.query:
                    params[key] = request.query[key]
            if query_bool(request, "include_all_networks"):
                params["include_all_networks"] = "true"
            return json_response(await self._directory.remote_public_rooms(server, params=params))
        query = PublicRoomsQuery(limit=parse_limit(query_int(request, "limit", minimum=0)),
                                 offset=parse_since(request.query.get("since")),
                                 **parse_network(request.query.get("third_party_instance_id"),
                                                 query_bool(request, "include_all_networks")))
        return json_response(await self._directory.public_rooms(query, request.query.get("server")))

    async def post_public_rooms(self, request: web.Request) -> web.Response:
        await self._authenticate(request)
        body = await json_object(request)
        server = request.query.get("server")
        if self._directory.is_other_server(server):
            parse_public_rooms_body({**body, "since": None})  # the fields' shapes; `since` is the other server's
            if body.get("since") is not None and not isinstance(body["since"], str):
                raise bad_json("since: must be a string")
            return json_response(await self._directory.remote_public_rooms(server, body=body))
        query = parse_public_rooms_body(body)
        return json_response(await self._directory.public_rooms(query, request.query.get("server")))

    async def set_network_visibility(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request, allow_empty=True)
        await self._directory.set_network_visibility(requester, request.match_info["networkId"],
                                                     request.match_info["roomId"], body)
        return json_response({})

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "PUT", "/directory/list/appservice/{networkId}/{roomId}", self.set_network_visibility)
        add_client_route(app, "GET", "/directory/list/room/{roomId}", self.get_visibility)
        add_client_route(app, "PUT", "/directory/list/room/{roomId}", self.set_visibility)
        add_client_route(app, "GET", "/publicRooms", self.get_public_rooms)
        add_client_route(app, "POST", "/publicRooms", self.post_public_rooms)
