"""Client API: room aliases (/directory/room/{roomAlias}, /rooms/{roomId}/aliases)."""

from __future__ import annotations

from aiohttp import web

from homeserver.directory.aliases import AliasService
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response
from homeserver.http.routing import add_client_route


class DirectoryHandlers:
    def __init__(self, aliases: AliasService, authenticate: RequestAuthenticator):
        self._aliases = aliases
        self._authenticate = authenticate

    async def get_alias(self, request: web.Request) -> web.Response:
        return json_response(await self._aliases.resolve(request.match_info["roomAlias"]))

    async def put_alias(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        await self._aliases.create(requester, request.match_info["roomAlias"], body)
        return json_response({})

    async def delete_alias(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        await self._aliases.delete(requester, request.match_info["roomAlias"])
        return json_response({})

    async def room_aliases(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response(await self._aliases.aliases_of_room(requester, request.match_info["roomId"]))

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "GET", "/directory/room/{roomAlias}", self.get_alias)
        add_client_route(app, "PUT", "/directory/room/{roomAlias}", self.put_alias)
        add_client_route(app, "DELETE", "/directory/room/{roomAlias}", self.delete_alias)
        add_client_route(app, "GET", "/rooms/{roomId}/aliases", self.room_aliases)
        # Advertised as `org.matrix.msc2432` in /versions; older clients still call this path.
        app.router.add_get("/_matrix/client/unstable/org.matrix.msc2432/rooms/{roomId}/aliases", self.room_aliases)
