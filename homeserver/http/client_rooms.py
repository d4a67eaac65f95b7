"""Client API: creating rooms, membership, sending events and state, reading events and state."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from urllib.parse import unquote

from aiohttp import web

from homeserver.errors import MatrixError, bad_json, invalid_param, missing_param
from homeserver.http.request import json_object, json_response
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.routing import add_client_route
from homeserver.identifiers import is_valid_room_id
from homeserver.ratelimit import RateLimiter
from homeserver.requester import Requester
from homeserver.rooms.creation import RoomCreator
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.reading import RoomReader
from homeserver.rooms.redaction import RedactionService
from homeserver.rooms.sender import RoomEventSender
from homeserver.rooms.third_party_invites import ThirdPartyInviter
from homeserver.rooms.transactions import scoped_txn_id
from homeserver.rooms.upgrade import RoomUpgrader

MAX_TXN_ID_LENGTH = 255


# Event IDs of room versions 3 contain `/`, which arrives decoded, hence `{eventId:.+}` in routes.


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["roomId"]
    if not is_valid_room_id(room_id):
        raise invalid_param(f"roomId: {room_id!r} is not a room ID")
    return room_id


def _txn_id(request: web.Request) -> str:
    txn_id = request.match_info["txnId"]
    if not txn_id or len(txn_id) > MAX_TXN_ID_LENGTH:
        raise invalid_param("txnId: must be 1-255 characters")
    return txn_id


def _massaged_ts(request: web.Request, requester: Requester) -> int | None:
    """`?ts=`: the origin_server_ts an application service asks for; ignored for everyone else."""
    text = request.query.get("ts")
    if text is None or requester.app_service_id is None:
        return None
    try:
        ts = int(text)
    except ValueError:
        raise invalid_param("ts: must be an integer (milliseconds since the epoch)") from None
    if ts < 0:
        raise invalid_param("ts: must not be negative")
    return ts


def _dropped_for_shadow_ban(user_id: str, event_type: str, state_key: str, content: dict) -> bool:
    """Which state sends of a shadow-banned user are dropped: all but leaving, kicking and banning.

    As in Synapse, invites and the user's own member event with a new display name or avatar are
    answered as done and go nowhere."""
    if event_type != "m.room.member":
        return True
    membership = content["membership"]
    return membership == "invite" or (membership == "join" and state_key == user_id)


class RoomHandlers:
    def __init__(self, creator: RoomCreator, membership: MembershipService, sender: RoomEventSender,
                 reader: RoomReader, redactions: RedactionService, upgrader: RoomUpgrader,
                 authenticate: RequestAuthenticator, ratelimiter: RateLimiter, *,
                 third_party: ThirdPartyInviter | None = None,
                 is_shadow_banned: Callable[[str], bool] | None = None):
        self._third_party = third_party
        self._creator = creator
        self._membership = membership
        self._sender = sender
        self._reader = reader
        self._redactions = redactions
        self._upgrader = upgrader
        self._authenticate = authenticate
        self._ratelimiter = ratelimiter
        # Sends and invites of users this names are answered as done and dropped.
        self._is_shadow_banned = is_shadow_banned
        self._fake_id_key = secrets.token_bytes(32)

    def _shadow_banned(self, requester: Requester) -> bool:
        return self._is_shadow_banned is not None and self._is_shadow_banned(requester.user_id)

    def _fake_event_id(self, txn: tuple[str, str, str] | None) -> str:
        """An event ID like a real one; a retried transaction gets the same one, as a real send would."""
        if txn is None:
            return "$" + secrets.token_urlsafe(32)
        digest = hmac.new(self._fake_id_key, "\0".join(txn).encode(), hashlib.sha256).digest()
        return "$" + base64.urlsafe_b64encode(digest).decode().rstrip("=")

    # --- rooms and membership --------------------------------------------------------
    async def create_room(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        self._ratelimiter.check("message", requester.user_id)
        if self._shadow_banned(requester):
            # As Synapse: the room is made, the invites silently left out.
            body = {k: v for k, v in body.items() if k not in ("invite", "invite_3pid")}
        return json_response(await self._creator.create_room(requester.user_id, body))

    async def join(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        body = await json_object(request, allow_empty=True)
        target = unquote(request.match_info["roomIdOrAlias"])
        event = await self._membership.join(requester.user_id, target, body.get("reason"),
                                            is_guest=requester.is_guest, via=_via(request))
        return json_response({"room_id": event.room_id})

    async def join_by_id(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        body = await json_object(request, allow_empty=True)
        event = await self._membership.join(requester.user_id, _room_id(request), body.get("reason"),
                                            is_guest=requester.is_guest)
        return json_response({"room_id": event.room_id})

    async def knock(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        target = unquote(request.match_info["roomIdOrAlias"])
        event = await self._membership.knock(requester.user_id, target, body.get("reason"), via=_via(request))
        return json_response({"room_id": event.room_id})

    async def invite(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request, allow_empty=True)
        if "user_id" not in body:
            if "id_server" in body or "medium" in body or "address" in body:
                if self._third_party is None:
                    raise MatrixError(400, "M_THREEPID_DENIED", "Third-party invites are not supported here")
                self._ratelimiter.check("message", requester.user_id)
                if not self._shadow_banned(requester):
                    await self._third_party.invite(requester.user_id, _room_id(request), body)
                return json_response({})
            raise missing_param("user_id: required")
        if self._shadow_banned(requester):
            return json_response({})
        await self._membership.invite(requester.user_id, _room_id(request), body["user_id"], body.get("reason"))
        return json_response({})

    async def leave(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        body = await json_object(request, allow_empty=True)
        await self._membership.leave(requester.user_id, _room_id(request), body.get("reason"))
        return json_response({})

    async def forget(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        await self._membership.forget(requester.user_id, _room_id(request))
        return json_response({})

    async def _target_action(self, request: web.Request, action) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request, allow_empty=True)
        if "user_id" not in body:
            raise missing_param("user_id: required")
        await action(requester.user_id, _room_id(request), body["user_id"], body.get("reason"))
        return json_response({})

    async def kick(self, request: web.Request) -> web.Response:
        return await self._target_action(request, self._membership.kick)

    async def ban(self, request: web.Request) -> web.Response:
        return await self._target_action(request, self._membership.ban)

    async def unban(self, request: web.Request) -> web.Response:
        return await self._target_action(request, self._membership.unban)

    async def upgrade(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        if self._shadow_banned(requester):
            # As Synapse: the answer names a replacement room that does not exist.
            server_name = requester.user_id.split(":", 1)[1]
            return json_response({"replacement_room": f"!{secrets.token_urlsafe(18)}:{server_name}"})
        return json_response(await self._upgrader.upgrade(requester.user_id, _room_id(request), body))

    async def joined_rooms(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        return json_response({"joined_rooms": await self._reader.joined_rooms(requester)})

    # --- sending -----------------------------------------------------------------------
    async def send(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        room_id = _room_id(request)
        # The legacy POST form has no transaction ID, so a retry sends again (as Synapse).
        txn_id = _txn_id(request) if "txnId" in request.match_info else None
        event_type = request.match_info["eventType"]
        content = await json_object(request)
        txn = None if txn_id is None else (requester.user_id, requester.device_id or "",
                                           scoped_txn_id("send", room_id, event_type, txn_id))
        # A retry of a send that went through is answered from the transaction, as Synapse's
        # response cache does, so it does not count against the limit a second time (the sender
        # remembers the latest transactions; an older retry is checked like a new send).
        if txn is None or not self._sender.answered_recently(txn):
            self._ratelimiter.check("message", requester.user_id)
        if self._shadow_banned(requester):
            return json_response({"event_id": self._fake_event_id(txn)})
        event = await self._sender.send(
            room_id, requester.user_id, event_type, content, txn=txn,
            origin_server_ts=_massaged_ts(request, requester),
        )
        return json_response({"event_id": event.event_id})

    async def put_state(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        room_id = _room_id(request)
        event_type = request.match_info["eventType"]
        state_key = request.match_info.get("stateKey", "")
        content = await json_object(request)
        if event_type == "m.room.member":
            membership = content.get("membership")
            if membership not in ("join", "invite", "leave", "ban", "knock"):
                raise bad_json("membership: must be one of join, invite, leave, ban, knock")
        self._ratelimiter.check("message", requester.user_id)
        if self._shadow_banned(requester) and _dropped_for_shadow_ban(requester.user_id, event_type, state_key,
                                                                      content):
            return json_response({"event_id": self._fake_event_id(None)})
        event = await self._sender.send(room_id, requester.user_id, event_type, content, state_key=state_key,
                                        origin_server_ts=_massaged_ts(request, requester), skip_unchanged_state=True)
        return json_response({"event_id": event.event_id})

    async def redact(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        if self._shadow_banned(requester):
            txn = (requester.user_id, requester.device_id or "", f"redact\0{request.match_info['eventId']}\0"
                   f"{_txn_id(request)}")
            return json_response({"event_id": self._fake_event_id(txn)})
        event = await self._redactions.redact(requester, _room_id(request), request.match_info["eventId"], body,
                                              _txn_id(request))
        return json_response({"event_id": event.event_id})

    # --- reading -----------------------------------------------------------------------
    async def get_event(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        return json_response(await self._reader.get_event(requester, _room_id(request),
                                                          request.match_info["eventId"]))

    async def get_state(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        return json_response(await self._reader.get_state(requester, _room_id(request)))

    async def get_state_event(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        full = request.query.get("format") == "event"
        return json_response(await self._reader.get_state_event(
            requester, _room_id(request), request.match_info["eventType"], request.match_info.get("stateKey", ""),
            full_event=full,
        ))

    async def members(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        chunk = await self._reader.get_members(
            requester, _room_id(request), at=request.query.get("at"),
            membership=request.query.get("membership"), not_membership=request.query.get("not_membership"),
        )
        return json_response({"chunk": chunk})

    async def joined_members(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        return json_response(await self._reader.get_joined_members(requester, _room_id(request)))

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "POST", "/createRoom", self.create_room)
        add_client_route(app, "POST", "/join/{roomIdOrAlias}", self.join)
        add_client_route(app, "POST", "/knock/{roomIdOrAlias}", self.knock)
        add_client_route(app, "POST", "/rooms/{roomId}/join", self.join_by_id)
        add_client_route(app, "POST", "/rooms/{roomId}/invite", self.invite)
        add_client_route(app, "POST", "/rooms/{roomId}/leave", self.leave)
        add_client_route(app, "POST", "/rooms/{roomId}/forget", self.forget)
        add_client_route(app, "POST", "/rooms/{roomId}/kick", self.kick)
        add_client_route(app, "POST", "/rooms/{roomId}/ban", self.ban)
        add_client_route(app, "POST", "/rooms/{roomId}/unban", self.unban)
        add_client_route(app, "GET", "/joined_rooms", self.joined_rooms)
        add_client_route(app, "POST", "/rooms/{roomId}/upgrade", self.upgrade)
        add_client_route(app, "PUT", "/rooms/{roomId}/send/{eventType}/{txnId}", self.send)
        add_client_route(app, "POST", "/rooms/{roomId}/send/{eventType}", self.send)
        add_client_route(app, "PUT", "/rooms/{roomId}/state/{eventType}", self.put_state)
        add_client_route(app, "PUT", "/rooms/{roomId}/state/{eventType}/{stateKey:.*}", self.put_state)
        add_client_route(app, "GET", "/rooms/{roomId}/state", self.get_state)
        add_client_route(app, "GET", "/rooms/{roomId}/state/{eventType}", self.get_state_event)
        add_client_route(app, "GET", "/rooms/{roomId}/state/{eventType}/{stateKey:.*}", self.get_state_event)
        add_client_route(app, "PUT", "/rooms/{roomId}/redact/{eventId:.+}/{txnId}", self.redact)
        add_client_route(app, "GET", "/rooms/{roomId}/event/{eventId:.+}", self.get_event)
        add_client_route(app, "GET", "/rooms/{roomId}/members", self.members)
        add_client_route(app, "GET", "/rooms/{roomId}/joined_members", self.joined_members)


def _via(request: web.Request) -> list[str]:
    """The servers to join or knock through: `via`, and the deprecated `server_name` (as Synapse, both)."""
    servers = [*request.query.getall("via", []), *request.query.getall("server_name", [])]
    return list(dict.fromkeys(servers))
