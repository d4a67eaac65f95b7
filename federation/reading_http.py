"""Routes of the read-only room endpoints of the federation API (federation/reading.py does the work):
/event, /state, /state_ids, /event_auth, /backfill, /get_missing_events, /timestamp_to_event.
Every one is behind X-Matrix authentication; parameters are checked here, naming the field."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from federation.auth import FederationAuthenticator, federation_body
from federation.reading import DEFAULT_MISSING_EVENTS, FederationReader
from homeserver.errors import MatrixError, bad_json, invalid_param, missing_param
from homeserver.http.request import json_response, query_int

FEDERATION_V1 = "/_matrix/federation/v1"


def _missing(name: str) -> MatrixError:
    return missing_param(f"{name}: required")


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["roomId"]
    if not room_id.startswith("!"):
        raise invalid_param(f"roomId: {room_id!r} is not a room ID")
    return room_id


def _event_id_param(request: web.Request) -> str:
    event_id = request.query.get("event_id")
    if event_id is None:
        raise _missing("event_id")
    if not event_id.startswith("$"):
        raise invalid_param(f"event_id: {event_id!r} is not an event ID")
    return event_id


def _event_id_list(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        raise _missing(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_json(f"{name}: must be a list of event IDs")
    return value


def _int_field(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad_json(f"{name}: must be a non-negative integer")
    return value


class FederationReadingHandlers:
    def __init__(self, authenticator: FederationAuthenticator, reader: FederationReader):
        self._auth = authenticator
        self._reader = reader

    async def get_event(self, request: web.Request, origin: str) -> web.Response:
        return json_response(await self._reader.get_event(origin, request.match_info["eventId"]))

    async def get_state(self, request: web.Request, origin: str) -> web.Response:
        return json_response(await self._reader.state(origin, _room_id(request), _event_id_param(request)))

    async def get_state_ids(self, request: web.Request, origin: str) -> web.Response:
        return json_response(await self._reader.state_ids(origin, _room_id(request), _event_id_param(request)))

    async def get_event_auth(self, request: web.Request, origin: str) -> web.Response:
        return json_response(await self._reader.event_auth(origin, _room_id(request), request.match_info["eventId"]))

    async def backfill(self, request: web.Request, origin: str) -> web.Response:
        room_id = _room_id(request)
        from_ids = request.query.getall("v", [])
        if not from_ids:
            raise _missing("v")
        limit = query_int(request, "limit", minimum=0)
        if limit is None:
            raise _missing("limit")
        return json_response(await self._reader.backfill(origin, room_id, from_ids, limit))

    async def get_missing_events(self, request: web.Request, origin: str) -> web.Response:
        room_id = _room_id(request)
        body = federation_body(request)
        if not isinstance(body, dict):
            raise bad_json("Content must be a JSON object")
        earliest = _event_id_list(body, "earliest_events")
        latest = _event_id_list(body, "latest_events")
        limit = _int_field(body, "limit", DEFAULT_MISSING_EVENTS)
        min_depth = _int_field(body, "min_depth", 0)
        return json_response(await self._reader.missing_events(origin, room_id, earliest, latest, limit, min_depth))

    async def timestamp_to_event(self, request: web.Request, origin: str) -> web.Response:
        room_id = _room_id(request)
        ts = query_int(request, "ts", minimum=0)
        if ts is None:
            raise _missing("ts")
        direction = request.query.get("dir")
        if direction is None:
            raise _missing("dir")
        if direction not in ("f", "b"):
            raise invalid_param("dir: must be 'f' or 'b'")
        return json_response(await self._reader.timestamp_to_event(origin, room_id, ts, direction == "f"))

    def register_routes(self, app: web.Application) -> None:
        route = self._auth.route
        app.router.add_get(f"{FEDERATION_V1}/event/{{eventId}}", route(self.get_event))
        app.router.add_get(f"{FEDERATION_V1}/state/{{roomId}}", route(self.get_state))
        app.router.add_get(f"{FEDERATION_V1}/state_ids/{{roomId}}", route(self.get_state_ids))
        app.router.add_get(f"{FEDERATION_V1}/event_auth/{{roomId}}/{{eventId}}", route(self.get_event_auth))
        app.router.add_get(f"{FEDERATION_V1}/backfill/{{roomId}}", route(self.backfill))
        app.router.add_post(f"{FEDERATION_V1}/get_missing_events/{{roomId}}", route(self.get_missing_events))
        app.router.add_get(f"{FEDERATION_V1}/timestamp_to_event/{{roomId}}", route(self.timestamp_to_event))
