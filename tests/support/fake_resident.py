"""A room that lives on a fake remote server (tests/support/fake_remote.py), which acts as its
resident server: it builds and signs the room's events with its own key, and answers make_join /
send_join (v2), make_leave / send_leave (v2), make_knock / send_knock and invite (v2) for it, as
the spec describes. Tests tamper with what it serves (`tamper_state`, `refuse_joins`...)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from homeserver.event_auth import auth_types_for_event, check_auth
from homeserver.events.builder import build_event
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion, get_room_version
from homeserver.events.signing import sign_event
from tests.support.fake_remote import FakeRemoteServer

STRIPPED = ("m.room.create", "m.room.join_rules", "m.room.name", "m.room.topic", "m.room.canonical_alias")


class FakeResidentRoom:
    def __init__(self, remote: FakeRemoteServer, *, version: str = "10", join_rule: str = "public",
                 name: str = "Remote lobby", creator: str = "alice", allow_room: str | None = None):
        self.remote = remote
        self.room_version: RoomVersion = get_room_version(version)
        self.events: dict[str, Event] = {}
        self.state: dict[tuple[str, str], str] = {}
        self.extremities: list[str] = []
        self.depth = 0
        self.room_id = f"!room{int(time.time() * 1000) % 10**9}:{remote.server_name}"
        self.creator = self.user(creator)
        # Hooks tests use to break the resident: each gets and returns the send_join answer / template.
        self.tamper_answer: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.tamper_template: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.refuse: dict[str, tuple[int, dict[str, Any]]] = {}  # "make_join" -> (status, body)
        self.invites: list[dict[str, Any]] = []  # bodies of PUT /v2/invite received
        self.backfill_requests: list[list[str]] = []  # the `v` of each /backfill
        # Faster joins: whether send_join honours omit_members, the state before each event (for
        # /state), the /state requests received, and a gate /state answers wait on while clear.
        self.honour_omit_members = False
        self.state_before: dict[str, dict[tuple[str, str], str]] = {}
        self.state_requests: list[str] = []
        self.state_ids_requests: list[str] = []  # the event_id of each /state_ids
        self.state_gate: asyncio.Event | None = None
        self.transactions: list[dict[str, Any]] = []  # bodies of PUT /send received
        old_style = self.room_version.identifier in ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10")
        self.create = self.send("m.room.create", {"room_version": version, "creator": self.creator}
                                if old_style else {"room_version": version}, state_key="", sender=self.creator)
        if self.room_version.room_id_from_create_event:
            self.room_id = self.create.room_id  # v12: the room is named after its create event
        self.send("m.room.member", {"membership": "join", "displayname": creator}, state_key=self.creator,
                  sender=self.creator)
        # From v12 the creators hold unlimited power and may not be listed.
        users = {} if self.room_version.room_id_from_create_event else {self.creator: 100}
        self.send("m.room.power_levels", {"users": users, "invite": 0}, state_key="", sender=self.creator)
        rule: dict[str, Any] = {"join_rule": join_rule}
        if allow_room is not None:
            rule["allow"] = [{"type": "m.room_membership", "room_id": allow_room}]
        self.send("m.room.join_rules", rule, state_key="", sender=self.creator)
        self.send("m.room.history_visibility", {"history_visibility": "shared"}, state_key="", sender=self.creator)
        self.send("m.room.name", {"name": name}, state_key="", sender=self.creator)

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.remote.server_name}"

    # --- the room's DAG, built and signed by the resident -----------------------------------------
    def _auth_ids(self, event_type: str, sender: str, content: dict[str, Any], state_key: str | None) -> list[str]:
        pdu = {"type": event_type, "sender": sender, "content": content, "room_id": self.room_id}
        if state_key is not None:
            pdu["state_key"] = state_key
        provisional = Event(pdu, self.room_version, event_id="$provisional")
        return sorted(self.state[k] for k in auth_types_for_event(provisional, self.room_version) if k in self.state)

    def send(self, event_type: str, content: dict[str, Any], *, state_key: str | None = None,
             sender: str | None = None, origin: FakeRemoteServer | None = None) -> Event:
        """A new event on the room's head, signed by `origin` (the sender's server; by default the
        resident, whose users send)."""
        sender = sender or self.creator
        origin = origin or self.remote
        event = build_event(
            room_version=self.room_version, event_type=event_type, sender=sender, content=content,
            room_id=None if self.room_version.room_id_from_create_event and event_type == "m.room.create"
            else self.room_id, state_key=state_key, prev_event_ids=list(self.extremities),
            auth_event_ids=self._auth_ids(event_type, sender, content, state_key), depth=self.depth + 1,
            origin_server_ts=int(time.time() * 1000), origin=origin.server_name,
            signing_key=origin.signing_key)
        self.accept(event)
        return event

    def accept(self, event: Event) -> None:
        """Add an event to the DAG after checking it against the current state, as a resident would."""
        auth_state = {k: self.events[v] for k, v in self.state.items()}
        check_auth(event, auth_state, self.room_version)
        self.state_before[event.event_id] = dict(self.state)
        self.events[event.event_id] = event
        self.extremities = [event.event_id]
        self.depth = max(self.depth, event.depth)
        if event.is_state():
            self.state[event.state_tuple()] = event.event_id

    def auth_chain(self, event_ids: list[str]) -> list[dict[str, Any]]:
        return [dict(e.pdu) for e in self.auth_chain_events(event_ids).values()]

    def auth_chain_events(self, event_ids: list[str]) -> dict[str, Event]:
        seen: dict[str, Event] = {}
        stack = list(event_ids)
        while stack:
            event = self.events.get(stack.pop())
            if event is None:
                continue
            for auth_id in event.auth_event_ids:
                if auth_id not in seen and auth_id in self.events:
                    seen[auth_id] = self.events[auth_id]
                    stack.append(auth_id)
        return seen

    def template(self, user_id: str, membership: str, content_extra: dict[str, Any] | None = None) -> dict[str, Any]:
        content = {"membership": membership, **(content_extra or {})}
        template: dict[str, Any] = {
            "type": "m.room.member", "room_id": self.room_id, "sender": user_id, "state_key": user_id,
            "content": content, "depth": self.depth + 1, "prev_events": self._refs(self.extremities),
            "auth_events": self._refs(self._auth_ids("m.room.member", user_id, content, user_id)),
            "origin": user_id.split(":", 1)[1], "origin_server_ts": int(time.time() * 1000),
        }
        return self.tamper_template(template) if self.tamper_template else template

    def _refs(self, event_ids: list[str]) -> list[Any]:
        """Event references as the room version writes them ([event_id, hashes] pairs in v1 and v2)."""
        if self.room_version.event_id_in_event:
            return [[event_id, {}] for event_id in event_ids]
        return list(event_ids)

    def stripped_state(self) -> list[dict[str, Any]]:
        out = []
        for key in ((t, "") for t in STRIPPED):
            if key in self.state:
                e = self.events[self.state[key]]
                out.append({"type": e.type, "state_key": e.state_key, "content": dict(e.content), "sender": e.sender})
        return out

    # --- the federation endpoints ------------------------------------------------------------------
    def serve(self) -> None:
        """Register the room's endpoints on the remote (before it starts)."""
        r = self.remote
        r.route("GET", "/_matrix/federation/v1/make_join/{roomId}/{userId}", self._make("join"))
        r.route("GET", "/_matrix/federation/v1/make_leave/{roomId}/{userId}", self._make("leave"))
        r.route("GET", "/_matrix/federation/v1/make_knock/{roomId}/{userId}", self._make("knock"))
        r.route("PUT", "/_matrix/federation/v2/send_join/{roomId}/{eventId}", self._send_join)
        r.route("PUT", "/_matrix/federation/v2/send_leave/{roomId}/{eventId}", self._send_membership("leave"))
        r.route("PUT", "/_matrix/federation/v1/send_knock/{roomId}/{eventId}", self._send_membership("knock"))
        r.route("PUT", "/_matrix/federation/v2/invite/{roomId}/{eventId}", self._invite)
        r.route("GET", "/_matrix/federation/v1/backfill/{roomId}", self._backfill)
        r.route("GET", "/_matrix/federation/v1/state/{roomId}", self._state)
        r.route("GET", "/_matrix/federation/v1/state_ids/{roomId}", self._state_ids)
        r.route("GET", "/_matrix/federation/v1/event/{eventId}", self._event)
        r.route("PUT", "/_matrix/federation/v1/send/{txnId}", self._send)

    def add_members(self, count: int, prefix: str = "member") -> list[str]:
        """`count` more users of the resident joined to the room."""
        users = [self.user(f"{prefix}{i}") for i in range(count)]
        for user in users:
            self.send("m.room.member", {"membership": "join"}, state_key=user, sender=user)
        return users

    def _refused(self, name: str) -> web.Response | None:
        if name in self.refuse:
            status, body = self.refuse[name]
            return web.json_response(body, status=status)
        return None

    def _make(self, membership: str):
        async def handler(request: web.Request) -> web.Response:
            refused = self._refused(f"make_{membership}")
            if refused is not None:
                return refused
            if request.match_info["roomId"] != self.room_id:
                return web.json_response({"errcode": "M_NOT_FOUND", "error": "unknown room"}, status=404)
            versions = request.query.getall("ver", [])
            if membership != "leave" and self.room_version.identifier not in versions:
                return web.json_response({"errcode": "M_INCOMPATIBLE_ROOM_VERSION", "error": "upgrade",
                                          "room_version": self.room_version.identifier}, status=400)
            extra: dict[str, Any] = {}
            rule = self.events[self.state[("m.room.join_rules", "")]].content.get("join_rule")
            if membership == "join" and rule == "restricted":
                extra["join_authorised_via_users_server"] = self.creator
            template = self.template(request.match_info["userId"], membership, extra)
            return web.json_response({"room_version": self.room_version.identifier, "event": template})

        return handler

    async def _receive(self, request: web.Request) -> Event:
        pdu = await request.json()
        event = Event(pdu, self.room_version)
        assert event.event_id == request.match_info["eventId"], (event.event_id, request.match_info["eventId"])
        return event

    async def _send_join(self, request: web.Request) -> web.Response:
        refused = self._refused("send_join")
        if refused is not None:
            return refused
        event = await self._receive(request)
        state_before = [dict(self.events[eid].pdu) for eid in self.state.values()]
        if "join_authorised_via_users_server" in event.content:
            event = Event(sign_event(dict(event.pdu), self.room_version, self.remote.server_name,
                                     self.remote.signing_key), self.room_version)
        try:
            self.accept(event)
        except Exception as e:
            return web.json_response({"errcode": "M_FORBIDDEN", "error": str(e)}, status=403)
        answer: dict[str, Any] = {
            "origin": self.remote.server_name, "members_omitted": False,
            "state": state_before, "auth_chain": self.auth_chain([*self.state.values(), event.event_id]),
        }
        if self.honour_omit_members and request.query.get("omit_members") == "true":
            before = self.state_before[event.event_id]
            kept = [v for k, v in before.items() if k[0] != "m.room.member" or k[1] == event.state_key]
            chain = self.auth_chain([*kept, event.event_id])
            answer.update(members_omitted=True, servers_in_room=[self.remote.server_name],
                          state=[dict(self.events[v].pdu) for v in kept],
                          auth_chain=[p for p in chain if Event(p, self.room_version).event_id not in kept])
        if "join_authorised_via_users_server" in event.content:
            answer["event"] = dict(event.pdu)
        if self.tamper_answer is not None:
            answer = self.tamper_answer(answer)
        return web.json_response(answer)

    def _send_membership(self, membership: str):
        async def handler(request: web.Request) -> web.Response:
            event = await self._receive(request)
            if event.membership != membership:
                return web.json_response({"errcode": "M_BAD_JSON", "error": "wrong membership"}, status=400)
            try:
                self.accept(event)
            except Exception as e:
                return web.json_response({"errcode": "M_FORBIDDEN", "error": str(e)}, status=403)
            if membership == "knock":
                return web.json_response({"knock_room_state": self.stripped_state()})
            return web.json_response({})

        return handler

    async def _backfill(self, request: web.Request) -> web.Response:
        """The events from those named by `v` backwards, breadth first, `limit` at most."""
        self.backfill_requests.append(request.query.getall("v", []))
        limit = int(request.query.get("limit", "10"))
        queue = [v for v in request.query.getall("v", []) if v in self.events]
        seen: set[str] = set(queue)
        out = []
        while queue and len(out) < limit:
            event = self.events[queue.pop(0)]
            out.append(dict(event.pdu))
            for prev in event.prev_event_ids:
                if prev not in seen and prev in self.events:
                    seen.add(prev)
                    queue.append(prev)
        return web.json_response({"origin": self.remote.server_name, "origin_server_ts": int(time.time() * 1000),
                                  "pdus": out})

    async def _state(self, request: web.Request) -> web.Response:
        """GET /state: the state before an event and its auth chain, once `state_gate` (if any) is set."""
        event_id = request.query.get("event_id", "")
        self.state_requests.append(event_id)
        refused = self._refused("state")
        if refused is not None:
            return refused
        if self.state_gate is not None:
            await self.state_gate.wait()
        before = self.state_before.get(event_id)
        if before is None:
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "unknown event"}, status=404)
        return web.json_response({"pdus": [dict(self.events[v].pdu) for v in before.values()],
                                  "auth_chain": self.auth_chain(list(before.values()))})

    async def _state_ids(self, request: web.Request) -> web.Response:
        """GET /state_ids: the IDs of the state before an event and of its auth chain."""
        event_id = request.query.get("event_id", "")
        self.state_ids_requests.append(event_id)
        before = self.state_before.get(event_id)
        if before is None:
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "unknown event"}, status=404)
        return web.json_response({"pdu_ids": list(before.values()),
                                  "auth_chain_ids": list(self.auth_chain_events(list(before.values())))})

    async def _event(self, request: web.Request) -> web.Response:
        event = self.events.get(request.match_info["eventId"])
        if event is None:
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "unknown event"}, status=404)
        return web.json_response({"origin": self.remote.server_name, "origin_server_ts": int(time.time() * 1000),
                                  "pdus": [dict(event.pdu)]})

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.transactions.append(body)
        return web.json_response({"pdus": {}})

    async def _invite(self, request: web.Request) -> web.Response:
        refused = self._refused("invite")
        if refused is not None:
            return refused
        body = await request.json()
        self.invites.append(body)
        version = get_room_version(body["room_version"])
        signed = sign_event(body["event"], version, self.remote.server_name, self.remote.signing_key)
        return web.json_response({"event": signed})


def path_segment(value: str) -> str:
    return quote(value, safe="")
