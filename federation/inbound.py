"""Inbound `PUT /_matrix/federation/v1/send/{txnId}` and the rooms' server ACLs.

A transaction's PDUs are taken per room in the order they came (rooms side by side), each through
`EventIngestor.receive_pdu`; the answer maps every PDU's event ID to `{}` or `{"error": ...}`. The
answer is stored under (origin, txnId), so a retried transaction gets the same answer and its PDUs
are not taken twice. EDUs are accepted and not acted on yet (typing, receipts, device lists...
come with federation part 2).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from federation.auth import FederationAuthenticator, federation_body
from federation.ingest import EventIngestor
from homeserver.clock import Clock
from homeserver.errors import MatrixError
from homeserver.events.hashing import EventIdError, compute_event_id
from homeserver.events.room_versions import RoomVersion, get_room_version
from homeserver.http.request import json_response
from storage.stores.events import EventStore
from storage.stores.federation_inbound import ReceivedTransactionStore

logger = logging.getLogger(__name__)

FEDERATION_V1 = "/_matrix/federation/v1"
# The spec's limits on one transaction.
MAX_PDUS = 50
MAX_EDUS = 100
# Answers to transactions are kept this long for retries (as Synapse), pruned every PRUNE_EVERY.
KEEP_ANSWERS_MS = 24 * 3600 * 1000
PRUNE_EVERY = 500


def _host(server_name: str) -> str:
    if server_name.startswith("["):
        return server_name.split("]", 1)[0] + "]"
    return server_name.rsplit(":", 1)[0] if ":" in server_name else server_name


def _is_ip_literal(host: str) -> bool:
    if host.startswith("[") and host.endswith("]"):
        return True
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        return False


def _glob(pattern: str) -> re.Pattern[str]:
    # Only `*` and `?` are wildcards in server ACLs.
    escaped = re.escape(pattern.lower()).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(escaped + r"\Z")


def acl_allows(content: Mapping[str, Any], server_name: str) -> bool:
    """Whether an `m.room.server_acl` content lets `server_name` take part (spec, "Server Access Control Lists")."""
    host = _host(server_name).lower()
    allow_ip = content.get("allow_ip_literals", True)
    if allow_ip is not False and not isinstance(allow_ip, bool):
        allow_ip = True
    if not allow_ip and _is_ip_literal(host):
        return False
    deny = content.get("deny", [])
    if isinstance(deny, list) and any(isinstance(p, str) and _glob(p).match(host) for p in deny):
        return False
    allow = content.get("allow", [])
    return isinstance(allow, list) and any(isinstance(p, str) and _glob(p).match(host) for p in allow)


class ServerAcls:
    """The server ACL of each room (its current `m.room.server_acl`), for inbound federation."""

    def __init__(self, events: EventStore):
        self._events = events

    async def allows(self, room_id: str, server_name: str) -> bool:
        event_id = await self._events.get_current_state_event_id(room_id, "m.room.server_acl", "")
        if event_id is None:
            return True
        event = await self._events.get_event(event_id)
        if event is None or event.rejected_reason is not None:
            return True
        return acl_allows(event.content, server_name)

    async def check(self, room_id: str, server_name: str) -> None:
        if not await self.allows(room_id, server_name):
            raise MatrixError(403, "M_FORBIDDEN", f"Server {server_name} is denied by the room's server ACL")

    async def check_request(self, origin: str, request: web.Request) -> None:
        """The authenticator's ACL check: requests naming a room are refused to servers its ACL denies."""
        room_id = request.match_info.get("roomId")
        if room_id:
            await self.check(room_id, origin)


class InboundTransactions:
    def __init__(self, ingestor: EventIngestor, received: ReceivedTransactionStore, acls: ServerAcls, clock: Clock):
        self._ingestor = ingestor
        self._received = received
        self._acls = acls
        self._clock = clock
        self._in_flight: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self._answered = 0

    async def send_transaction(self, request: web.Request, origin: str) -> web.Response:
        txn_id = request.match_info["txnId"]
        body = federation_body(request)
        if not isinstance(body, dict):
            raise MatrixError(400, "M_BAD_JSON", "Content must be a JSON object")
        pdus = body.get("pdus", [])
        edus = body.get("edus", [])
        if not isinstance(pdus, list):
            raise MatrixError(400, "M_BAD_JSON", "pdus: must be an array")
        if not isinstance(edus, list):
            raise MatrixError(400, "M_BAD_JSON", "edus: must be an array")
        if len(pdus) > MAX_PDUS:
            raise MatrixError(400, "M_BAD_JSON", f"pdus: at most {MAX_PDUS} per transaction")
        if len(edus) > MAX_EDUS:
            raise MatrixError(400, "M_BAD_JSON", f"edus: at most {MAX_EDUS} per transaction")
        body_origin = body.get("origin")
        if body_origin is not None and body_origin != origin:
            raise MatrixError(403, "M_FORBIDDEN",
                              f"origin: {body_origin!r} is not the server that signed the request ({origin})")
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
