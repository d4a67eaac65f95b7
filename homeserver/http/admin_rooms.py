"""Admin API: rooms (list, details, members, state, history, block, delete, purge, join)."""

from __future__ import annotations

from aiohttp import web

from homeserver.admin.rooms import ROOM_ORDERS, AdminRoomService
from homeserver.errors import missing_param
from homeserver.http.admin_common import (
    AdminAuthenticator,
    add_admin_route,
    choice,
    direction,
    optional_query_bool,
    paging,
)
from homeserver.http.request import json_object, json_response, query_int
from homeserver.rooms.room_event_filter import parse_filter_param


class AdminRoomHandlers:
    def __init__(self, rooms: AdminRoomService, admin: AdminAuthenticator):
        self._rooms = rooms
        self._admin = admin

    async def list_rooms(self, request: web.Request) -> web.Response:
        await self._admin(request)
        offset, limit = paging(request)
        return json_response(await self._rooms.list_rooms(
            search_term=request.query.get("search_term"), order_by=choice(request, "order_by", ROOM_ORDERS, "name"),
            backwards=direction(request), offset=offset, limit=limit,
            public_rooms=optional_query_bool(request, "public_rooms"),
            empty_rooms=optional_query_bool(request, "empty_rooms")))

    async def get_room(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._rooms.get_room(request.match_info["roomId"]))

    async def members(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._rooms.members(request.match_info["roomId"]))

    async def state(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        return json_response(await self._rooms.state(requester, request.match_info["roomId"],
                                                     request.query.get("type")))

    async def messages(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        limit = query_int(request, "limit", 10, minimum=0, maximum=1000)
        return json_response(await self._rooms.messages(
            requester, request.match_info["roomId"], from_token=request.query.get("from"),
            to_token=request.query.get("to"), backwards=direction(request), limit=limit or 0,
            event_filter=parse_filter_param(request.query.get("filter"))))

    async def context(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        limit = query_int(request, "limit", 10, minimum=0, maximum=1000)
        return json_response(await self._rooms.context(requester, request.match_info["roomId"],
                                                       request.match_info["eventId"], limit or 0,
                                                       parse_filter_param(request.query.get("filter"))))

    async def forward_extremities(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._rooms.forward_extremities(request.match_info["roomId"]))

    async def delete_forward_extremities(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._rooms.delete_forward_extremities(request.match_info["roomId"]))

    async def fetch_event(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        return json_response(await self._rooms.fetch_event(requester, request.match_info["eventId"]))

    async def timestamp_to_event(self, request: web.Request) -> web.Response:
        await self._admin(request)
        ts = query_int(request, "ts", minimum=0)
        if ts is None:
            raise missing_param("Missing integer query parameter 'ts'")
        return json_response(await self._rooms.timestamp_to_event(request.match_info["roomId"], ts,
                                                                  forwards=not direction(request)))

    async def get_block(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._rooms.get_block(request.match_info["roomId"]))

    async def set_block(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        return json_response(await self._rooms.set_block(requester, request.match_info["roomId"],
                                                         await json_object(request)))

    async def join(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        return json_response(await self._rooms.join_user(requester, request.match_info["roomId"],
                                                         await json_object(request)))

    async def make_room_admin(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        body = await json_object(request, allow_empty=True)
        return json_response(await self._rooms.make_room_admin(requester, request.match_info["roomId"], body))

    async def delete_room(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        body = await json_object(request, allow_empty=True)
        return json_response(await self._rooms.start_delete_room(requester, request.match_info["roomId"], body))

    async def delete_room_now(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        body = await json_object(request, allow_empty=True)
        return json_response(await self._rooms.delete_room_now(requester, request.match_info["roomId"], body))

    async def delete_status_for_room(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._rooms.delete_status_for_room(request.match_info["roomId"]))

    async def delete_status(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._rooms.delete_status(request.match_info["deleteId"]))

    async def purge_history(self, request: web.Request) -> web.Response:
        await self._admin(request)
        body = await json_object(request, allow_empty=True)
        return json_response(await self._rooms.start_purge_history(
            request.match_info["roomId"], request.match_info.get("eventId"), body))

    async def purge_status(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._rooms.purge_status(request.match_info["purgeId"]))

    def register_routes(self, app: web.Application) -> None:
        add_admin_route(app, "GET", "/v1/rooms", self.list_rooms)
        add_admin_route(app, "GET", "/v1/rooms/{roomId}", self.get_room)
        add_admin_route(app, "GET", "/v1/rooms/{roomId}/members", self.members)
        add_admin_route(app, "GET", "/v1/rooms/{roomId}/state", self.state)
        add_admin_route(app, "GET", "/v1/rooms/{roomId}/messages", self.messages)
        add_admin_route(app, "GET", "/v1/rooms/{roomId}/context/{eventId}", self.context)
        add_admin_route(app, "GET", "/v1/rooms/{roomId}/forward_extremities", self.forward_extremities)
        add_admin_route(app, "DELETE", "/v1/rooms/{roomId}/forward_extremities", self.delete_forward_extremities)
        add_admin_route(app, "GET", "/v1/rooms/{roomId}/timestamp_to_event", self.timestamp_to_event)
        add_admin_route(app, "GET", "/v1/fetch_event/{eventId}", self.fetch_event)
        add_admin_route(app, "GET", "/v1/rooms/{roomId}/block", self.get_block)
        add_admin_route(app, "PUT", "/v1/rooms/{roomId}/block", self.set_block)
        add_admin_route(app, "POST", "/v1/rooms/{roomId}/make_room_admin", self.make_room_admin)
        add_admin_route(app, "POST", "/v1/join/{roomId}", self.join)
        add_admin_route(app, "DELETE", "/v1/rooms/{roomId}", self.delete_room_now)
        add_admin_route(app, "DELETE", "/v2/rooms/{roomId}", self.delete_room)
        add_admin_route(app, "GET", "/v2/rooms/{roomId}/delete_status", self.delete_status_for_room)
        add_admin_route(app, "GET", "/v2/rooms/delete_status/{deleteId}", self.delete_status)
        add_admin_route(app, "POST", "/v1/purge_history/{roomId}", self.purge_history)
        add_admin_route(app, "POST", "/v1/purge_history/{roomId}/{eventId}", self.purge_history)
        add_admin_route(app, "GET", "/v1/purge_history_status/{purgeId}", self.purge_status)
