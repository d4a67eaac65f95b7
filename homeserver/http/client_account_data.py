"""Client API: account data (global and per room) and room tags."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.account_data import AccountDataService
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response
from homeserver.http.routing import add_client_route


class AccountDataHandlers:
    def __init__(self, account_data: AccountDataService, authenticate: RequestAuthenticator):
        self._account_data = account_data
        self._authenticate = authenticate

    async def put_global(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        m = request.match_info
        await self._account_data.set_global(requester.user_id, m["user_id"], m["type"], body)
        return json_response({})

    async def get_global(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        m = request.match_info
        return json_response(await self._account_data.get_global(requester.user_id, m["user_id"], m["type"]))

    async def put_room(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        m = request.match_info
        await self._account_data.set_room(requester.user_id, m["user_id"], m["room_id"], m["type"], body)
        return json_response({})

    async def get_room(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        m = request.match_info
        return json_response(
            await self._account_data.get_room(requester.user_id, m["user_id"], m["room_id"], m["type"])
        )

    async def get_tags(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        m = request.match_info
        return json_response(
            {"tags": await self._account_data.get_tags(requester.user_id, m["user_id"], m["room_id"])}
        )

    async def put_tag(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        m = request.match_info
        await self._account_data.add_tag(requester.user_id, m["user_id"], m["room_id"], m["tag"], body)
        return json_response({})

    async def delete_tag(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        m = request.match_info
        await self._account_data.remove_tag(requester.user_id, m["user_id"], m["room_id"], m["tag"])
        return json_response({})

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "GET", "/user/{user_id}/account_data/{type}", self.get_global)
        add_client_route(app, "PUT", "/user/{user_id}/account_data/{type}", self.put_global)
        add_client_route(app, "GET", "/user/{user_id}/rooms/{room_id}/account_data/{type}", self.get_room)
        add_client_route(app, "PUT", "/user/{user_id}/rooms/{room_id}/account_data/{type}", self.put_room)
        add_client_route(app, "GET", "/user/{user_id}/rooms/{room_id}/tags", self.get_tags)
        add_client_route(app, "PUT", "/user/{user_id}/rooms/{room_id}/tags/{tag}", self.put_tag)
        add_client_route(app, "DELETE", "/user/{user_id}/rooms/{room_id}/tags/{tag}", self.delete_tag)
