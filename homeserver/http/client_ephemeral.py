"""Client API: typing notifications, read receipts and read markers."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from homeserver.ephemeral.receipts import (
    ReceiptService,
    check_event_id,
    check_receipt_type,
    parse_read_markers,
    parse_thread_id,
)
from homeserver.ephemeral.typing import TypingService, parse_typing_body
from homeserver.errors import invalid_param
from homeserver.http.request import json_object, json_response
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.routing import add_client_route
from homeserver.identifiers import is_valid_room_id


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["roomId"]
    if not is_valid_room_id(room_id):
        raise invalid_param(f"roomId: {room_id!r} is not a room ID")
    return room_id


class EphemeralHandlers:
    def __init__(self, typing: TypingService, receipts: ReceiptService, authenticate: RequestAuthenticator, *,
                 is_shadow_banned: Callable[[str], bool] | None = None):
        self._typing = typing
        self._receipts = receipts
        self._authenticate = authenticate
        # Typing of users this names is answered as done and dropped.
        self._is_shadow_banned = is_shadow_banned

    async def set_typing(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        room_id = _room_id(request)
        typing, timeout_ms = parse_typing_body(await json_object(request))
        if self._is_shadow_banned is not None and self._is_shadow_banned(requester.user_id):
            return json_response({})
        await self._typing.set_typing(requester.user_id, room_id, request.match_info["userId"], typing, timeout_ms)
        return json_response({})

    async def send_receipt(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        room_id = _room_id(request)
        receipt_type = request.match_info["receiptType"]
        check_receipt_type(receipt_type)
        event_id = check_event_id(request.match_info["eventId"], "eventId")
        body = await json_object(request)
        thread_id = parse_thread_id(body, receipt_type)
        await self._receipts.send_receipt(requester.user_id, room_id, receipt_type, event_id, thread_id)
        return json_response({})

    async def set_read_markers(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        room_id = _room_id(request)
        markers = parse_read_markers(await json_object(request))
        await self._receipts.set_read_markers(requester.user_id, room_id, markers)
        return json_response({})

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "PUT", "/rooms/{roomId}/typing/{userId}", self.set_typing)
        add_client_route(app, "POST", "/rooms/{roomId}/receipt/{receiptType}/{eventId:.+}", self.send_receipt)
        add_client_route(app, "POST", "/rooms/{roomId}/read_markers", self.set_read_markers)
