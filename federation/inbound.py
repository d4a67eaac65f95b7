"""Inbound `PUT /_matrix/federation/v1/send/{txnId}` and the rooms' server ACLs.

A transaction's PDUs are taken per room in the order they came (rooms side by side), each through
`EventIngestor.receive_pdu`; the answer maps every PDU's event ID to `{}` or `{"error": ...}`. The
answer is stored under (origin, txnId), so a retried transaction gets the same answer and its PDUs
are not taken twice. EDUs are taken after the PDUs, in order, each by the handler of its
`edu_type` (`edu_handlers`); EDUs of other types are ignored, as the spec allows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from federation.auth import FederationAuthenticator, federation_body
from federation.ingest import EventIngestor
from federation.server_acl import ServerAcls
from homeserver.clock import Clock
from homeserver.errors import bad_json, forbidden
from homeserver.events.hashing import EventIdError, compute_event_id
from homeserver.events.room_versions import RoomVersion, get_room_version
from homeserver.http.request import json_response
from storage.stores.federation_inbound import ReceivedTransactionStore

logger = logging.getLogger(__name__)

FEDERATION_V1 = "/_matrix/federation/v1"
# The spec's limits on one transaction.
MAX_PDUS = 50
MAX_EDUS = 100
# Answers to transactions are kept this long for retries (as Synapse), pruned every PRUNE_EVERY.
KEEP_ANSWERS_MS = 24 * 3600 * 1000
PRUNE_EVERY = 500

# (origin, content) -> None: acts on one EDU; a malformed one is the handler's to log and drop.
EduHandler = Callable[[str, Any], Awaitable[None]]


class InboundTransactions:
    def __init__(self, ingestor: EventIngestor, received: ReceivedTransactionStore, acls: ServerAcls, clock: Clock,
                 edu_handlers: Mapping[str, EduHandler] | None = None):
        self._ingestor = ingestor
        self._edu_handlers = dict(edu_handlers or {})
        self._received = received
        self._acls = acls
        self._clock = clock
        self._in_flight: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self._answered = 0

    async def send_transaction(self, request: web.Request, origin: str) -> web.Response:
        txn_id = request.match_info["txnId"]
        body = federation_body(request)
        if not isinstance(body, dict):
            raise bad_json("Content must be a JSON object")
        pdus = body.get("pdus", [])
        edus = body.get("edus", [])
        if not isinstance(pdus, list):
            raise bad_json("pdus: must be an array")
        if not isinstance(edus, list):
            raise bad_json("edus: must be an array")
        if len(pdus) > MAX_PDUS:
            raise bad_json(f"pdus: at most {MAX_PDUS} per transaction")
        if len(edus) > MAX_EDUS:
            raise bad_json(f"edus: at most {MAX_EDUS} per transaction")
        body_origin = body.get("origin")
        if body_origin is not None and body_origin != origin:
            raise forbidden(f"origin: {body_origin!r} is not the server that signed the request ({origin})")
        key = (origin, txn_id)
        stored = await self._received.get_response(origin, txn_id)
        if stored is not None:
            return json_response(stored)
        in_flight = self._in_flight.get(key)
        if in_flight is not None:
            return json_response(await asyncio.shield(in_flight))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            response = await self._process(origin, pdus)
            await self._take_edus(origin, edus)
            now = self._clock.time_ms()
            await self._received.store_response(origin, txn_id, response, now)
            self._answered += 1
            if self._answered % PRUNE_EVERY == 0:
                await self._received.prune(now - KEEP_ANSWERS_MS)
        except BaseException as error:
            future.set_exception(error)
            future.exception()
            raise
        finally:
            self._in_flight.pop(key, None)
        future.set_result(response)
        return json_response(response)

    async def _process(self, origin: str, pdus: list[Any]) -> dict[str, Any]:
        results: dict[str, dict[str, Any]] = {}
        by_room: dict[str, list[tuple[str, Any]]] = {}
        for pdu in pdus:
            room_id = pdu.get("room_id") if isinstance(pdu, dict) else None
            if not isinstance(room_id, str):
                logger.info("a PDU from %s names no room; ignored", origin)
                continue
            version = await self._ingestor.room_version_of(room_id)
            event_id = _event_id_of(pdu, version)
            if event_id is None:
                logger.info("a PDU from %s for %s has no computable event ID; ignored", origin, room_id)
                continue
            by_room.setdefault(room_id, []).append((event_id, pdu))

        async def take_room(room_id: str, items: list[tuple[str, Any]]) -> None:
            allowed = await self._acls.allows(room_id, origin)
            for event_id, pdu in items:
                if not allowed:
                    results[event_id] = {"error": f"{origin} is denied by the room's server ACL"}
                    continue
                try:
                    error = await self._ingestor.receive_pdu(origin, pdu)
                except Exception:
                    logger.exception("taking PDU %s from %s failed", event_id, origin)
                    error = "internal error while processing the event"
                results[event_id] = {} if error is None else {"error": error}

        await asyncio.gather(*(take_room(room_id, items) for room_id, items in by_room.items()))
        return {"pdus": results}

    async def _take_edus(self, origin: str, edus: list[Any]) -> None:
        for edu in edus:
            edu_type = edu.get("edu_type") if isinstance(edu, dict) else None
            handler = self._edu_handlers.get(edu_type) if isinstance(edu_type, str) else None
            if handler is None:
                continue
            try:
                await handler(origin, edu.get("content"))
            except Exception:
                logger.exception("taking an %s EDU from %s failed", edu_type, origin)

    def register_routes(self, app: web.Application, authenticator: FederationAuthenticator) -> None:
        app.router.add_put(f"{FEDERATION_V1}/send/{{txnId}}", authenticator.route(self.send_transaction))


def _event_id_of(pdu: Mapping[str, Any], version: RoomVersion | None) -> str | None:
    if version is None:
        event_id = pdu.get("event_id")
        if isinstance(event_id, str):
            return event_id
        # A room we do not know, so of unknown version: the ID as room version 11 (the spec's
        # default) derives it, which is the event's real ID in most rooms, so the origin can
        # match the error to its event.
        version = get_room_version("11")
    try:
        return compute_event_id(pdu, version)
    except (EventIdError, TypeError, ValueError, KeyError, AttributeError):
        return None
