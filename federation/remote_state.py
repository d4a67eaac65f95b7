"""Checking the room state and auth chain another server hands us (send_join, send_knock answers):
each PDU's format, signatures and content hash (pdu_checks), its room, and its authorization
against its own auth events, in auth order. What fails signatures or format is dropped; what
fails authorization is kept as rejected, and never counts as state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from signedjson.types import VerifyKey

from federation.keys import KeyLookup, KeyLookupError
from federation.pdu_checks import PduRejected, check_inbound_pdu
from homeserver.event_auth import AuthError, auth_types_for_event, check_auth, check_auth_events_selection
from homeserver.events.event import Event
from homeserver.events.hashing import compute_event_id
from homeserver.events.room_versions import RoomVersion

logger = logging.getLogger(__name__)

StateMap = dict[tuple[str, str], str]


class RemoteStateError(Exception):
    """The state another server gave us cannot be used (no create event, wrong room...)."""


@dataclass
class CheckedState:
    """The outcome of checking a room's state and auth chain."""

    # Every event kept (accepted or rejected), by ID, in an order where auth events come first.
    events: dict[str, Event]
    # The room's state: (type, state_key) -> event ID, accepted events only.
    state: StateMap
    dropped: dict[str, str] = field(default_factory=dict)  # event ID (or index) -> why it was dropped

    def state_events(self) -> dict[tuple[str, str], Event]:
        return {key: self.events[event_id] for key, event_id in self.state.items()}

    def create_event(self) -> Event | None:
        event_id = self.state.get(("m.room.create", ""))
        return self.events.get(event_id) if event_id else None


class MemoKeys:
    """A key lookup that asks once per key: a key usable at some time is usable at any earlier time
    (validity only ever ends), so the latest time it was found usable answers earlier ones."""

    def __init__(self, keys: KeyLookup, latest_ts: int = 0):
        self._keys = keys
        # The newest time any event of the batch asks about: tried first, so one lookup covers all.
        self._latest_ts = latest_ts
        self._found: dict[tuple[str, str], tuple[VerifyKey, int]] = {}

    async def get_verify_key(self, server_name: str, key_id: str, *, valid_at_ts: int) -> VerifyKey:
        found = self._found.get((server_name, key_id))
        if found is not None and valid_at_ts <= found[1]:
            return found[0]
        if valid_at_ts < self._latest_ts:
            try:
                key = await self._keys.get_verify_key(server_name, key_id, valid_at_ts=self._latest_ts)
                self._found[(server_name, key_id)] = (key, self._latest_ts)
                return key
            except (KeyLookupError, ValueError):
                pass  # not usable that late: ask for the time itself
        key = await self._keys.get_verify_key(server_name, key_id, valid_at_ts=valid_at_ts)
        self._found[(server_name, key_id)] = (key, valid_at_ts)
        return key


def latest_ts(pdus: Iterable[Any]) -> int:
    """The newest integer `origin_server_ts` among the PDUs (0 when none)."""
    newest = 0
    for pdu in pdus:
        ts = pdu.get("origin_server_ts") if isinstance(pdu, dict) else None
        if isinstance(ts, int) and not isinstance(ts, bool) and ts > newest:
            newest = ts
    return newest


async def check_pdus(pdus: Iterable[Any], room_id: str, room_version: RoomVersion, keys: KeyLookup,
                     dropped: dict[str, str], skip: set[str] | None = None) -> dict[str, Event]:
    """Format, signature and hash checks of each PDU; the events that pass, by ID.

    PDUs whose ID is in `skip` (checked already) are left out; the IDs seen are added to it.
    """
    events: dict[str, Event] = {}
    skip = set() if skip is None else skip
    pdus = list(pdus)
    if not isinstance(keys, MemoKeys):
        keys = MemoKeys(keys, latest_ts(pdus))
    for index, pdu in enumerate(pdus):
        if not isinstance(pdu, dict):
            dropped[f"#{index}"] = "not a JSON object"
            continue
        try:
            # The ID is the same before and after a redaction for a bad hash: cheap to dedupe by.
            event_id = compute_event_id(pdu, room_version)
        except Exception:
            event_id = None
        if event_id is not None:
            if event_id in skip:
                continue
            skip.add(event_id)
        try:
            checked = await check_inbound_pdu(pdu, room_version, keys)
        except PduRejected as e:
            dropped[str(pdu.get("event_id", f"#{index}"))] = e.reason
            continue
        if checked.event_id in events:
            continue
        is_v12_create = (room_version.room_id_from_create_event and checked.pdu.get("type") == "m.room.create"
                         and "room_id" not in checked.pdu)
        if is_v12_create and "!" + checked.event_id[1:] != room_id:
            dropped[checked.event_id] = "the create event of another room"
            continue
        if not is_v12_create and checked.pdu.get("room_id") != room_id:
            dropped[checked.event_id] = f"belongs to another room ({checked.pdu.get('room_id')!r})"
            continue
        events[checked.event_id] = Event(checked.pdu, room_version, event_id=checked.event_id)
    return events


