"""Backfill on demand: when a local client pages /messages backwards past the start of our copy of
a room, ask a server in the room for older events (/backfill) and store them as history.

Each backfilled event is checked (format, signatures, content hash) and authorised against its own
auth events (fetched with /event when we lack them; rejected when they do not allow it). It is
stored with the state group before the event that follows it in our copy, on the backwards-counting
`events_backfill` stream: /messages shows it, no sync token covers it, nothing live is woken. The
state before a backfilled event is taken to be the state before the oldest event we held past it,
without undoing the state changes in between (a simplification: see docs/decisions.md).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping

from federation.client import FederationClient, FederationError, quote_segment
from federation.ingest import EventIngestor
from federation.keys import KeyLookup
from federation.remote_state import check_pdus
from homeserver.event_auth import AuthError, check_auth, check_auth_events_selection
from homeserver.clock import Clock
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion, get_room_version
from homeserver.identifiers import split_id
from homeserver.rooms.persister import EventPersister
from storage.stores.events import EventStore, PersistContext

logger = logging.getLogger(__name__)

FEDERATION_V1 = "/_matrix/federation/v1"
MAX_BACKFILL = 100
# Gaps that a server answered with nothing new: not asked about again for this long.
EXHAUSTED_MS = 10 * 60_000


class Backfiller:
    """The history service's `HistoryBackfill`, over federation."""

    def __init__(self, server_name: str, client: FederationClient, keys: KeyLookup, events: EventStore,
                 persister: EventPersister, ingestor: EventIngestor, clock: Clock):
        self._server_name = server_name
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
        return sorted(counts, key=lambda s: (-counts[s], s))

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
        outliers = [e for e in stored.values() if e.internal_metadata.get("outlier") and e.rejected_reason is None
                    and not e.internal_metadata.get("soft_failed")]
        promoted = await self._promote(outliers, new, gaps)
        if not new:
            return promoted
        missing_auth = {a for e in new.values() for a in e.auth_event_ids if a not in new}
        missing_auth -= await self._events.have_events(missing_auth)
        if missing_auth:
            await self._ingestor.fetch_events(origin, room_version, room_id, missing_auth)
        # Newest first: backfilled positions count downwards, so older events get lower ones.
        ordered = sorted(new.values(), key=lambda e: (e.depth, e.event_id), reverse=True)
        groups = self._state_groups(ordered, gaps)
        wanted = {a for e in ordered for a in e.auth_event_ids if a not in new}
        create_id = await self._events.get_current_state_event_id(room_id, "m.room.create", "")
        if create_id is not None:
            wanted.add(create_id)  # v12 events do not list it
        known = await self._events.get_events(wanted)
        for event in sorted(ordered, key=lambda e: (e.depth, e.event_id)):
            self._authorise(event, {**known, **new})
        now = self._clock.time_ms()
        last = None
        for event in ordered:
            group = groups.get(event.event_id)
            if group is None:
                continue  # not reachable from our copy's gaps: its place in history is unknown
            context = PersistContext(state_group=group, backfilled=True, received_ts=now)
            last = self._persister.enqueue(event, context)[0]
        if last is None:
            return promoted
        await last
        return len(ordered) + promoted

    async def _promote(self, outliers: list[Event], new: Mapping[str, Event], gaps: Mapping[str, int | None]) -> int:
        if not outliers:
            return 0
        everything = sorted([*outliers, *new.values()], key=lambda e: (e.depth, e.event_id), reverse=True)
        groups = self._state_groups(everything, gaps)
        items = [(e.event_id, groups[e.event_id]) for e in sorted(outliers, key=lambda e: (e.depth, e.event_id),
                                                                   reverse=True) if e.event_id in groups]
        return await self._events.promote_outliers_to_history(items)

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
