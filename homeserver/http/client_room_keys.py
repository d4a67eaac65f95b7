"""Client API: server-side key backup, /room_keys/version and /room_keys/keys."""

from __future__ import annotations

from aiohttp import web

from homeserver.e2ee.key_backup import KeyBackupService, parse_room_key, parse_rooms, parse_sessions
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response
from homeserver.http.routing import add_client_route

PREFIXES = ("/_matrix/client/v3", "/_matrix/client/r0", "/_matrix/client/unstable")
ROOM = "/room_keys/keys/{roomId}"
# Megolm session IDs are base64 and may contain `/`.
SESSION = "/room_keys/keys/{roomId}/{sessionId:.+}"


class RoomKeysHandlers:
    def __init__(self, backup: KeyBackupService, authenticate: RequestAuthenticator):
        self._backup = backup
        self._authenticate = authenticate

    # --- versions ----------------------------------------------------------------------------
    async def create_version(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response(await self._backup.create_version(requester.user_id, await json_object(request)))

    async def get_version(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response(await self._backup.get_version(requester.user_id, request.match_info.get("version")))

    async def update_version(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        await self._backup.update_version(requester.user_id, request.match_info["version"],
                                          await json_object(request))
        return json_response({})

    async def delete_version(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        await self._backup.delete_version(requester.user_id, request.match_info["version"])
        return json_response({})

    # --- keys ----------------------------------------------------------------------------------
    async def put_keys(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        room_id, session_id = request.match_info.get("roomId"), request.match_info.get("sessionId")
        if session_id is not None and room_id is not None:
            keys = [parse_room_key(body, room_id, session_id, "body")]
        elif room_id is not None:
            keys = parse_sessions(body, room_id, "body")
        else:
            keys = parse_rooms(body)
        return json_response(await self._backup.put_keys(requester.user_id, request.query.get("version"), keys))

    async def get_keys(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response(await self._backup.get_keys(
            requester.user_id, request.query.get("version"), request.match_info.get("roomId"),
            request.match_info.get("sessionId")))

    async def delete_keys(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response(await self._backup.delete_keys(
            requester.user_id, request.query.get("version"), request.match_info.get("roomId"),
            request.match_info.get("sessionId")))

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "POST", "/room_keys/version", self.create_version, PREFIXES)
        add_client_route(app, "GET", "/room_keys/version", self.get_version, PREFIXES)
        add_client_route(app, "GET", "/room_keys/version/{version}", self.get_version, PREFIXES)
        add_client_route(app, "PUT", "/room_keys/version/{version}", self.update_version, PREFIXES)
        add_client_route(app, "DELETE", "/room_keys/version/{version}", self.delete_version, PREFIXES)
        for path in ("/room_keys/keys", ROOM, SESSION):
            add_client_route(app, "PUT", path, self.put_keys, PREFIXES)
            add_client_route(app, "GET", path, self.get_keys, PREFIXES)
            add_client_route(app, "DELETE", path, self.delete_keys, PREFIXES)