def auth_order(events: Mapping[str, Event]) -> list[Event]:
    """The events ordered so each comes after those of its auth events that are among them."""
    ordered: list[Event] = []
    placed: set[str] = set()
    visiting: set[str] = set()
    for start in sorted(events.values(), key=lambda e: (e.depth, e.event_id)):
        stack: list[tuple[Event, bool]] = [(start, False)]
        while stack:
            event, expanded = stack.pop()
            if event.event_id in placed:
                continue
            if expanded:
                visiting.discard(event.event_id)
                placed.add(event.event_id)
                ordered.append(event)
                continue
            if event.event_id in visiting:
                continue  # an auth cycle: the rules will reject whoever comes out wrong
            visiting.add(event.event_id)
            stack.append((event, True))
            for auth_id in event.auth_event_ids:
                auth_event = events.get(auth_id)
                if auth_event is not None and auth_id not in placed:
                    stack.append((auth_event, False))
    return ordered


def authorise_chain(events: Mapping[str, Event], room_version: RoomVersion, known: Mapping[str, Event],
                    create: Event | None) -> list[Event]:
    """Check each event against its auth events (from `events` or `known`), in auth order;
    failures get `rejected_reason`. Returns the events in that order."""
    ordered = auth_order(events)
    for event in ordered:
        auth_events: dict[str, Event] = {}
        for auth_id in event.auth_event_ids:
            auth_event = events.get(auth_id) or known.get(auth_id)
            if auth_event is not None:
                auth_events[auth_id] = auth_event
        try:
            auth_state = check_auth_events_selection(event, auth_events, room_version, create)
            if room_version.room_id_from_create_event and create is not None:
                auth_state.setdefault(("m.room.create", ""), create)
            check_auth(event, auth_state, room_version)
        except AuthError as e:
            event.rejected_reason = f"auth: {e}"
    return ordered


async def check_room_state(state_pdus: Any, auth_chain_pdus: Any, room_id: str, room_version: RoomVersion,
                           keys: KeyLookup, known: Mapping[str, Event] | None = None) -> CheckedState:
    """Check a room's state and its auth chain as another server sent them.

    `known` are events we already hold (their checks were done when we stored them).
    RemoteStateError when no usable create event of this room version is among them.
    """
    if not isinstance(state_pdus, list) or not isinstance(auth_chain_pdus, list):
        raise RemoteStateError("state and auth_chain must be lists of events")
    known = known or {}
    dropped: dict[str, str] = {}
    keys = MemoKeys(keys, latest_ts([*state_pdus, *auth_chain_pdus]))
    seen: set[str] = set()
    state_events = await check_pdus(state_pdus, room_id, room_version, keys, dropped, seen)
    chain = await check_pdus(auth_chain_pdus, room_id, room_version, keys, dropped, seen)
    everything = {**chain, **state_events}
    creates = [e for e in everything.values() if e.type == "m.room.create" and e.state_key == ""]
    if len(creates) != 1:
        raise RemoteStateError(f"expected one m.room.create event, got {len(creates)}")
    create = creates[0]
    declared = create.content.get("room_version", "1")
    if declared != room_version.identifier:
        raise RemoteStateError(f"the create event says room version {declared!r}, "
                               f"not {room_version.identifier!r}")
    ordered = authorise_chain(everything, room_version, known, create)
    if create.rejected_reason is not None:
        raise RemoteStateError(f"the m.room.create event is invalid: {create.rejected_reason}")
    state: StateMap = {}
    for event in state_events.values():
        if not event.is_state():
            dropped[event.event_id] = "not a state event"
            continue
        if event.rejected_reason is not None:
            continue
        key = event.state_tuple()
        current = state.get(key)
        # Two events for one key: keep the later one, as a deterministic choice.
        if current is None or (state_events[current].depth, current) < (event.depth, event.event_id):
            state[key] = event.event_id
    if ("m.room.create", "") not in state:
        state[("m.room.create", "")] = create.event_id
    if dropped:
        logger.warning("dropped %d events of the state of %s: %s", len(dropped), room_id,
                       "; ".join(f"{k}: {v}" for k, v in list(dropped.items())[:5]))
    return CheckedState({e.event_id: e for e in ordered}, state, dropped)


def auth_state_for(event: Event, state: Mapping[tuple[str, str], Event], room_version: RoomVersion
                   ) -> dict[tuple[str, str], Event]:
    """The part of `state` the event's authorization may consult (plus the create event)."""
    wanted = set(auth_types_for_event(event, room_version)) | {("m.room.create", "")}
    return {key: state[key] for key in wanted if key in state}
