"""Creating local room events: building, authorising, and handing them to the persister.

An event is built on its room's head (rooms/heads.py) under the room's lock, checked
against the auth rules, and handed to the persister, which commits it in the next group
commit. The lock is released as soon as the event is queued, so the next event of the room
can be built on it while it is still being written; only an event that creates a state
group keeps the lock until it commits, because the group's ID is assigned by the database
and the next event needs it. An event is acknowledged (its ID returned) only after its
transaction has committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from signedjson.key import SigningKey

from homeserver.clock import Clock
from homeserver.errors import MatrixError, bad_json, forbidden, not_found
from homeserver.event_auth import AuthError, auth_types_for_event, check_auth
from homeserver.events.builder import MAX_DEPTH, build_event
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion, UnsupportedRoomVersion, get_room_version
from homeserver.events.validation import EventValidationError, validate_pdu
from homeserver.rooms.heads import RoomHead, RoomHeads
from homeserver.rooms.persister import EventPersister, redaction_applies
from homeserver.rooms.transactions import client_txn_id
from storage.stores.events import EventStore, PersistContext, StateMap

logger = logging.getLogger(__name__)

# (room_id, sender, event_type, content, state_key) -> None, or raises MatrixError to refuse the send.
SendCheck = Callable[[str, str, str, Mapping[str, Any], str | None], Awaitable[None]]
# (built event, the room's state it was built on) -> the same event with another server's signature
# added (an invite of another server's user), or raises MatrixError to refuse the send.
Countersign = Callable[[Event, StateMap], Awaitable[Event]]
# Transactions answered recently, kept so a retry racing the first request's commit still finds them.
# Older ones are found in event_txn_ids (a read every new transaction makes anyway), so this only
# needs to span the race: 1,000 keeps it at about 0.3 MiB.
RECENT_TXNS = 1_000
# Times an event is rebuilt when the head it was built on was dropped meanwhile.
MAX_REBUILDS = 3


class _StaleHead(Exception):
    """The head was dropped while the event was being built on it (an earlier event failed)."""


class RoomEventSender:
    def __init__(self, server_name: str, signing_key: SigningKey, events: EventStore, heads: RoomHeads,
                 persister: EventPersister, clock: Clock, *, send_checks: Sequence[SendCheck] = ()):
        self._server_name = server_name
        self._signing_key = signing_key
        self._events = events
        self._heads = heads
        self._persister = persister
        self._clock = clock
        self._send_checks = list(send_checks)
        # Sends in flight by transaction (user_id, device_id, txn_id), and those recently answered.
        self._pending_txns: dict[tuple[str, str, str], asyncio.Future[Event]] = {}
        self._recent_txns: OrderedDict[tuple[str, str, str], Event] = OrderedDict()

    def room_lock(self, room_id: str) -> asyncio.Lock:
        """The room's lock, for work that must not interleave with building the room's next event."""
        return self._heads.lock(room_id)

    def forget_head(self, room_id: str) -> None:
        """Drop the room's cached head (after its events changed behind the sender, e.g. a purge)."""
        self._heads.forget(room_id)

    async def room_version(self, room_id: str) -> RoomVersion:
        version = await self._events.get_room_version_id(room_id)
        if version is None:
            raise not_found(f"Unknown room {room_id}")
        return get_room_version(version)

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
            raise bad_json(f"Invalid m.room.create event: {e}") from None
        room_id = event.room_id
        await self._events.store_room(room_id, room_version.identifier, creator, now, is_public)
        async with self._heads.lock(room_id):
            key = ("m.room.create", "")
            context = PersistContext(state_group=None, new_group_prev=None, new_group_delta={key: event.event_id},
                                     current_state_delta={key: event.event_id}, received_ts=now)
            await self._persister.persist(event, context)
            self._heads.set(room_id, RoomHead([event.event_id], context.state_group, {key: event.event_id}, 1))
        return event

    async def send(self, room_id: str, sender: str, event_type: str, content: Mapping[str, Any], *,
                   state_key: str | None = None, txn: tuple[str, str, str] | None = None,
                   origin_server_ts: int | None = None, redacts: str | None = None,
                   skip_unchanged_state: bool = False, countersign: Countersign | None = None) -> Event:
        """Build, authorise and persist one event; returns it once durable.

        With `txn` = (user_id, device_id, txn_id), a repeated request returns the event
        the first one created instead of sending again. With `skip_unchanged_state`, a
        state event identical (sender and content) to the current one is not sent again
        and the current one is returned, as Synapse does for PUT /state. With `countersign`, the
        built event is replaced by what it returns before it is persisted (the room stays locked).
        """
        room_version = await self.room_version(room_id)
        if txn is None:
            return await self._send_new(room_id, room_version, sender, event_type, content, state_key, None,
                                        origin_server_ts, redacts, skip_unchanged_state, countersign)
        existing = await self._answered_txn(txn)
        if existing is not None:
            return await existing if isinstance(existing, asyncio.Future) else existing
        answer: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._pending_txns[txn] = answer
        try:
            event = await self._send_new(room_id, room_version, sender, event_type, content, state_key, txn,
                                         origin_server_ts, redacts, skip_unchanged_state, countersign)
        except BaseException as error:
            answer.set_exception(error)
            answer.exception()  # retrieved: a failure nobody else awaited is not an unhandled error
            raise
        finally:
            self._pending_txns.pop(txn, None)
        answer.set_result(event)
        self._recent_txns[txn] = event
        if len(self._recent_txns) > RECENT_TXNS:
            self._recent_txns.popitem(last=False)
        return event

    def answered_recently(self, txn: tuple[str, str, str]) -> bool:
        """Whether this transaction is being sent or was among the latest answered (no read)."""
        return txn in self._pending_txns or txn in self._recent_txns

    async def _answered_txn(self, txn: tuple[str, str, str]) -> Event | asyncio.Future[Event] | None:
        """The event (or the pending send) that already answered this transaction, if any."""
        found = self._pending_txns.get(txn) or self._recent_txns.get(txn)
        if found is not None:
            return asyncio.shield(found) if isinstance(found, asyncio.Future) else found
        event_id = await self._events.get_event_id_for_txn(*txn)
        if event_id is not None:
            return await self._events.get_event(event_id)
        # The first request may have registered while we read.
        found = self._pending_txns.get(txn) or self._recent_txns.get(txn)
        if isinstance(found, asyncio.Future):
            return asyncio.shield(found)
        return found

    async def _send_new(self, room_id: str, room_version: RoomVersion, sender: str, event_type: str,
                        content: Mapping[str, Any], state_key: str | None, txn: tuple[str, str, str] | None,
                        origin_server_ts: int | None, redacts: str | None,
                        skip_unchanged_state: bool, countersign: Countersign | None = None) -> Event:
        for check in self._send_checks:
            await check(room_id, sender, event_type, content, state_key)
        for attempt in range(MAX_REBUILDS):
            try:
                return await self._build_and_persist(room_id, room_version, sender, event_type, content, state_key,
                                                     txn, origin_server_ts, redacts, skip_unchanged_state,
                                                     countersign)
            except _StaleHead:
                logger.info("head of %s dropped while building an event; rebuilding (attempt %d)", room_id,
                            attempt + 1)
        raise MatrixError(503, "M_UNKNOWN", "The room is busy; try again")

    async def _build_and_persist(self, room_id: str, room_version: RoomVersion, sender: str, event_type: str,
                                 content: Mapping[str, Any], state_key: str | None,
                                 txn: tuple[str, str, str] | None, origin_server_ts: int | None,
                                 redacts: str | None, skip_unchanged_state: bool,
                                 countersign: Countersign | None = None) -> Event:
        async with self._heads.lock(room_id):
            head = await self._heads.load(room_id, room_version)
            if skip_unchanged_state and state_key is not None and (event_type, state_key) in head.state:
                current = await self._events.get_event(head.state[(event_type, state_key)])
                if current is not None and current.sender == sender and dict(current.content) == dict(content):
                    return current
            try:
                event, context = await self._build_and_check(room_id, room_version, head, sender, event_type,
                                                             content, state_key, txn, origin_server_ts, redacts)
                if event.redacts is not None:
                    context.applies_redaction = await redaction_applies(self._events, event, head.state)
                if countersign is not None:
                    metadata = dict(event.internal_metadata)
                    event = await countersign(event, dict(head.state))
                    event.internal_metadata.update(metadata)
            except BaseException:
                # Whatever happened, the cached head may no longer match the database.
                self._heads.forget(room_id)
                raise
            if not self._heads.is_current(room_id, head):
                raise _StaleHead()
            committed, published = self._persister.enqueue(event, context)
            if context.new_group_delta is not None:
                # The new group's ID comes from the database; the next event of the room needs it.
                # (Only the commit: consumers of the publication may send into this room.)
                await committed
            self._heads.advance(head, event, context)
        await published
        return event

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
            raise forbidden(str(e)) from None
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
            context.memberships = memberships
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


def room_version_or_error(identifier: Any) -> RoomVersion:
    """The RoomVersion for a client-supplied identifier, or 400 M_UNSUPPORTED_ROOM_VERSION."""
    if not isinstance(identifier, str):
        raise bad_json("room_version: must be a string")
    try:
        return get_room_version(identifier)
    except UnsupportedRoomVersion:
        raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", f"room_version: {identifier!r} is not supported") from None
