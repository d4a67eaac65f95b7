"""Creating, authorising and persisting local room events.

Events of one room are built and persisted one at a time under that room's lock, so
each new event's prev_events are the room's current forward extremities and its
state is known before the commit. An event is acknowledged (its ID returned) only
after its transaction has committed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from signedjson.key import SigningKey

from homeserver.auth import AuthError, auth_types_for_event, check_auth
from homeserver.clock import Clock
from homeserver.errors import MatrixError
from homeserver.events.builder import MAX_DEPTH, build_event
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion, UnsupportedRoomVersion, get_room_version
from homeserver.events.validation import EventValidationError, validate_pdu
from homeserver.rooms.transactions import client_txn_id
from homeserver.state import EventGraphStore, resolve_state
from homeserver.sync.notifier import Notifier
from storage.stores.events import EventStore, PersistContext, StateMap

logger = logging.getLogger(__name__)

# At most this many prev_events per new event, as Synapse does.
MAX_PREV_EVENTS = 10

PersistedCallback = Callable[[Event, PersistContext], Awaitable[None]]
# (room_id, sender, event_type, content, state_key) -> None, or raises MatrixError to refuse the send.
SendCheck = Callable[[str, str, str, Mapping[str, Any], str | None], Awaitable[None]]


@dataclass
class RoomHead:
    """What the next event of a room builds on; valid while the room's lock is held."""

    extremities: list[str]
    state_group: int | None
    state: StateMap
    depth: int
    # With several extremities, `state` is their resolution and `state_group` the first one's
    # group; the difference goes into the next event's new state group.
    pending_delta: StateMap = dataclasses.field(default_factory=dict)


class _StoreForStateRes(EventGraphStore):
    def __init__(self, events: EventStore):
        self._events = events

    async def get_events(self, event_ids):  # type: ignore[override]
        return await self._events.get_events(event_ids)


