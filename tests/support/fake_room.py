"""A fake remote server's view of a room, for federation tests: the events it knows, the state and
forward extremities as it sees them, events built and signed by its users, and the read endpoints
our server calls to fill gaps (`/event`, `/state_ids`, `/get_missing_events`, `/event_auth`).

    view = RemoteRoomView()
    remote = await make_remote(routes=view.install)   # the routes must exist before start()
    view.remote = remote
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web

from homeserver.event_auth import auth_types_for_event
from homeserver.events.event import Event
from homeserver.events.hashing import add_content_hash, compute_event_id
from homeserver.events.room_versions import RoomVersion, get_room_version
from homeserver.events.signing import sign_event
from tests.support.fake_remote import FakeRemoteServer


class RemoteRoomView:
    def __init__(self) -> None:
        self.remote: FakeRemoteServer | None = None
        self.room_id = ""
        self.room_version: RoomVersion = get_room_version("10")
        self.events: dict[str, dict[str, Any]] = {}
        self.state: dict[tuple[str, str], str] = {}
        # State before each event (for /state_ids), as the view computed it.
        self.state_before: dict[str, dict[tuple[str, str], str]] = {}
        self.extremities: list[str] = []
        self.depth = 0
        # Events /get_missing_events must not return (to force /state_ids).
        self.hidden: set[str] = set()
        self.missing_events_requests = 0
        self.state_ids_requests = 0

    # --- learning the room -----------------------------------------------------------------
    def learn(self, room_version: RoomVersion, room_id: str, state: Iterable[Mapping[str, Any]],
              auth_chain: Iterable[Mapping[str, Any]] = ()) -> None:
        """Take the room as a `send_join` answer describes it (state before the join)."""
        self.room_version = room_version
        self.room_id = room_id
        for pdu in [*auth_chain, *state]:
            self.events[self.event_id(pdu)] = dict(pdu)
        self.state = {(p["type"], p["state_key"]): self.event_id(p) for p in state}
        self.depth = max((p["depth"] for p in self.events.values()), default=0)

    def event_id(self, pdu: Mapping[str, Any]) -> str:
        return compute_event_id(pdu, self.room_version)

    def apply(self, pdu: Mapping[str, Any], *, as_extremity: bool = True) -> str:
        """Record an event (ours or our server's) as part of the room from now on."""
        event_id = self.event_id(pdu)
        self.events[event_id] = dict(pdu)
        self.state_before[event_id] = dict(self.state)
        if "state_key" in pdu:
            self.state[(pdu["type"], pdu["state_key"])] = event_id
        if as_extremity:
            self.extremities = [e for e in self.extremities if e not in pdu["prev_events"]] + [event_id]
        self.depth = max(self.depth, pdu["depth"])
        return event_id

    # --- building ---------------------------------------------------------------------------
    def user(self, localpart: str) -> str:
        assert self.remote is not None
        return f"@{localpart}:{self.remote.server_name}"

    def build(self, localpart: str, event_type: str, content: Mapping[str, Any], *, state_key: str | None = None,
              prev_events: list[str] | None = None, auth_state: Mapping[tuple[str, str], str] | None = None,
              depth: int | None = None, sign: bool = True) -> dict[str, Any]:
        """A hashed event by one of the remote's users, signed by the remote, on the view's head."""
        assert self.remote is not None
        pdu: dict[str, Any] = {
            "type": event_type, "room_id": self.room_id, "sender": self.user(localpart), "content": dict(content),
            "origin": self.remote.server_name, "origin_server_ts": int(time.time() * 1000),
            "prev_events": list(prev_events if prev_events is not None else self.extremities),
            "depth": depth if depth is not None else self.depth + 1,
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        state = auth_state if auth_state is not None else self.state
        types = auth_types_for_event(Event(pdu, self.room_version, event_id="$x"), self.room_version)
        pdu["auth_events"] = sorted(state[k] for k in types if k in state)
        pdu = add_content_hash(pdu)
        if sign:
            pdu = sign_event(pdu, self.room_version, self.remote.server_name, self.remote.signing_key)
        return pdu

    def sign_template(self, template: Mapping[str, Any]) -> dict[str, Any]:
        """A `make_*` template hashed and signed by the remote, as its server would before `send_*`."""
        assert self.remote is not None
        pdu = {k: v for k, v in template.items() if k not in ("signatures", "hashes", "unsigned")}
        pdu["origin_server_ts"] = int(time.time() * 1000)
        return sign_event(add_content_hash(pdu), self.room_version, self.remote.server_name, self.remote.signing_key)

    # --- serving -----------------------------------------------------------------------------
    def install(self, remote: FakeRemoteServer) -> None:
        remote.route("GET", "/_matrix/federation/v1/event/{eventId}", self._event)
        remote.route("GET", "/_matrix/federation/v1/state_ids/{roomId}", self._state_ids)
        remote.route("POST", "/_matrix/federation/v1/get_missing_events/{roomId}", self._missing_events)
        remote.route("GET", "/_matrix/federation/v1/event_auth/{roomId}/{eventId}", self._event_auth)

    def _origin(self) -> str:
        assert self.remote is not None
        return self.remote.server_name

    async def _event(self, request: web.Request) -> web.Response:
        pdu = self.events.get(request.match_info["eventId"])
        if pdu is None:
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "unknown event"}, status=404)
        return web.json_response({"origin": self._origin(), "origin_server_ts": int(time.time() * 1000),
                                  "pdus": [pdu]})

    def _auth_chain_ids(self, event_ids: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        frontier = list(event_ids)
        while frontier:
            pdu = self.events.get(frontier.pop())
            for auth_id in (pdu or {}).get("auth_events", []):
                if auth_id not in seen:
                    seen.add(auth_id)
                    frontier.append(auth_id)
        return seen

    async def _state_ids(self, request: web.Request) -> web.Response:
        self.state_ids_requests += 1
        event_id = request.query.get("event_id", "")
        if event_id not in self.state_before:
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "unknown event"}, status=404)
        state = self.state_before[event_id]
        return web.json_response({"pdu_ids": sorted(state.values()),
                                  "auth_chain_ids": sorted(self._auth_chain_ids(state.values()))})

    async def _event_auth(self, request: web.Request) -> web.Response:
        ids = self._auth_chain_ids([request.match_info["eventId"]])
        return web.json_response({"auth_chain": [self.events[e] for e in ids if e in self.events]})

    async def _missing_events(self, request: web.Request) -> web.Response:
        self.missing_events_requests += 1
        body = await request.json()
        earliest = set(body.get("earliest_events", []))
        limit = int(body.get("limit", 10))
        found: list[dict[str, Any]] = []
        frontier = list(body.get("latest_events", []))
        seen: set[str] = set(frontier)
        while frontier and len(found) < limit:
            pdu = self.events.get(frontier.pop(0))
            for prev in (pdu or {}).get("prev_events", []):
                if prev in seen or prev in earliest or prev in self.hidden:
                    continue
                seen.add(prev)
                if prev in self.events:
                    found.append(self.events[prev])
                    frontier.append(prev)
        found.sort(key=lambda p: p["depth"])
        return web.json_response({"events": found[:limit]})


def path_segment(value: str) -> str:
    return quote(value, safe="")
