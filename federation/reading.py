"""What other servers may read of our rooms: single events, the state at an event, auth chains,
backfill, missing events and the event closest to a time.

Access, as Synapse decides it (the spec names the 403 but not the rule): the room must be known,
the room's server ACL must allow the requesting server, and the server must be in the room now
(a user of it joined in the current state). Otherwise `403 M_FORBIDDEN`.

History visibility for servers (Synapse's rule; the spec defines visibility for users only):
an event is readable by a server when the room's history visibility at it is `world_readable`
or `shared`, or when one of the server's users was joined at it (or invited, under `invited`).
An event the server may not read is served in its redacted form rather than left out, so the
server's copy of the DAG stays whole while the content stays hidden; events redacted here are
served redacted to everyone.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from typing import Any

from federation.outbound import server_of
from federation.server_acl import ServerAcls
from homeserver.clock import Clock
from homeserver.errors import forbidden, not_found
from homeserver.events.event import Event
from homeserver.events.format import serialize_for_federation
from homeserver.rooms.erasure import ErasedUsers
from homeserver.state.visibility import (
    HISTORY_VISIBILITY_KEY,
    INVITED,
    SHARED,
    WORLD_READABLE,
    effective_visibility,
)
from storage.stores.events import EventStore, StateMap
from storage.stores.partial_state import PartialStateStore
from storage.stores.timeline import TimelineStore

MAX_BACKFILL = 100
MAX_MISSING_EVENTS = 100
DEFAULT_MISSING_EVENTS = 10


class FederationReader:
    def __init__(self, server_name: str, events: EventStore, timeline: TimelineStore, acls: ServerAcls, clock: Clock,
                 erased_users: ErasedUsers | None = None, partial_state: PartialStateStore | None = None):
        self._server_name = server_name
        self._partial_state = partial_state
        self._acls = acls
        self._events = events
        self._timeline = timeline
        self._clock = clock
        self._erased_users = erased_users

    # --- access --------------------------------------------------------------------------------
    async def check_room_access(self, origin: str, room_id: str) -> None:
        """403 unless the room is known, its server ACL allows `origin`, and `origin` is in it."""
        if await self._events.get_room_version_id(room_id) is None:
            raise forbidden(f"{origin} is not in room {room_id}")
        await self._acls.check(room_id, origin)
        members = await self._events.get_members(room_id)
        if not any(server_of(user_id) == origin for user_id in members):
            # In a room joined with partial state, the servers the join answer listed are in it too.
            partial = await self._partial_state.get_room(room_id) if self._partial_state is not None else None
            if partial is None or origin not in partial.servers_in_room:
                raise forbidden(f"{origin} is not in room {room_id}")

    async def _event_in_room(self, room_id: str, event_id: str) -> Event:
        event = await self._events.get_event(event_id)
        if event is None or event.room_id != room_id:
            raise not_found(f"Unknown event {event_id} in room {room_id}")
        return event

    # --- visibility ----------------------------------------------------------------------------
    async def _server_view(self, origin: str, state: StateMap) -> tuple[str, list[str | None]]:
        """(history visibility, memberships of the origin's users) in a state."""
        wanted = [event_id for (event_type, state_key), event_id in state.items()
                  if event_type == "m.room.member" and server_of(state_key) == origin]
        hv_id = state.get(HISTORY_VISIBILITY_KEY)
        loaded = await self._events.get_events([*wanted, *([hv_id] if hv_id else [])])
        hv_event = loaded.get(hv_id) if hv_id else None
        visibility = effective_visibility(hv_event.content.get("history_visibility") if hv_event else None)
        return visibility, [loaded[event_id].membership for event_id in wanted if event_id in loaded]

    async def _visible_to(self, origin: str, event: Event,
                          views: dict[int, tuple[StateMap, tuple[str, list[str | None]]]]) -> bool:
        state = await self._events.get_state_before_event(event.event_id)
        # Events sharing a state group share the (cached) state map: judge each state once per request.
        cached = views.get(id(state))
        if cached is None or cached[0] is not state:
            cached = (state, await self._server_view(origin, state))
            views[id(state)] = cached
        visibility, memberships = cached[1]
        if event.type == "m.room.history_visibility" and event.state_key == "":
            # The event's own setting counts too (as for users): the more open of the two.
            after = effective_visibility(event.content.get("history_visibility"))
            if after in (WORLD_READABLE, SHARED):
                visibility = after
        if visibility in (WORLD_READABLE, SHARED):
            return True
        if event.type == "m.room.member" and event.state_key and server_of(event.state_key) == origin:
            memberships = [*memberships, event.membership]
        if "join" in memberships:
            return True
        return visibility == INVITED and "invite" in memberships

    async def _pdus_for(self, origin: str, events: Iterable[Event]) -> list[dict[str, Any]]:
        now = self._clock.time_ms()
        events = list(events)
        # As Synapse: the events of users erased at deactivation go to other servers pruned.
        erased = await self._erased_users({e.sender for e in events}) if self._erased_users and events else set()
        views: dict[int, tuple[StateMap, tuple[str, list[str | None]]]] = {}
        pdus = []
        for event in events:
            redacted = (bool(event.internal_metadata.get("redacted_by")) or event.sender in erased
                        or not await self._visible_to(origin, event, views))
            pdus.append(serialize_for_federation(event, now, redacted=redacted))
        return pdus

    def _transaction(self, pdus: list[dict[str, Any]]) -> dict[str, Any]:
        return {"origin": self._server_name, "origin_server_ts": self._clock.time_ms(), "pdus": pdus}

    # --- the endpoints -------------------------------------------------------------------------
    async def get_event(self, origin: str, event_id: str) -> dict[str, Any]:
        """GET /event/{eventId}: a transaction holding the one PDU."""
        event = await self._events.get_event(event_id)
        if event is None:
            raise not_found(f"Unknown event {event_id}")
        await self.check_room_access(origin, event.room_id)
        return self._transaction(await self._pdus_for(origin, [event]))

    async def _state_before(self, origin: str, room_id: str, event_id: str) -> StateMap:
        await self.check_room_access(origin, room_id)
        event = await self._event_in_room(room_id, event_id)
        if event.internal_metadata.get("outlier") or await self._events.get_state_group_for_event(event_id) is None:
            raise not_found(f"No state is known at {event_id}")
        if self._partial_state is not None and await self._partial_state.is_partial(room_id):
            # Our member list is incomplete until the full state is fetched (as Synapse answers).
            raise not_found(f"Only partial state is known at {event_id} yet")
        return await self._events.get_state_before_event(event_id)

    async def state_ids(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        """GET /state_ids/{roomId}: the state before the event and its auth chain, as event IDs."""
        state = await self._state_before(origin, room_id, event_id)
        chain = await self.auth_chain(state.values())
        return {"pdu_ids": sorted(state.values()), "auth_chain_ids": sorted(e.event_id for e in chain)}

    async def state(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        """GET /state/{roomId}: the state before the event and its auth chain, as PDUs."""
        state = await self._state_before(origin, room_id, event_id)
        loaded = await self._events.get_events(state.values())
        chain = await self.auth_chain(state.values())
        now = self._clock.time_ms()
        return {
            "pdus": [_as_pdu(loaded[event_id], now) for event_id in sorted(state.values()) if event_id in loaded],
            "auth_chain": [_as_pdu(event, now) for event in chain],
        }

    async def event_auth(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        """GET /event_auth/{roomId}/{eventId}: the event's full auth chain."""
        await self.check_room_access(origin, room_id)
        event = await self._event_in_room(room_id, event_id)
        now = self._clock.time_ms()
        return {"auth_chain": [_as_pdu(e, now) for e in await self.auth_chain(event.auth_event_ids)]}

    async def auth_chain(self, event_ids: Iterable[str]) -> list[Event]:
        """The events `event_ids` and their auth events, recursively, oldest (lowest depth) first."""
        seen: set[str] = set()
        frontier = [event_id for event_id in dict.fromkeys(event_ids)]
        seen.update(frontier)
        chain: list[Event] = []
        while frontier:
            loaded = await self._events.get_events(frontier)
            next_frontier: list[str] = []
            for event_id in frontier:
                event = loaded.get(event_id)
                if event is None:
                    continue
                chain.append(event)
                for auth_id in event.auth_event_ids:
                    if auth_id not in seen:
                        seen.add(auth_id)
                        next_frontier.append(auth_id)
            frontier = next_frontier
        chain.sort(key=lambda e: (e.depth, e.event_id))
        return chain

    async def backfill(self, origin: str, room_id: str, from_ids: Sequence[str], limit: int) -> dict[str, Any]:
        """GET /backfill/{roomId}: the given events and those before them, newest first, up to `limit`."""
        await self.check_room_access(origin, room_id)
        limit = min(limit, MAX_BACKFILL)
        found: list[Event] = []
        seen: set[str] = set(from_ids)
        heap: list[tuple[int, str, Event]] = []
        for event in (await self._events.get_events(from_ids)).values():
            if event.room_id == room_id:
                heapq.heappush(heap, (-event.depth, event.event_id, event))
        while heap and len(found) < limit:
            _, _, event = heapq.heappop(heap)
            found.append(event)
            prevs = [p for p in event.prev_event_ids if p not in seen]
            seen.update(prevs)
            for prev in (await self._events.get_events(prevs)).values():
                if prev.room_id == room_id:
                    heapq.heappush(heap, (-prev.depth, prev.event_id, prev))
        return self._transaction(await self._pdus_for(origin, found))

    async def missing_events(self, origin: str, room_id: str, earliest: Sequence[str], latest: Sequence[str],
                             limit: int, min_depth: int) -> dict[str, Any]:
        """POST /get_missing_events/{roomId}: the events before `latest` back to `earliest`, oldest first."""
        await self.check_room_access(origin, room_id)
        limit = min(limit, MAX_MISSING_EVENTS)
        seen: set[str] = set(earliest) | set(latest)
        start = [e for e in (await self._events.get_events(latest)).values() if e.room_id == room_id]
        frontier = [p for event in start for p in event.prev_event_ids if p not in seen]
        seen.update(frontier)
        found: list[Event] = []
        while frontier and len(found) < limit:
            loaded = await self._events.get_events(frontier)
            next_frontier: list[str] = []
            for event_id in frontier:
                event = loaded.get(event_id)
                if event is None or event.room_id != room_id or event.depth < min_depth:
                    continue
                found.append(event)
                if len(found) == limit:
                    break
                for prev in event.prev_event_ids:
                    if prev not in seen:
                        seen.add(prev)
                        next_frontier.append(prev)
            frontier = next_frontier
        found.sort(key=lambda e: (e.depth, e.event_id))
        return {"events": await self._pdus_for(origin, found)}

    async def timestamp_to_event(self, origin: str, room_id: str, ts: int, forwards: bool) -> dict[str, Any]:
        """GET /timestamp_to_event/{roomId}: the event closest to `ts` in the direction asked."""
        await self.check_room_access(origin, room_id)
        found = await self._timeline.closest_event_to_timestamp(room_id, ts, forwards=forwards)
        if found is None:
            raise not_found(f"No event found {'after' if forwards else 'before'} {ts} in {room_id}")
        return {"event_id": found[0], "origin_server_ts": found[1]}


def _as_pdu(event: Event, now: int) -> dict[str, Any]:
    # State and auth chains are needed whole to check the DAG; only applied redactions are honoured.
    return serialize_for_federation(event, now, redacted=bool(event.internal_metadata.get("redacted_by")))
