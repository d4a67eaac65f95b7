"""Backfill on demand: when a local client pages /messages backwards past the start of our copy of
a room, ask a server in the room for older events (/backfill) and store them as history.

Each backfilled event is checked (format, signatures, content hash) and authorised against its own
auth events (fetched with /event when we lack them; rejected when they do not allow it). The state
before it is worked out as for any event: from its prev events (resolved when they differ), the
state after a prev event outside the batch being the state we hold for it or else what the sending
server's `/state_ids` gives (the events we lack fetched with /event); the event is then authorised
against that state (rejected when it does not allow it) and stored with it, so /messages applies
history visibility as it was at the time. Backfilled events go on the backwards-counting
`events_backfill` stream: /messages shows them, no sync token covers them, nothing live is woken."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from federation.client import FederationClient, FederationError, quote_segment
from federation.ingest import EventIngestor
from federation.keys import KeyLookup
from federation.remote_state import check_pdus
from homeserver.clock import Clock
from homeserver.event_auth import AuthError, check_auth, check_auth_events_selection
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion, get_room_version
from homeserver.identifiers import split_id
from homeserver.rooms.heads import StoredEventGraph
from homeserver.rooms.persister import EventPersister
from homeserver.state import resolve_state
from storage.stores.events import EventStore, PersistContext, StateMap
from storage.stores.partial_state import PartialStateStore

logger = logging.getLogger(__name__)

FEDERATION_V1 = "/_matrix/federation/v1"
MAX_BACKFILL = 100
# Gaps that a server answered with nothing new: not asked about again for this long.
EXHAUSTED_MS = 10 * 60_000


@dataclass
class _StateAfter:
    """The state after an event: its map, a group holding exactly it (if any), a group to write a
    new one as a delta from (if any)."""
    state: StateMap
    group: int | None
    base: int | None


@dataclass
class _Placing:
    group_before: int
    changes_state: bool
    state_after: _StateAfter
    group_after: int = 0


class Backfiller:
    """The history service's `HistoryBackfill`, over federation."""

    def __init__(self, server_name: str, client: FederationClient, keys: KeyLookup, events: EventStore,
                 persister: EventPersister, ingestor: EventIngestor, clock: Clock, *,
                 partial_state: PartialStateStore | None = None):
        self._server_name = server_name
        # A room joined with partial state knows few members yet: the join answer's servers_in_room
        # (the server joined through first) are asked as well.
        self._partial_state = partial_state
        self._client = client
        self._keys = keys
        self._events = events
        self._persister = persister
        self._ingestor = ingestor
        self._clock = clock
        self._exhausted: OrderedDict[tuple[str, str], int] = OrderedDict()

    async def _servers_in_room(self, room_id: str) -> list[str]:
        """Other servers with joined members, most members first."""
        counts: dict[str, int] = {}
        for member in await self._events.get_members(room_id, ("join",)):
            try:
                server = split_id(member, "@")[1]
            except ValueError:
                continue
            if server != self._server_name:
                counts[server] = counts.get(server, 0) + 1
        ordered = sorted(counts, key=lambda s: (-counts[s], s))
        partial = await self._partial_state.get_room(room_id) if self._partial_state is not None else None
        if partial is not None:
            ordered = [s for s in dict.fromkeys([partial.joined_via, *partial.servers_in_room, *ordered])
                       if s != self._server_name]
        return ordered

    async def backfill(self, room_id: str, limit: int) -> bool:
        version_id = await self._events.get_room_version_id(room_id)
        if version_id is None:
            return False
        now = self._clock.time_ms()
        gaps = {prev: group for prev, group in (await self._events.get_backward_extremities(room_id)).items()
                if now - self._exhausted.get((room_id, prev), -EXHAUSTED_MS) >= EXHAUSTED_MS}
        if not gaps:
            return False
        servers = await self._servers_in_room(room_id)
        if not servers:
            return False
        room_version = get_room_version(version_id)
        for server in servers:
            try:
                answer = await self._client.get_json(
                    server, f"{FEDERATION_V1}/backfill/{quote_segment(room_id)}",
                    {"v": sorted(gaps), "limit": max(1, min(limit, MAX_BACKFILL))})
            except FederationError as e:
                logger.info("backfill of %s from %s failed: %s", room_id, server, e)
                continue
            pdus = answer.get("pdus") if isinstance(answer, dict) else None
            if not isinstance(pdus, list):
                continue
            async with self._ingestor.room_lock(room_id):
                stored = await self._store(server, room_id, room_version, pdus, gaps)
            if stored:
                return True
            for prev in gaps:
                self._exhausted[(room_id, prev)] = now
            while len(self._exhausted) > 10_000:
                self._exhausted.popitem(last=False)
            return False
        return False

    async def _store(self, origin: str, room_id: str, room_version: RoomVersion, pdus: list,
                     gaps: Mapping[str, int | None]) -> int:
        dropped: dict[str, str] = {}
        checked = await check_pdus(pdus[:MAX_BACKFILL], room_id, room_version, self._keys, dropped)
        if dropped:
            logger.info("backfill from %s: dropped %d events: %s", origin, len(dropped),
                        "; ".join(f"{k}: {v}" for k, v in list(dropped.items())[:3]))
        held = await self._events.have_events(checked)
        new = {event_id: event for event_id, event in checked.items() if event_id not in held}
        # Events held only as outliers (the room's state from our join) take their place in history.
        stored = await self._events.get_events(held)
        outliers = {e.event_id: e for e in stored.values() if e.internal_metadata.get("outlier")
                    and e.rejected_reason is None and not e.internal_metadata.get("soft_failed")}
        if not new and not outliers:
            return 0
        missing_auth = {a for e in new.values() for a in e.auth_event_ids if a not in new}
        missing_auth -= await self._events.have_events(missing_auth)
        if missing_auth:
            await self._ingestor.fetch_events(origin, room_version, room_id, missing_auth)
        batch = {**outliers, **new}
        # The events with a known place in our history (reachable from its gaps), newest first:
        # backfilled positions count downwards, so older events get lower ones.
        placed = self._state_groups(sorted(batch.values(), key=lambda e: (e.depth, e.event_id), reverse=True), gaps)
        wanted = {a for e in new.values() for a in e.auth_event_ids if a not in batch}
        create_id = await self._events.get_current_state_event_id(room_id, "m.room.create", "")
        if create_id is not None:
            wanted.add(create_id)  # v12 events do not list it
        known = {**await self._events.get_events(wanted), **batch}
        for event in sorted(new.values(), key=lambda e: (e.depth, e.event_id)):
            self._authorise(event, known)
        states = await self._states(origin, room_id, room_version, batch, placed, set(new), known)
        promoted = await self._events.promote_outliers_to_history(
            [(event_id, states[event_id].group_after) for event_id in placed if event_id in outliers])
        now = self._clock.time_ms()
        last = None
        for event_id in placed:
            if event_id not in new:
                continue
            event, placing = new[event_id], states[event_id]
            if placing.changes_state:
                context = PersistContext(state_group=None, new_group_prev=placing.group_before,
                                         new_group_delta={event.state_tuple(): event.event_id})
            else:
                context = PersistContext(state_group=placing.group_before)
            context.backfilled = True
            context.received_ts = now
            last = self._persister.enqueue(event, context)[0]
        if last is None:
            return promoted
        await last
        return sum(1 for event_id in placed if event_id in new) + promoted

    async def _states(self, origin: str, room_id: str, room_version: RoomVersion, batch: Mapping[str, Event],
                      placed: Mapping[str, int], new: set[str], known: Mapping[str, Event]) -> dict[str, _Placing]:
        """The state before each placed event of the batch, oldest first, as the spec has it: from
        its prev events, resolved when they differ; for a prev event outside the batch, the state we
        hold after it, or else the state the server that sent the batch gives for it (/state_ids,
        the events we lack fetched with /event), or failing that the state of the gap's next event.
        New events the state before them does not allow are rejected (not in a room of which we
        hold only partial state: there they are checked against their auth events only, as live
        events are)."""
        partial = self._partial_state is not None and await self._partial_state.is_partial(room_id)
        outside = sorted({p for e in batch.values() for p in e.prev_event_ids if p not in batch})
        held_groups = await self._events.get_state_groups_for_events(outside)
        fetched: dict[str, StateMap | None] = {}
        graph = StoredEventGraph(self._events, batch)
        after: dict[str, _StateAfter] = {}
        out: dict[str, _Placing] = {}
        for event in sorted((batch[e] for e in placed), key=lambda e: (e.depth, e.event_id)):
            sets: list[_StateAfter] = []
            for prev in event.prev_event_ids:
                if prev in after:
                    sets.append(after[prev])
                elif prev in held_groups:
                    group = held_groups[prev]
                    sets.append(_StateAfter(await self._events.get_state_for_group(group), group, group))
                else:
                    # In a room of which we hold only partial state, as Synapse does, the state is
                    # not asked for (it would bring every member of a large room): the event gets
                    # the state of the gap's next event, which gains the missing state with the room.
                    if prev not in fetched:
                        fetched[prev] = None if partial else await self._ingestor.fetch_state_after(origin, event, prev)
                    state = fetched[prev]
                    if state is None:
                        group = placed[event.event_id]
                        sets.append(_StateAfter(await self._events.get_state_for_group(group), group, group))
                    else:
                        sets.append(_StateAfter(state, None, None))
            if not sets:
                before: StateMap = {}
            elif len(sets) == 1:
                before = sets[0].state
            else:
                before = await resolve_state(room_version, [s.state for s in sets], graph)
            group = next((s.group for s in sets if s.group is not None and s.state == before), None)
            if group is None:
                base = next((s.base for s in sets if s.base is not None), None)
                group = await self._events.store_state_group(room_id, before, base)
            if event.event_id in new and event.rejected_reason is None and not partial:
                try:
                    check_auth(event, await self._ingestor.auth_state(before, event, known), room_version)
                except AuthError as e:
                    event.rejected_reason = f"not allowed by the state before it: {e}"
            changes_state = event.is_state() and event.rejected_reason is None
            if changes_state:
                after[event.event_id] = _StateAfter({**before, event.state_tuple(): event.event_id}, None, group)
            else:
                after[event.event_id] = _StateAfter(before, group, group)
            out[event.event_id] = _Placing(group, changes_state, after[event.event_id])
        # Outliers promoted into history need a group holding the state after them.
        for event_id, placing in out.items():
            if placing.state_after.group is None and event_id not in new:
                placing.state_after.group = await self._events.store_state_group(
                    room_id, placing.state_after.state, placing.group_before)
            placing.group_after = placing.state_after.group or placing.group_before
        return out

    @staticmethod
    def _state_groups(newest_first: list[Event], gaps: Mapping[str, int | None]) -> dict[str, int]:
        """The state group for each backfilled event: that of the event following it in our copy."""
        groups: dict[str, int] = {e: g for e, g in gaps.items() if g is not None}
        out: dict[str, int] = {}
        for event in newest_first:
            group = groups.get(event.event_id)
            if group is None:
                continue
            out[event.event_id] = group
            for prev in event.prev_event_ids:
                groups.setdefault(prev, group)
        return out

    @staticmethod
    def _authorise(event: Event, known: Mapping[str, Event]) -> None:
        auth_events = {a: known[a] for a in event.auth_event_ids if a in known}
        create = next((e for e in known.values() if e.type == "m.room.create" and e.state_key == ""), None)
        try:
            auth_state = check_auth_events_selection(event, auth_events, event.room_version, create)
            if event.room_version.room_id_from_create_event and create is not None:
                auth_state.setdefault(("m.room.create", ""), create)
            check_auth(event, auth_state, event.room_version)
        except AuthError as e:
            event.rejected_reason = f"auth: {e}"
