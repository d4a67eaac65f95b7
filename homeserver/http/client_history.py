"""Client API: room history — /messages, /context and /timestamp_to_event."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import invalid_param, missing_param
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_response, query_int
from homeserver.http.routing import add_client_route
from homeserver.identifiers import is_valid_room_id
from homeserver.rooms.room_event_filter import parse_filter_param
from homeserver.rooms.history import DEFAULT_LIMIT, MAX_LIMIT, RoomHistory

CLIENT_V1 = ("/_matrix/client/v1", "/_matrix/client/unstable/org.matrix.msc3030")


def room_id_param(request: web.Request) -> str:
    room_id = request.match_info["roomId"]
    if not is_valid_room_id(room_id):
        raise invalid_param(f"roomId: {room_id!r} is not a room ID")
    return room_id


def direction_param(request: web.Request, default: str | None = None) -> str:
    direction = request.query.get("dir", default)
    if direction is None:
        raise missing_param("dir: required, 'b' or 'f'")
    if direction not in ("b", "f"):
        raise invalid_param("dir: must be 'b' or 'f'")
    return direction


class HistoryHandlers:
    def __init__(self, history: RoomHistory, authenticate: RequestAuthenticator):
        self._history = history
        self._authenticate = authenticate

    async def messages(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        room_id = room_id_param(request)
        # `dir` was required before v1.3 and is still sent by every client; Synapse defaults it to b.
        direction = direction_param(request, "b")
        limit = query_int(request, "limit", DEFAULT_LIMIT, minimum=0, maximum=MAX_LIMIT)
        event_filter = parse_filter_param(request.query.get("filter"))
        body = await self._history.messages(
            requester, room_id, from_token=request.query.get("from") or None,
            to_token=request.query.get("to") or None, direction=direction, limit=limit, event_filter=event_filter,
        )
        return json_response(body)

    async def context(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        room_id = room_id_param(request)
        limit = query_int(request, "limit", DEFAULT_LIMIT, minimum=0, maximum=MAX_LIMIT)
        event_filter = parse_filter_param(request.query.get("filter"))
        body = await self._history.context(requester, room_id, request.match_info["eventId"], limit=limit,
                                           event_filter=event_filter)
        return json_response(body)

    async def timestamp_to_event(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        room_id = room_id_param(request)
        ts = query_int(request, "ts")
        if ts is None:
            raise missing_param("ts: required")
        direction = direction_param(request)
        return json_response(await self._history.timestamp_to_event(requester, room_id, ts, direction))

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "GET", "/rooms/{roomId}/messages", self.messages)
        add_client_route(app, "GET", "/rooms/{roomId}/context/{eventId:.+}", self.context)
        add_client_route(app, "GET", "/rooms/{roomId}/timestamp_to_event", self.timestamp_to_event,
                         prefixes=CLIENT_V1)
