"""Client API: room summaries (MSC3266, v1 and Synapse's unstable paths) and mutual rooms (MSC2666)."""

from __future__ import annotations

from aiohttp import web

from homeserver.directory.aliases import AliasService
from homeserver.directory.hierarchy import SpaceHierarchyService
from homeserver.errors import invalid_param, missing_param
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import access_token, json_response
from homeserver.rooms.reading import RoomReader


class RoomSummaryHandlers:
    def __init__(self, hierarchy: SpaceHierarchyService, aliases: AliasService, reader: RoomReader,
                 authenticate: RequestAuthenticator):
        self._hierarchy = hierarchy
        self._aliases = aliases
        self._reader = reader
        self._authenticate = authenticate

    async def room_summary(self, request: web.Request) -> web.Response:
        # The token is optional: without one, only rooms anyone may preview are summarised.
        user_id = None
        if access_token(request) is not None:
            user_id = (await self._authenticate(request, allow_guest=True)).user_id
        target = request.match_info["roomIdOrAlias"]
        if target.startswith("#"):
            room_id = (await self._aliases.resolve(target))["room_id"]
        elif target.startswith("!"):
            room_id = target
        else:
            raise invalid_param(f"roomIdOrAlias: {target!r} is neither a room ID nor an alias")
        return json_response(await self._hierarchy.summary(user_id, room_id))

    async def mutual_rooms(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        user_ids = request.query.getall("user_id", [])
        if not user_ids:
            raise missing_param("user_id: required")
        if len(user_ids) > 1:
            raise invalid_param("user_id: give exactly one")
        from_tokens = request.query.getall("from", [])
        if len(from_tokens) > 1:
            raise invalid_param("from: give at most one")
        return json_response(await self._reader.mutual_rooms(requester, user_ids[0],
                                                             from_tokens[0] if from_tokens else None))

    def register_routes(self, app: web.Application) -> None:
        for path in ("/_matrix/client/v1/room_summary/{roomIdOrAlias}",
                     "/_matrix/client/unstable/im.nheko.summary/summary/{roomIdOrAlias}",
                     "/_matrix/client/unstable/im.nheko.summary/rooms/{roomIdOrAlias}/summary"):
            app.router.add_get(path, self.room_summary)
        for path in ("/_matrix/client/v1/mutual_rooms", "/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms"):
            app.router.add_get(path, self.mutual_rooms)
