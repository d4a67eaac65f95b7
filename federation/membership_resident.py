"""Membership across servers, the resident server's side: other servers' users join, leave and knock
on our rooms (`make_join`/`send_join` v2, `make_leave`/`send_leave` v2, `make_knock`/`send_knock`),
and other servers invite our users into their rooms (`invite` v2).

`make_*` builds an unsigned template on the room's current head; `send_*` runs the PDU checks, signs
a restricted join we authorised, and persists through `EventIngestor.persist_checked` (so the event
takes the same auth stages as any remote event). An invite of one of our users into a room we are
not in is signed and stored as an out-of-band outlier, with the stripped state the inviting server
sent, so the user sees it in /sync's `invite` section.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from signedjson.types import SigningKey

from federation.auth import FederationAuthenticator, federation_body
from federation.ingest import EventIngestor
from federation.keys import KeyLookup
from federation.outbound import SEND_ON_BEHALF_OF
from federation.pdu_checks import CheckedPdu, PduRejected, check_inbound_pdu
from federation.server_acl import ServerAcls
from homeserver.event_auth import AuthError, auth_types_for_event, check_auth, get_user_power_level
from homeserver.event_auth.constants import AUTHORISING_USER, CREATE_KEY, JOIN_RULES_KEY
from homeserver.event_auth.power_levels import get_named_level
from homeserver.clock import Clock
from homeserver.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.events.builder import MAX_DEPTH
from homeserver.events.event import Event
from homeserver.events.format import serialize_for_federation
from homeserver.events.room_versions import RoomVersion, UnsupportedRoomVersion, get_room_version
from homeserver.events.signing import sign_event
from homeserver.http.request import json_response
from homeserver.identifiers import parse_user_id
from homeserver.sync.rendering import stripped_event, stripped_state_keys
from storage.stores.events import EventStore, StateMap

FEDERATION_V1 = "/_matrix/federation/v1"
FEDERATION_V2 = "/_matrix/federation/v2"

# user_id -> a truthy value when the account exists on this server.
UserExists = Callable[[str], Awaitable[Any]]
# RoomEventSender.send: (room_id, sender, type, content, state_key=...) builds, signs, authorises and
# persists an event of ours.
SendEvent = Callable[..., Awaitable[Any]]


def _server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1]


class ResidentMembership:
    def __init__(self, server_name: str, signing_key: SigningKey, events: EventStore, ingestor: EventIngestor,
                 acls: ServerAcls, keys: KeyLookup, clock: Clock, user_exists: UserExists,
                 send_event: SendEvent | None = None):
        self._server_name = server_name
        self._signing_key = signing_key
        self._events = events
        self._ingestor = ingestor
        self._heads = ingestor.heads
        self._acls = acls
        self._keys = keys
        self._clock = clock
        self._user_exists = user_exists
        self._send_event = send_event

    # --- shared ---------------------------------------------------------------------------
    async def _room(self, room_id: str) -> RoomVersion:
        version = await self._ingestor.room_version_of(room_id)
        if version is None or not await self._ingestor.is_participating(room_id):
            raise not_found(f"This server is not in room {room_id}")
        return version

    @staticmethod
    def _check_user_of_origin(user_id: str, origin: str) -> None:
        _, server = parse_user_id(user_id, "userId")
        if server != origin:
            raise forbidden(f"userId: {user_id} is not a user of {origin}")

    async def _auth_state(self, state: StateMap, event: Event) -> dict[tuple[str, str], Event]:
        keys = set(auth_types_for_event(event, event.room_version)) | {CREATE_KEY}
        wanted = {k: state[k] for k in keys if k in state}
        loaded = await self._events.get_events(wanted.values())
        return {k: loaded[v] for k, v in wanted.items() if v in loaded}

    async def _template(self, room_id: str, room_version: RoomVersion, user_id: str, membership: str,
                        content: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """An unsigned member event for `user_id` on the room's head, checked against current state."""
        async with self._heads.lock(room_id):
            head = await self._heads.load(room_id, room_version)
            pdu: dict[str, Any] = {
                "type": "m.room.member", "room_id": room_id, "sender": user_id, "state_key": user_id,
                "content": {**(content or {}), "membership": membership},
                "origin": self._server_name, "origin_server_ts": self._clock.time_ms(),
                "depth": min(head.depth + 1, MAX_DEPTH), "prev_events": list(head.extremities),
            }
            provisional = Event(pdu, room_version, event_id="$template")
            auth_types = auth_types_for_event(provisional, room_version)
            pdu["auth_events"] = sorted(head.state[k] for k in auth_types if k in head.state)
            state = dict(head.state)
        # Only the presence of the authorising server's signature is an auth rule; the real one
        # is added by send_join.
        checked = dict(pdu)
        if AUTHORISING_USER in checked["content"]:
            checked["signatures"] = {self._server_name: {"ed25519:template": "x"}}
        try:
            check_auth(Event(checked, room_version, event_id="$template"),
                       await self._auth_state(state, provisional), room_version)
        except AuthError as e:
            raise forbidden(f"{user_id} may not {membership} the room: {e}") from None
        return pdu

    async def _received_member_event(self, request: web.Request, origin: str, membership: str) -> Event:
        """The signed member event of a `send_*` request, through the PDU checks; MatrixError if unfit."""
        room_id = request.match_info["roomId"]
        event_id = request.match_info["eventId"]
        room_version = await self._room(room_id)
        body = federation_body(request)
        if not isinstance(body, dict):
            raise bad_json("Content must be a JSON object (the event)")
        if body.get("type") != "m.room.member":
            raise bad_json("type: must be m.room.member")
        content = body.get("content")
        if not isinstance(content, dict) or content.get("membership") != membership:
            raise bad_json(f"content.membership: must be {membership!r}")
        if body.get("room_id") != room_id:
            raise bad_json("room_id: does not match the room in the path")
        sender = body.get("sender")
        if not isinstance(sender, str) or body.get("state_key") != sender:
            raise bad_json("state_key: must be the sender")
        self._check_user_of_origin(sender, origin)
        pdu = body
        if membership == "join" and room_version.restricted_join_rule:
            authoriser = content.get(AUTHORISING_USER)
            if isinstance(authoriser, str) and authoriser.endswith(":" + self._server_name):
                # We authorised this join in make_join: our signature makes it valid.
                pdu = sign_event(body, room_version, self._server_name, self._signing_key)
        checked = await self._checked(pdu, room_version, "event")
        if checked.event_id != event_id:
            raise bad_json(f"eventId: the event's ID is {checked.event_id}, not {event_id}")
        return Event(checked.pdu, room_version, event_id=checked.event_id)

    async def _checked(self, pdu: Any, room_version: RoomVersion, field: str) -> CheckedPdu:
        """The PDU through checks 1-3: a malformed one is 400, a bad signature 403, a bad hash 400."""
        try:
            checked = await check_inbound_pdu(pdu, room_version, self._keys)
        except PduRejected as e:
            if e.reason.startswith("invalid event"):
                raise bad_json(f"{field}: {e.reason}") from None
            raise forbidden(f"{field}: refused: {e.reason}") from None
        if checked.redacted_for_hash:
            raise bad_json(f"{field}: the content hash does not match the content")
        return checked

    async def _persist(self, event: Event, origin: str) -> None:
        # The rest of the room hears of it from us, the resident server (the origin has it already).
        event.internal_metadata[SEND_ON_BEHALF_OF] = origin
        error = await self._ingestor.persist_checked(event, origin=origin)
        if error is not None:
            raise forbidden(f"The event was refused: {error}")
        stored = await self._events.get_event(event.event_id)
        if stored is None or stored.rejected_reason is not None or stored.internal_metadata.get("outlier"):
            reason = stored.rejected_reason if stored is not None else "not stored"
            raise forbidden(f"The event was refused: {reason or 'not allowed now'}")

    async def _auth_chain(self, event_ids: Iterable[str]) -> list[Event]:
        """Every event reachable through auth_events from `event_ids` (those themselves excluded
        unless reached), each once."""
        chain: dict[str, Event] = {}
        frontier = list(event_ids)
        while frontier:
            loaded = await self._events.get_events(frontier)
            frontier = []
            for event in loaded.values():
                for auth_id in event.auth_event_ids:
                    if auth_id not in chain and auth_id not in frontier:
                        frontier.append(auth_id)
            if frontier:
                for auth_id, auth_event in (await self._events.get_events(frontier)).items():
                    chain[auth_id] = auth_event
        return sorted(chain.values(), key=lambda e: (e.depth, e.event_id))

    # --- join -----------------------------------------------------------------------------
    async def make_join(self, request: web.Request, origin: str) -> web.Response:
        room_id = request.match_info["roomId"]
        user_id = request.match_info["userId"]
        self._check_user_of_origin(user_id, origin)
        room_version = await self._room(room_id)
        supported = request.query.getall("ver", ["1"])
        if room_version.identifier not in supported:
            raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION",
                              f"The room's version {room_version.identifier} is not among those your server "
                              "supports (ver)", room_version=room_version.identifier)
        content: dict[str, Any] = {}
        authoriser = await self._restricted_join_authoriser(room_id, room_version, user_id)
        if authoriser is not None:
            content[AUTHORISING_USER] = authoriser
        template = await self._template(room_id, room_version, user_id, "join", content)
        return json_response({"event": template, "room_version": room_version.identifier})

    async def _restricted_join_authoriser(self, room_id: str, room_version: RoomVersion,
                                          user_id: str) -> str | None:
        """A local user with invite power to name as authorising a restricted join, when one is needed."""
        if not room_version.restricted_join_rule:
            return None
        state = await self._events.get_current_state_ids(room_id)
        rules_id = state.get(JOIN_RULES_KEY)
        rules = await self._events.get_event(rules_id) if rules_id else None
        rule = rules.content.get("join_rule") if rules is not None else None
        if not ((rule == "restricted") or (rule == "knock_restricted" and room_version.knock_restricted_join_rule)):
            return None
        membership, _ = await self._events.get_membership(room_id, user_id)
        if membership in ("join", "invite"):
            return None
        allow = rules.content.get("allow") if rules is not None else None
        allowed_rooms = [a.get("room_id") for a in allow if isinstance(a, dict) and a.get("type") ==
                         "m.room_membership" and isinstance(a.get("room_id"), str)] if isinstance(allow, list) else []
        known = [r for r in allowed_rooms if await self._ingestor.is_participating(r)]
        if not known:
            raise MatrixError(400, "M_UNABLE_TO_AUTHORISE_JOIN",
                              "This server is in none of the rooms whose members may join")
        memberships = [(await self._events.get_membership(r, user_id))[0] for r in known]
        if "join" not in memberships:
            raise forbidden(f"{user_id} is not a member of any room allowed to join")
        auth_keys = [k for k in state if k[0] == "m.room.member" or k in (CREATE_KEY, ("m.room.power_levels", ""))]
        loaded = await self._events.get_events(state[k] for k in auth_keys)
        auth_state = {k: loaded[state[k]] for k in auth_keys if state[k] in loaded}
        power = auth_state.get(("m.room.power_levels", ""))
        invite_level = get_named_level(power.content if power is not None else None, "invite")
        candidates = sorted(
            (-get_user_power_level(k[1], auth_state, room_version), k[1]) for k, e in auth_state.items()
            if k[0] == "m.room.member" and e.membership == "join" and k[1].endswith(":" + self._server_name)
            and get_user_power_level(k[1], auth_state, room_version) >= invite_level)
        if not candidates:
            raise MatrixError(400, "M_UNABLE_TO_GRANT_JOIN", "No user of this server may invite to the room")
        return candidates[0][1]

    async def send_join(self, request: web.Request, origin: str) -> web.Response:
        event = await self._received_member_event(request, origin, "join")
        await self._persist(event, origin)
        after = await self._events.get_state_after_event(event.event_id)
        state = {k: v for k, v in after.items() if v != event.event_id}
        replaced = event.internal_metadata.get("replaces_state")
        if replaced:
            state[event.state_tuple()] = replaced
        state_events = await self._events.get_events(state.values())
        chain = await self._auth_chain([*state.values(), event.event_id])
        now = self._clock.time_ms()
        servers = sorted({_server_of(k[1]) for k, v in after.items() if k[0] == "m.room.member"
                          and (m := await self._events.get_event(v)) is not None and m.membership == "join"})
        return json_response({
            "origin": self._server_name,
            "event": serialize_for_federation(event, now),
            "state": [serialize_for_federation(e, now) for e in state_events.values()],
            "auth_chain": [serialize_for_federation(e, now) for e in chain],
            "members_omitted": False,
            "servers_in_room": servers,
        })

    # --- leave ----------------------------------------------------------------------------
    async def make_leave(self, request: web.Request, origin: str) -> web.Response:
        room_id = request.match_info["roomId"]
        user_id = request.match_info["userId"]
        self._check_user_of_origin(user_id, origin)
        room_version = await self._room(room_id)
        template = await self._template(room_id, room_version, user_id, "leave")
        return json_response({"event": template, "room_version": room_version.identifier})

    async def send_leave(self, request: web.Request, origin: str) -> web.Response:
        event = await self._received_member_event(request, origin, "leave")
        await self._persist(event, origin)
        return json_response({})

    # --- knock ----------------------------------------------------------------------------
    async def make_knock(self, request: web.Request, origin: str) -> web.Response:
        room_id = request.match_info["roomId"]
        user_id = request.match_info["userId"]
        self._check_user_of_origin(user_id, origin)
        room_version = await self._room(room_id)
        supported = request.query.getall("ver", [])
        if room_version.identifier not in supported:
            raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION",
                              f"The room's version {room_version.identifier} is not among those your server "
                              "supports (ver)", room_version=room_version.identifier)
        if not room_version.knock_join_rule:
            raise MatrixError(400, "M_FORBIDDEN", f"Room version {room_version.identifier} does not allow knocking")
        template = await self._template(room_id, room_version, user_id, "knock")
        return json_response({"event": template, "room_version": room_version.identifier})

    async def send_knock(self, request: web.Request, origin: str) -> web.Response:
        event = await self._received_member_event(request, origin, "knock")
        await self._persist(event, origin)
        state = await self._events.get_current_state_ids(event.room_id)
        loaded = await self._events.get_events(stripped_state_keys(state))
        return json_response({"knock_room_state": [stripped_event(loaded[e]) for e in stripped_state_keys(state)
                                                   if e in loaded]})

    # --- invites of our users ---------------------------------------------------------------
    async def invite(self, request: web.Request, origin: str) -> web.Response:
        room_id = request.match_info["roomId"]
        event_id = request.match_info["eventId"]
        body = federation_body(request)
        if not isinstance(body, dict):
            raise bad_json("Content must be a JSON object")
        version_id = body.get("room_version")
        if not isinstance(version_id, str):
            raise bad_json("room_version: required, a string")
        try:
            room_version = get_room_version(version_id)
        except UnsupportedRoomVersion:
            raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", f"room_version: {version_id} is not supported",
                              room_version=version_id) from None
        pdu = body.get("event")
        if not isinstance(pdu, dict):
            raise bad_json("event: required, an object")
        stripped = body.get("invite_room_state", [])
        if not isinstance(stripped, list) or not all(isinstance(s, dict) for s in stripped):
            raise bad_json("invite_room_state: must be an array of objects")
        content = pdu.get("content")
        if pdu.get("type") != "m.room.member" or not isinstance(content, dict) or content.get("membership") != "invite":
            raise bad_json("event: must be an m.room.member event with membership invite")
        if pdu.get("room_id", room_id) != room_id:
            raise bad_json("event.room_id: does not match the room in the path")
        invitee = pdu.get("state_key")
        if not isinstance(invitee, str) or not invitee.endswith(":" + self._server_name):
            raise bad_json("event.state_key: must be a user of this server")
        sender = pdu.get("sender")
        if not isinstance(sender, str) or ":" not in sender:
            raise bad_json("event.sender: must be a user ID")
        if _server_of(sender) != origin and "third_party_invite" not in content:
            raise forbidden(f"event.sender: {sender} is not a user of {origin}")
        if not await self._user_exists(invitee):
            raise not_found(f"Unknown user {invitee}")
        if not await self._acls.allows(room_id, origin):
            raise forbidden(f"Server {origin} is denied by the room's server ACL")
        checked = await self._checked(pdu, room_version, "event")
        if checked.event_id != event_id:
            raise bad_json(f"eventId: the event's ID is {checked.event_id}, not {event_id}")
        signed = sign_event(checked.pdu, room_version, self._server_name, self._signing_key)
        event = Event(signed, room_version, event_id=checked.event_id)
        # In a room we are in, the invite reaches us again through the room's DAG (/send); only an
        # invite into a room we are not in is kept here, out of band.
        if not (await self._ingestor.room_version_of(room_id) and await self._ingestor.is_participating(room_id)):
            event.internal_metadata["invite_room_state"] = stripped
            await self._ingestor.persist_out_of_band_membership(event)
        return json_response({"event": serialize_for_federation(event, self._clock.time_ms())})

    # --- third-party invites ----------------------------------------------------------------
    async def exchange_third_party_invite(self, request: web.Request, origin: str) -> web.Response:
        """The invitee's server turns a third-party invite into an invite: we build, sign and send it."""
        room_id = request.match_info["roomId"]
        await self._room(room_id)
        body = federation_body(request)
        if not isinstance(body, dict):
            raise bad_json("Content must be a JSON object (the invite event)")
        if body.get("type") != "m.room.member":
            raise bad_json("type: must be m.room.member")
        if body.get("room_id") != room_id:
            raise bad_json("room_id: does not match the room in the path")
        sender, invitee, content = body.get("sender"), body.get("state_key"), body.get("content")
        if not isinstance(sender, str) or not isinstance(invitee, str):
            raise bad_json("sender and state_key: must be user IDs")
        parse_user_id(sender, "sender")
        if parse_user_id(invitee, "state_key")[1] != origin:
            raise forbidden(f"state_key: {invitee} is not a user of {origin}")
        if not isinstance(content, dict) or content.get("membership") != "invite":
            raise bad_json("content.membership: must be 'invite'")
        third_party = content.get("third_party_invite")
        signed = third_party.get("signed") if isinstance(third_party, dict) else None
        if not isinstance(signed, dict) or not isinstance(signed.get("token"), str):
            raise bad_json("content.third_party_invite.signed: must carry a token")
        if signed.get("mxid") != invitee:
            raise invalid_param("content.third_party_invite.signed.mxid: is not state_key")
        if self._send_event is None:
            raise MatrixError(501, "M_UNRECOGNIZED", "Third-party invites cannot be exchanged here")
        # Built on our head and checked by the auth rules (the identity server's signature among them).
        await self._send_event(room_id, sender, "m.room.member", content, state_key=invitee)
        return json_response({})

    def register_routes(self, app: web.Application, authenticator: FederationAuthenticator) -> None:
        route = authenticator.route
        app.router.add_get(f"{FEDERATION_V1}/make_join/{{roomId}}/{{userId}}", route(self.make_join))
        app.router.add_put(f"{FEDERATION_V2}/send_join/{{roomId}}/{{eventId}}", route(self.send_join))
        app.router.add_get(f"{FEDERATION_V1}/make_leave/{{roomId}}/{{userId}}", route(self.make_leave))
        app.router.add_put(f"{FEDERATION_V2}/send_leave/{{roomId}}/{{eventId}}", route(self.send_leave))
        app.router.add_get(f"{FEDERATION_V1}/make_knock/{{roomId}}/{{userId}}", route(self.make_knock))
        app.router.add_put(f"{FEDERATION_V1}/send_knock/{{roomId}}/{{eventId}}", route(self.send_knock))
        app.router.add_put(f"{FEDERATION_V2}/invite/{{roomId}}/{{eventId}}", route(self.invite))
        app.router.add_put(f"{FEDERATION_V1}/exchange_third_party_invite/{{roomId}}",
                           route(self.exchange_third_party_invite))
