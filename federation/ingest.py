"""Taking events from other servers into our rooms: the checks on receipt of a PDU, in the spec's
order, and the one persist path (homeserver/rooms/persister.py) to store them.

API (used by `/send`, the membership endpoints and the joining side):

`EventIngestor(server_name, events, heads, persister, keys, client, clock)`

- `await ingestor.persist_outliers(room_version, pdus) -> list[Event]`
  Store events whose place in the DAG we do not know (auth chains, state fetched from a remote, the
  state of a room we join): each is checked for format, signatures and content hash (redacted on a
  mismatch; dropped when the format or a signature is bad), ordered so that its auth events come
  first, and authorised against its own auth events (stored rejected when that fails; left out
  when an auth event is neither in `pdus` nor stored). Events already stored are returned as
  stored. Returns the events in auth order. The room is recorded (`rooms`) if new.
- `await ingestor.receive_pdu(origin, pdu) -> str | None`
  The `/send` path for one PDU of a room we are in: checks 1-3 (format, signatures, hash), fills
  gaps with `get_missing_events` from `origin` (bounded), fetches the state at prev events we
  lack (`/state_ids` + `/event`), authorises against the auth events (reject), the state before
  the event (reject) and the current state (soft-fail), resolves forks, and persists. Returns
  None when the event was accepted (or soft-failed, or already held) and an error string for the
  transaction's per-PDU result otherwise. PDUs of one room are taken one at a time.
- `await ingestor.persist_checked(event, *, origin) -> str | None`
  As `receive_pdu` for an event the caller already checked (1-3) and built, e.g. a join arriving
  through `send_join`: the auth stages and persisting, without filling gaps from `origin` beyond
  what the state of its prev events needs.
- `await ingestor.persist_out_of_band_membership(event) -> Event`
  Store an already checked invite (or knock, or invite rejection) of a local user in a room we are
  not in, as an outlier that becomes that user's current membership (so /sync lists it).
- `ingestor.room_lock(room_id)`: the lock remote events of a room are taken under, fetching
  included, so they are taken one at a time. The step that checks against current state and
  hands the event to the persister also holds the room's RoomHeads lock (the one local sends
  build under), so local and remote events never race; fetches never hold that lock.
- Also: `is_participating(room_id)`, `room_version_of(room_id)`, `fetch_events(origin,
  room_version, room_id, event_ids)` (fetch what we lack with `/event`, auth chains included, and
  store it as outliers), `ingestor.heads`.

Every event is handed to the persister under the room's RoomHeads lock; once committed, the
cached head is forgotten, so the next local event builds on the remote one.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from federation.client import FederationClient, FederationError, quote_segment
from federation.keys import KeyLookup
from federation.pdu_checks import PduRejected, check_inbound_pdu
from homeserver.clock import Clock
from homeserver.event_auth import AuthError, auth_types_for_event, check_auth, check_auth_events_selection
from homeserver.event_auth.constants import CREATE_KEY
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion, UnsupportedRoomVersion, get_room_version
from homeserver.rooms.heads import RoomHeads, StoredEventGraph
from homeserver.rooms.persister import EventPersister, redaction_applies
from homeserver.state import resolve_state
from homeserver.state.store import auth_event_ids
from storage.stores.events import EventStore, PersistContext, StateMap
from storage.stores.partial_state import PartialStateStore

logger = logging.getLogger(__name__)

FEDERATION_V1 = "/_matrix/federation/v1"
# Events asked for with one /get_missing_events, as Synapse does.
MISSING_EVENTS_LIMIT = 10
# At most this many events fetched one by one (/event) to complete one PDU's state or auth chain.
MAX_FETCHED_EVENTS = 1000
# Concurrent /event requests to one server.
FETCH_CONCURRENCY = 10


class _MissingState(Exception):
    """The state before an event cannot be worked out (a prev event's state could not be fetched)."""


class EventIngestor:
    def __init__(self, server_name: str, events: EventStore, heads: RoomHeads, persister: EventPersister,
                 keys: KeyLookup, client: FederationClient, clock: Clock, *,
                 partial_state: PartialStateStore | None = None):
        self._server_name = server_name
        self._partial_state = partial_state
        self._events = events
        self._heads = heads
        self.heads = heads
        self._persister = persister
        self._keys = keys
        self._client = client
        self._clock = clock
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._graph = StoredEventGraph(events)

    def room_lock(self, room_id: str) -> asyncio.Lock:
        """Held while a remote event of the room is checked (fetching included) and persisted."""
        lock = self._locks.get(room_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[room_id] = lock
        return lock

    # --- which rooms ---------------------------------------------------------------------------
    async def is_participating(self, room_id: str) -> bool:
        """Whether a local user is joined to the room (so its events are ours to take)."""
        members = await self._events.get_members(room_id, ("join",))
        return any(m.endswith(":" + self._server_name) for m in members)

    async def room_version_of(self, room_id: str) -> RoomVersion | None:
        identifier = await self._events.get_room_version_id(room_id)
        if identifier is None:
            return None
        try:
            return get_room_version(identifier)
        except UnsupportedRoomVersion:
            return None

    # --- outliers ------------------------------------------------------------------------------
    async def persist_outliers(self, room_version: RoomVersion, pdus: Iterable[Any]) -> list[Event]:
        """Check and store events as outliers, auth events first; see the module docstring."""
        checked: dict[str, Event] = {}
        for pdu in pdus:
            try:
                result = await check_inbound_pdu(pdu, room_version, self._keys)
            except PduRejected as e:
                logger.info("dropping a fetched event: %s", e.reason)
                continue
            checked.setdefault(result.event_id, Event(result.pdu, room_version, event_id=result.event_id))
        if not checked:
            return []
        stored = await self._events.get_events(checked)
        known: dict[str, Event] = dict(stored)
        ordered = _auth_order(checked)
        to_persist: list[Event] = []
        out: list[Event] = []
        now = self._clock.time_ms()
        for event in ordered:
            if event.event_id in stored:
                out.append(stored[event.event_id])
                continue
            wanted = [a for a in auth_event_ids(event) if a not in known]
            if wanted:
                known.update(await self._events.get_events(wanted))
            missing = [a for a in auth_event_ids(event) if a not in known]
            if missing:
                logger.info("not storing %s: auth events %s unknown", event.event_id, missing)
                continue
            try:
                _check_against_auth_events(event, known)
            except AuthError as e:
                event.rejected_reason = f"auth events: {e}"
            known[event.event_id] = event
            to_persist.append(event)
            out.append(event)
        for room_id in {e.room_id for e in to_persist}:
            create = next((e for e in to_persist if e.room_id == room_id and e.type == "m.room.create"), None)
            await self._events.ensure_room(room_id, room_version.identifier,
                                           create.sender if create is not None else None, now)
        pending = [self._persister.enqueue(e, PersistContext(state_group=None, outlier=True, received_ts=now))
                   for e in to_persist]
        if pending:
            await asyncio.gather(*(committed for committed, _ in pending))
        return out

    async def persist_out_of_band_membership(self, event: Event) -> Event:
        """Store a checked membership event of a local user in a room we are not in; see the docstring."""
        existing = await self._events.get_event(event.event_id)
        if existing is not None:
            return existing
        now = self._clock.time_ms()
        await self._events.ensure_room(event.room_id, event.room_version.identifier, None, now)
        async with self._heads.lock(event.room_id):
            committed, published = self._persister.enqueue(
                event, PersistContext(state_group=None, outlier=True, out_of_band_membership=True, received_ts=now))
            await committed
        await published
        return event

    async def fetch_events(self, origin: str, room_version: RoomVersion, room_id: str,
                           event_ids: Iterable[str]) -> None:
        """Make sure the events (and their auth chains) are stored: fetch what we lack from `origin`."""
        wanted = set(event_ids)
        missing = wanted - await self._events.have_events(wanted)
        fetched: dict[str, Any] = {}
        semaphore = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def fetch_one(event_id: str) -> None:
            async with semaphore:
                try:
                    answer = await self._client.get_json(origin, f"{FEDERATION_V1}/event/{quote_segment(event_id)}")
                except FederationError as e:
                    logger.info("could not fetch %s from %s: %s", event_id, origin, e)
                    return
            pdus = answer.get("pdus") if isinstance(answer, dict) else None
            if isinstance(pdus, list) and pdus and isinstance(pdus[0], dict):
                fetched[event_id] = pdus[0]

        asked: set[str] = set()
        while missing and len(asked) < MAX_FETCHED_EVENTS:
            batch = sorted(missing - asked)[:MAX_FETCHED_EVENTS - len(asked)]
            if not batch:
                break
            asked.update(batch)
            await asyncio.gather(*(fetch_one(e) for e in batch))
            referenced: set[str] = set()
            for event_id in batch:
                pdu = fetched.get(event_id)
                if pdu is None:
                    continue
                try:
                    referenced.update(auth_event_ids(Event(pdu, room_version)))
                except (TypeError, ValueError, AttributeError, KeyError):
                    continue
            referenced -= asked
            missing = referenced - await self._events.have_events(referenced) if referenced else set()
        if fetched:
            await self.persist_outliers(room_version, [p for p in fetched.values() if _room_of(p, room_version) == room_id])

    # --- live events (/send) -------------------------------------------------------------------
    async def receive_pdu(self, origin: str, pdu: Any) -> str | None:
        """Take one PDU of a `/send` transaction; None when accepted, else the error to report."""
        if not isinstance(pdu, dict):
            return "PDU is not a JSON object"
        room_id = pdu.get("room_id")
        if not isinstance(room_id, str):
            return "room_id: missing or not a string"
        room_version = await self.room_version_of(room_id)
        if room_version is None or not await self.is_participating(room_id):
            return f"this server is not in room {room_id}"
        async with self.room_lock(room_id):
            return await self._receive(origin, room_version, pdu, fill_gaps=True)

    async def persist_checked(self, event: Event, *, origin: str) -> str | None:
        """Authorise and persist an event already through checks 1-3; see the module docstring."""
        async with self.room_lock(event.room_id):
            if await self._events.have_events([event.event_id]):
                return None
            return await self._take(origin, event)

    async def _receive(self, origin: str, room_version: RoomVersion, pdu: Any, *, fill_gaps: bool) -> str | None:
        try:
            checked = await check_inbound_pdu(pdu, room_version, self._keys)
        except PduRejected as e:
            return e.reason
        event = Event(checked.pdu, room_version, event_id=checked.event_id)
        held = await self._events.get_event(event.event_id)
        if held is not None and not self._takes_its_place(held):
            return None
        if fill_gaps:
            await self._fill_gaps(origin, room_version, event)
        return await self._take(origin, event, replaces_outlier=held is not None)

    def _in_dag(self, held: Event) -> bool:
        return not held.internal_metadata.get("outlier") or not self._takes_its_place(held)

    def _takes_its_place(self, held: Event) -> bool:
        """Whether a held event arriving again in the DAG is stored anew: a plain outlier (an auth
        event fetched for another, state from our join), not a rejected, soft-failed or out-of-band
        one (a local user's invite, knock or rejection, which is that user's membership)."""
        metadata = held.internal_metadata
        if not metadata.get("outlier") or metadata.get("soft_failed") or held.rejected_reason is not None:
            return False
        return not (held.type == "m.room.member" and (held.state_key or "").endswith(":" + self._server_name))

    async def _fill_gaps(self, origin: str, room_version: RoomVersion, event: Event) -> None:
        prevs = set(event.prev_event_ids)
        # Prev events held only as outliers are gaps too: fetched again, they take their place.
        in_dag = {e for e, held in (await self._events.get_events(prevs)).items() if self._in_dag(held)}
        if not prevs or not (prevs - in_dag):
            return
        room_id = event.room_id
        earliest = await self._events.get_forward_extremities(room_id)
        body = {"earliest_events": earliest, "latest_events": [event.event_id], "limit": MISSING_EVENTS_LIMIT,
                "min_depth": 0}
        try:
            answer = await self._client.post_json(
                origin, f"{FEDERATION_V1}/get_missing_events/{quote_segment(room_id)}", body)
        except FederationError as e:
            logger.info("get_missing_events for %s from %s failed: %s", event.event_id, origin, e)
            return
        found = answer.get("events") if isinstance(answer, dict) else None
        if not isinstance(found, list):
            return
        pdus = [p for p in found if isinstance(p, dict) and p.get("room_id") == room_id]
        pdus.sort(key=lambda p: p.get("depth") if isinstance(p.get("depth"), int) else 0)
        for missing_pdu in pdus:
            error = await self._receive(origin, room_version, missing_pdu, fill_gaps=False)
            if error is not None:
                logger.info("a missing event of %s from %s was not taken: %s", room_id, origin, error)

    async def _take(self, origin: str, event: Event, *, replaces_outlier: bool = False) -> str | None:
        room_version = event.room_version
        room_id = event.room_id
        # The auth events must be stored (as outliers if need be) before anything else.
        auth_ids = auth_event_ids(event)
        if auth_ids:
            await self.fetch_events(origin, room_version, room_id, auth_ids)
        try:
            state_before, base_group, base_state = await self._state_before(origin, event)
        except _MissingState as e:
            return str(e)
        rejected: str | None = None
        auth_events = await self._events.get_events(auth_ids)
        try:
            _check_against_auth_events(event, auth_events)
        except AuthError as e:
            rejected = f"not allowed by its auth events: {e}"
        # In a room joined with partial state, the state before the event (and current state) may
        # lack the very members its authorization consults: it is checked against its own auth
        # events only, and never soft-failed, until the full state is in (as Synapse does).
        partial = self._partial_state is not None and await self._partial_state.is_partial(room_id)
        if rejected is None and not partial:
            try:
                check_auth(event, await self._auth_state(state_before, event), room_version)
            except AuthError as e:
                rejected = f"not allowed by the state before it: {e}"
        state_after = dict(state_before)
        if rejected is None and event.is_state():
            state_after[event.state_tuple()] = event.event_id
        if event.is_state() and event.state_tuple() in state_before:
            event.internal_metadata["replaces_state"] = state_before[event.state_tuple()]
        if base_group is not None and state_before == base_state:
            group_before = base_group
        else:
            group_before = await self._events.store_state_group(room_id, state_before, base_group)
        if state_after == state_before:
            context = PersistContext(state_group=group_before)
        else:
            context = PersistContext(state_group=None, new_group_prev=group_before,
                                     new_group_delta={event.state_tuple(): event.event_id})
        context.received_ts = self._clock.time_ms()
        context.replaces_outlier = replaces_outlier
        async with self._heads.lock(room_id):
            if await self._events.get_forward_extremities(room_id):
                head = await self._heads.load(room_id, room_version)
                current, head_extremities = head.state, head.extremities
            else:
                # A room we are only now joining: no current state to check against yet.
                current, head_extremities = {}, []
            if rejected is not None:
                event.rejected_reason = rejected
            else:
                try:
                    if current and not partial:
                        check_auth(event, await self._auth_state(current, event), room_version)
                    soft_failed = False
                except AuthError as e:
                    logger.info("soft-failing %s: not allowed by the current state: %s", event.event_id, e)
                    soft_failed = True
                if soft_failed:
                    context.soft_failed = True
                else:
                    await self._advance_room(event, context, head_extremities, current, state_after)
                    if event.redacts is not None:
                        context.applies_redaction = await redaction_applies(self._events, event, state_before)
            committed, published = self._persister.enqueue(event, context)
            try:
                await committed
            finally:
                # The room's events changed behind the cached head: the next local event reloads it.
                self._heads.forget(room_id)
        await published
        return f"rejected: {rejected}" if rejected is not None else None

    async def _advance_room(self, event: Event, context: PersistContext, head_extremities: Sequence[str],
                            current: StateMap, state_after: StateMap) -> None:
        """Fill in the extremities the event replaces and the change to current state (forks resolved)."""
        extremities = set(await self._events.get_forward_extremities(event.room_id)) | set(head_extremities)
        prevs = set(event.prev_event_ids)
        context.replaces_extremities = sorted(extremities & prevs)
        if extremities - prevs:
            new_current = await resolve_state(event.room_version, [current, state_after],
                                              StoredEventGraph(self._events, {event.event_id: event}))
        else:
            new_current = state_after
        delta = {k: v for k, v in new_current.items() if current.get(k) != v}
        if delta:
            context.current_state_delta = delta
            members = await self._events.get_events([v for (t, _), v in delta.items()
                                                     if t == "m.room.member" and v != event.event_id])
            memberships: dict[str, str | None] = {}
            for (event_type, _), event_id in delta.items():
                if event_type != "m.room.member":
                    continue
                member = event if event_id == event.event_id else members.get(event_id)
                memberships[event_id] = member.membership if member is not None else None
            context.memberships = memberships

    async def _state_before(self, origin: str, event: Event) -> tuple[StateMap, int | None, StateMap]:
        """(state before the event, a state group to build its group on, that group's state)."""
        prevs = event.prev_event_ids
        groups = await self._events.get_state_groups_for_events(prevs)
        state_sets: list[StateMap] = []
        base_group: int | None = None
        base_state: StateMap = {}
        for prev in prevs:
            group = groups.get(prev)
            if group is not None:
                state = await self._events.get_state_for_group(group)
                if base_group is None:
                    base_group, base_state = group, state
            else:
                state = await self._fetch_state_after(origin, event, prev)
            state_sets.append(state)
        if not state_sets:
            if event.type == "m.room.create":
                return {}, None, {}
            raise _MissingState("the event has no prev_events")
        if len(state_sets) == 1:
            return dict(state_sets[0]), base_group, base_state
        resolved = await resolve_state(event.room_version, state_sets, self._graph)
        return resolved, base_group, base_state

    async def _fetch_state_after(self, origin: str, event: Event, prev_id: str) -> StateMap:
        """The state after a prev event we hold no state for, asked of `origin` (/state_ids + /event)."""
        room_id = event.room_id
        try:
            answer = await self._client.get_json(origin, f"{FEDERATION_V1}/state_ids/{quote_segment(room_id)}",
                                                 {"event_id": prev_id})
        except FederationError as e:
            raise _MissingState(f"could not get the state at prev event {prev_id}: {e}") from None
        pdu_ids = answer.get("pdu_ids") if isinstance(answer, dict) else None
        chain_ids = answer.get("auth_chain_ids") if isinstance(answer, dict) else None
        if not isinstance(pdu_ids, list) or not all(isinstance(e, str) for e in pdu_ids):
            raise _MissingState(f"the state at prev event {prev_id} from {origin} is malformed")
        chain = [e for e in chain_ids if isinstance(e, str)] if isinstance(chain_ids, list) else []
        await self.fetch_events(origin, event.room_version, room_id, {*pdu_ids, *chain, prev_id})
        loaded = await self._events.get_events([*pdu_ids, prev_id])
        missing = [e for e in pdu_ids if e not in loaded]
        if missing:
            raise _MissingState(f"could not fetch the state events {missing[:5]} at prev event {prev_id}")
        state: StateMap = {}
        for event_id in pdu_ids:
            state_event = loaded[event_id]
            if state_event.is_state() and state_event.room_id == room_id and state_event.rejected_reason is None:
                state[state_event.state_tuple()] = event_id
        prev = loaded.get(prev_id)
        if prev is not None and prev.is_state() and prev.rejected_reason is None:
            state[prev.state_tuple()] = prev_id
        return state

    async def fetch_state_after(self, origin: str, event: Event, prev_id: str) -> StateMap | None:
        """The state after `prev_id` (a prev event of `event` we hold no state for), asked of `origin`
        with /state_ids (the events we lack fetched with /event); None when it cannot be had."""
        try:
            return await self._fetch_state_after(origin, event, prev_id)
        except _MissingState as e:
            logger.info("no state for %s: %s", event.event_id, e)
            return None

    async def auth_state(self, state: StateMap, event: Event, known: Mapping[str, Event] | None = None
                         ) -> dict[tuple[str, str], Event]:
        """The events of `state` the auth rules consult for `event`, from `known` or the store."""
        return await self._auth_state(state, event, known)

    async def _auth_state(self, state: StateMap, event: Event, known: Mapping[str, Event] | None = None
                          ) -> dict[tuple[str, str], Event]:
        """The events of `state` the auth rules consult for `event` (the create event always)."""
        keys = set(auth_types_for_event(event, event.room_version)) | {CREATE_KEY}
        if event.room_version.room_id_from_create_event:
            create_id = "$" + event.room_id[1:]
            keys.discard(CREATE_KEY)
        else:
            create_id = None
        ids = {k: state[k] for k in keys if k in state}
        wanted = [*ids.values(), *([create_id] if create_id else [])]
        given = {e: known[e] for e in wanted if known is not None and e in known}
        loaded = {**await self._events.get_events([e for e in wanted if e not in given]), **given}
        out = {k: loaded[v] for k, v in ids.items() if v in loaded}
        if create_id is not None and create_id in loaded:
            out[CREATE_KEY] = loaded[create_id]
        return out


def _room_of(pdu: Any, room_version: RoomVersion) -> str | None:
    try:
        return Event(pdu, room_version).room_id
    except (TypeError, ValueError, KeyError, AttributeError):
        return None


def _check_against_auth_events(event: Event, known: Mapping[str, Event]) -> None:
    """AuthError unless the event is allowed by its own auth events (all of which are in `known`)."""
    room_version = event.room_version
    create = None
    if room_version.room_id_from_create_event and event.type != "m.room.create":
        create = known.get("$" + event.room_id[1:])
        if create is None:
            raise AuthError("the room's m.room.create event is unknown")
    auth_events = {a: known[a] for a in event.auth_event_ids if a in known}
    auth_state = check_auth_events_selection(event, auth_events, room_version, create)
    if create is not None:
        auth_state = {**auth_state, CREATE_KEY: create}
    check_auth(event, auth_state, room_version)


def _auth_order(events: Mapping[str, Event]) -> list[Event]:
    """The events with each one after those of its auth events that are among them (depth-first)."""
    out: list[Event] = []
    done: set[str] = set()
    entered: set[str] = set()  # a cycle of auth events (only a malicious server makes one) is cut
    for start in sorted(events.values(), key=lambda e: (e.depth, e.event_id)):
        stack: list[tuple[Event, bool]] = [(start, False)]
        while stack:
            event, expanded = stack.pop()
            if expanded:
                done.add(event.event_id)
                out.append(event)
                continue
            if event.event_id in entered:
                continue
            entered.add(event.event_id)
            stack.append((event, True))
            for auth_id in auth_event_ids(event):
                auth = events.get(auth_id)
                if auth is not None and auth_id not in entered:
                    stack.append((auth, False))
    return out
