"""Client API: the user directory (POST /user_directory/search)."""

from __future__ import annotations

from aiohttp import web

from homeserver.directory.user_directory import UserDirectoryService
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response
from homeserver.http.routing import add_client_route


class UserDirectoryHandlers:
    def __init__(self, directory: UserDirectoryService, authenticate: RequestAuthenticator):
        self._directory = directory
        self._authenticate = authenticate

    async def search(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response(await self._directory.search(requester, await json_object(request)))

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "POST", "/user_directory/search", self.search)