class RoomEventSender:
    def __init__(self, server_name: str, signing_key: SigningKey, events: EventStore, clock: Clock,
                 notifier: Notifier):
        self._server_name = server_name
        self._signing_key = signing_key
        self._events = events
        self._clock = clock
        self._notifier = notifier
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._heads: dict[str, RoomHead] = {}
        self._txns_in_flight: dict[tuple[str, str, str], int] = {}
        self._after_persist: list[PersistedCallback] = []
        self._send_checks: list[SendCheck] = []

    def add_persisted_callback(self, callback: PersistedCallback) -> None:
        """Run `callback(event, context)` after each local event commits (push, appservices, ...)."""
        self._after_persist.append(callback)

    def add_send_check(self, check: SendCheck) -> None:
        """Run `check(room_id, sender, type, content, state_key)` before each local send (content rules)."""
        self._send_checks.append(check)

    def room_lock(self, room_id: str) -> asyncio.Lock:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[room_id] = lock
        return lock

    async def room_version(self, room_id: str) -> RoomVersion:
        version = await self._events.get_room_version_id(room_id)
        if version is None:
            raise MatrixError(404, "M_NOT_FOUND", f"Unknown room {room_id}")
        return get_room_version(version)

    # --- the room's head ---------------------------------------------------------
    async def _load_head(self, room_id: str, room_version: RoomVersion) -> RoomHead:
        head = self._heads.get(room_id)
        if head is not None:
            return head
        extremities = sorted(await self._events.get_forward_extremities(room_id))
        if not extremities:
            raise MatrixError(404, "M_NOT_FOUND", f"Unknown room {room_id}")
        prev_events = await self._events.get_events(extremities)
        groups = await self._events.get_state_groups_for_events(extremities)
        depth = max(e.depth for e in prev_events.values())
        group = groups.get(extremities[0])
        base = await self._events.get_state_for_group(group) if group is not None else {}
        pending: StateMap = {}
        if len(extremities) == 1:
            state = dict(base)
        else:
            state_sets = [await self._events.get_state_for_group(groups[e]) for e in extremities if e in groups]
            state = await resolve_state(room_version, state_sets, _StoreForStateRes(self._events))
            pending = {k: v for k, v in state.items() if base.get(k) != v}
        head = RoomHead(extremities[:MAX_PREV_EVENTS], group, state, depth, pending)
        self._heads[room_id] = head
        return head

    def forget_head(self, room_id: str) -> None:
        """Drop the cached head (after events arrive from elsewhere, e.g. federation)."""
        self._heads.pop(room_id, None)

    # --- sending ---------------------------------------------------------------------
    async def create_room(self, room_id: str | None, room_version: RoomVersion, creator: str,
                          content: Mapping[str, Any], is_public: bool = False) -> Event:
        """Persist the m.room.create event of a new room; returns it (its room_id names the room)."""
        now = self._clock.time_ms()
        event = build_event(
            room_version=room_version, event_type="m.room.create", sender=creator, content=content,
            room_id=None if room_version.room_id_from_create_event else room_id, state_key="",
            prev_event_ids=[], auth_event_ids=[], depth=1, origin_server_ts=now, origin=self._server_name,
            signing_key=self._signing_key,
        )
        self._validate(event, room_version)
        try:
            check_auth(event, {}, room_version)
        except AuthError as e:
            raise MatrixError(400, "M_BAD_JSON", f"Invalid m.room.create event: {e}") from None
        room_id = event.room_id
        await self._events.store_room(room_id, room_version.identifier, creator, now, is_public)
        async with self.room_lock(room_id):
            key = ("m.room.create", "")
            context = PersistContext(state_group=None, new_group_prev=None, new_group_delta={key: event.event_id},
                                     current_state_delta={key: event.event_id}, received_ts=now)
            await self._events.persist_event(event, context)
            self._heads[room_id] = RoomHead([event.event_id], context.state_group, {key: event.event_id}, 1)
        await self._after_commit(event, context)
        return event

    async def send(self, room_id: str, sender: str, event_type: str, content: Mapping[str, Any], *,
                   state_key: str | None = None, txn: tuple[str, str, str] | None = None,
                   origin_server_ts: int | None = None, redacts: str | None = None,
                   skip_unchanged_state: bool = False) -> Event:
        """Build, authorise and persist one event; returns it once durable.

        With `txn` = (user_id, device_id, txn_id), a repeated request returns the event
        the first one created instead of sending again. With `skip_unchanged_state`, a
        state event identical (sender and content) to the current one is not sent again
        and the current one is returned, as Synapse does for PUT /state.
        """
        room_version = await self.room_version(room_id)
        racing = False
        if txn is not None:
            existing = await self._existing_txn_event(txn)
            if existing is not None:
                return existing
            # Only a request racing another with the same transaction ID needs a second look
            # under the lock; the usual send then costs one lookup, not two.
            racing = self._txns_in_flight.get(txn, 0) > 0
            self._txns_in_flight[txn] = self._txns_in_flight.get(txn, 0) + 1
        try:
            return await self._send_new(room_id, room_version, sender, event_type, content, state_key, txn,
                                        racing, origin_server_ts, redacts, skip_unchanged_state)
        finally:
            if txn is not None:
                remaining = self._txns_in_flight.pop(txn) - 1
                if remaining:
                    self._txns_in_flight[txn] = remaining

    async def _send_new(self, room_id: str, room_version: RoomVersion, sender: str, event_type: str,
                        content: Mapping[str, Any], state_key: str | None, txn: tuple[str, str, str] | None,
                        racing: bool, origin_server_ts: int | None, redacts: str | None,
                        skip_unchanged_state: bool) -> Event:
        for check in self._send_checks:
            await check(room_id, sender, event_type, content, state_key)
        async with self.room_lock(room_id):
            if txn is not None and racing:
                existing = await self._existing_txn_event(txn)
                if existing is not None:
                    return existing
            head = await self._load_head(room_id, room_version)
            if skip_unchanged_state and state_key is not None and (event_type, state_key) in head.state:
                current = await self._events.get_event(head.state[(event_type, state_key)])
                if current is not None and current.sender == sender and dict(current.content) == dict(content):
                    return current
            try:
                event, context = await self._build_and_check(room_id, room_version, head, sender, event_type,
                                                             content, state_key, txn, origin_server_ts, redacts)
                await self._events.persist_event(event, context)
            except BaseException:
                # Whatever happened, the cached head may no longer match the database.
                self._heads.pop(room_id, None)
                raise
            self._advance_head(room_id, head, event, context)
        await self._after_commit(event, context)
        return event

    async def _existing_txn_event(self, txn: tuple[str, str, str]) -> Event | None:
        event_id = await self._events.get_event_id_for_txn(*txn)
        return None if event_id is None else await self._events.get_event(event_id)

    async def _build_and_check(self, room_id: str, room_version: RoomVersion, head: RoomHead, sender: str,
                               event_type: str, content: Mapping[str, Any], state_key: str | None,
                               txn: tuple[str, str, str] | None, origin_server_ts: int | None,
                               redacts: str | None) -> tuple[Event, PersistContext]:
        now = self._clock.time_ms()
        provisional_pdu: dict[str, Any] = {"type": event_type, "sender": sender, "content": content,
                                           "room_id": room_id}
        if state_key is not None:
            provisional_pdu["state_key"] = state_key
        provisional = Event(provisional_pdu, room_version, event_id="$provisional")
        auth_types = auth_types_for_event(provisional, room_version)
        auth_event_ids = sorted(head.state[k] for k in auth_types if k in head.state)
        if redacts is not None and room_version.redacts_in_content:
            content = {**content, "redacts": redacts}
        event = build_event(
            room_version=room_version, event_type=event_type, sender=sender, content=content, room_id=room_id,
            state_key=state_key, prev_event_ids=head.extremities, auth_event_ids=auth_event_ids,
            depth=min(head.depth + 1, MAX_DEPTH), origin_server_ts=origin_server_ts or now,
            origin=self._server_name, signing_key=self._signing_key,
            redacts=None if room_version.redacts_in_content else redacts,
        )
        self._validate(event, room_version)
        if txn is not None:
            event.internal_metadata["txn_id"] = client_txn_id(txn[2])
            event.internal_metadata["device_id"] = txn[1]
        if event.is_state() and event.state_tuple() in head.state:
            # Kept so clients can be shown `prev_content` without a state lookup.
            event.internal_metadata["replaces_state"] = head.state[event.state_tuple()]
        auth_keys = set(auth_types)
        if room_version.room_id_from_create_event:
            auth_keys.add(("m.room.create", ""))
        loaded = await self._events.get_events([head.state[k] for k in auth_keys if k in head.state])
        auth_state = {k: loaded[head.state[k]] for k in auth_keys if k in head.state and head.state[k] in loaded}
        try:
            check_auth(event, auth_state, room_version)
        except AuthError as e:
            raise MatrixError(403, "M_FORBIDDEN", str(e)) from None
        context = PersistContext(state_group=head.state_group, replaces_extremities=list(head.extremities),
                                 txn=txn, received_ts=now)
        if event.is_state() or head.pending_delta:
            delta = dict(head.pending_delta)
            if event.is_state():
                delta[event.state_tuple()] = event.event_id
            context.new_group_prev = head.state_group
            context.new_group_delta = delta
            context.current_state_delta = delta
            memberships = {eid: (await self._membership_of(eid, event)) for (t, _), eid in delta.items()
                           if t == "m.room.member"}
            context.extras["memberships"] = memberships
        return event, context

    async def _membership_of(self, event_id: str, new_event: Event) -> str | None:
        if event_id == new_event.event_id:
            return new_event.membership
        existing = await self._events.get_event(event_id)
        return existing.membership if existing is not None else None

    def _validate(self, event: Event, room_version: RoomVersion) -> None:
        try:
            validate_pdu(event.pdu, room_version)
        except EventValidationError as e:
            raise e.to_matrix_error() from None

    def _advance_head(self, room_id: str, head: RoomHead, event: Event, context: PersistContext) -> None:
        head.extremities = [event.event_id]
        head.depth = event.depth
        head.state_group = context.state_group
        head.pending_delta = {}
        if context.current_state_delta:
            head.state.update(context.current_state_delta)

    async def _after_commit(self, event: Event, context: PersistContext) -> None:
        self._notifier.notify_room(event.room_id)
        if event.type == "m.room.member" and event.state_key:
            self._notifier.notify_users([event.state_key])
        for callback in self._after_persist:
            try:
                await callback(event, context)
            except Exception:
                logger.exception("after-persist callback failed for %s", event.event_id)


def room_version_or_error(identifier: Any) -> RoomVersion:
    """The RoomVersion for a client-supplied identifier, or 400 M_UNSUPPORTED_ROOM_VERSION."""
    if not isinstance(identifier, str):
        raise MatrixError(400, "M_BAD_JSON", "room_version: must be a string")
    try:
        return get_room_version(identifier)
    except UnsupportedRoomVersion:
        raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", f"room_version: {identifier!r} is not supported") from None
