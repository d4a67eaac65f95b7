"""Read receipts (`m.read`, `m.read.private`, threaded or not) and the fully-read marker.

Receipts are persisted on the `receipts` stream. A new receipt replaces the user's earlier one
of the same type and thread only when it points at a later event, so receipts never move back
in the timeline (a client resending an old receipt is a no-op, as in Synapse). `m.read.private`
receipts are only ever shown to their owner. The fully-read marker is not a receipt: it is the
room account data `m.fully_read`, written through the AccountDataService, and it too only moves
forwards.

Each stored `m.read` / `m.read.private` receipt is published as `ReadReceiptStored` (the push
work resets notification counts from it; `thread_id` None when unthreaded). Between the two, the
later one is the user's read-up-to mark, so a consumer seeing an `m.read` behind the private
receipt must not rewind counts.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable
from typing import Any

from homeserver.accounts.account_data import AccountDataService
from homeserver.clock import Clock
from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.events.event import Event
from homeserver.identifiers import is_valid_event_id
from homeserver.rooms.reading import RoomReader
from homeserver.streams.bus import StreamBus
from homeserver.streams.notifier import Notifier
from homeserver.streams.updates import ReadReceiptStored
from storage.stores.events import EventStore
from storage.stores.receipts import RECEIPTS, ReceiptStore, StoredReceipt

logger = logging.getLogger(__name__)

READ = "m.read"
READ_PRIVATE = "m.read.private"
FULLY_READ = "m.fully_read"
RECEIPT_TYPES = (READ, READ_PRIVATE, FULLY_READ)
RECEIPT_EVENT_TYPE = "m.receipt"
MAIN_TIMELINE = "main"
# The spec recommends following relations at most 3 hops up to find an event's thread.
MAX_RELATION_HOPS = 3

def check_receipt_type(receipt_type: str) -> None:
    if receipt_type not in RECEIPT_TYPES:
        raise invalid_param(f"receiptType: must be one of {', '.join(RECEIPT_TYPES)}")


def check_event_id(event_id: Any, field: str) -> str:
    if not is_valid_event_id(event_id):
        raise invalid_param(f"{field}: must be an event ID")
    return event_id


def parse_thread_id(body: dict[str, Any], receipt_type: str) -> str | None:
    """The receipt's thread (`main` or a thread root's event ID), or None when unthreaded."""
    if "thread_id" not in body:
        return None
    thread_id = body["thread_id"]
    if not isinstance(thread_id, str) or not thread_id:
        raise invalid_param("thread_id: must be a non-empty string")
    if receipt_type == FULLY_READ:
        raise invalid_param(f"thread_id: not allowed for {FULLY_READ}")
    if thread_id != MAIN_TIMELINE:
        check_event_id(thread_id, "thread_id")
    return thread_id


def parse_read_markers(body: dict[str, Any]) -> dict[str, str]:
    """{marker type: event ID} of the `/read_markers` fields that are set; unknown keys are ignored."""
    markers = {}
    for marker_type in (FULLY_READ, READ, READ_PRIVATE):
        value = body.get(marker_type)
        if value is not None:
            markers[marker_type] = check_event_id(value, marker_type)
    return markers


def relation_of(event: Event) -> tuple[str, str] | None:
    """(rel_type, parent event ID) of the event's `m.relates_to`, if well formed."""
    relates_to = event.content.get("m.relates_to")
    if not isinstance(relates_to, dict):
        return None
    rel_type, parent = relates_to.get("rel_type"), relates_to.get("event_id")
    if isinstance(rel_type, str) and isinstance(parent, str):
        return rel_type, parent
    return None


def receipt_edu_content(receipts: Iterable[StoredReceipt]) -> dict[str, Any]:
    """`{event_id: {receipt_type: {user_id: {ts, thread_id?}}}}`, later receipts winning."""
    content: dict[str, Any] = {}
    for receipt in receipts:
        data = dict(receipt.data)
        if receipt.thread_id is not None:
            data["thread_id"] = receipt.thread_id
        content.setdefault(receipt.event_id, {}).setdefault(receipt.receipt_type, {})[receipt.user_id] = data
    return content


class ReceiptService:
    """Receipts and read markers; also the sync ephemeral provider of the `receipts` stream."""

    stream_name = RECEIPTS

    def __init__(self, store: ReceiptStore, events: EventStore, reader: RoomReader,
                 account_data: AccountDataService, notifier: Notifier, bus: StreamBus, clock: Clock):
        self._store = store
        self._events = events
        self._reader = reader
        self._account_data = account_data
        self._notifier = notifier
        self._clock = clock
        self._bus = bus
        # Serialises read-then-write of one user's fully-read marker in one room.
        self._marker_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    # --- requests ---------------------------------------------------------------------
    async def send_receipt(self, user_id: str, room_id: str, receipt_type: str, event_id: str,
                           thread_id: str | None) -> None:
        """Handle `/receipt/{receiptType}/{eventId}` for a member of the room."""
        check_receipt_type(receipt_type)
        event = await self._visible_event(user_id, room_id, event_id)
        if thread_id is not None and not await self._is_in_thread(event, thread_id):
            raise invalid_param(f"thread_id: {event_id} is not part of thread {thread_id}")
        if receipt_type == FULLY_READ:
            await self._set_fully_read(user_id, room_id, event)
        else:
            await self._store_receipt(user_id, room_id, receipt_type, event, thread_id)

    async def set_read_markers(self, user_id: str, room_id: str, markers: dict[str, str]) -> None:
        """Handle `/read_markers`: every event is checked before anything is written."""
        events = {marker_type: await self._visible_event(user_id, room_id, event_id)
                  for marker_type, event_id in markers.items()}
        for marker_type, event in events.items():
            if marker_type == FULLY_READ:
                await self._set_fully_read(user_id, room_id, event)
            else:
                await self._store_receipt(user_id, room_id, marker_type, event, None)

    async def store_remote_receipt(self, room_id: str, user_id: str, event_id: str, thread_id: str | None,
                                   ts: int) -> bool:
        """Store another server's user's public `m.read` receipt; False when it was not newer or names
        an event of another room.

        The caller (federation) has checked that the user belongs to the server that sent it and that
        this server is in the room. The event may not have reached us yet: such a receipt is kept
        (as Synapse does) and simply not compared with the user's earlier one."""
        event = await self._events.get_event(event_id)
        ordering: int | None = None
        if event is not None:
            if event.room_id != room_id:
                return False
            stream_ordering = event.internal_metadata.get("stream_ordering")
            ordering = int(stream_ordering) if stream_ordering is not None else None
        position = await self._store.upsert_receipt(room_id, READ, user_id, thread_id, event_id, ordering,
                                                    {"ts": ts})
        if position is None:
            return False
        self._notifier.notify_room(room_id)
        await self._bus.publish(ReadReceiptStored(room_id, user_id, event_id, thread_id))
        return True

    # --- checks -----------------------------------------------------------------------
    async def _visible_event(self, user_id: str, room_id: str, event_id: str) -> Event:
        membership, _ = await self._events.get_membership(room_id, user_id)
        if membership != "join":
            if await self._events.get_room_version_id(room_id) is None:
                raise not_found(f"Unknown room {room_id}")
            raise forbidden(f"You are not joined to {room_id}")
        event = await self._events.get_event(event_id)
        if (event is None or event.room_id != room_id or event.rejected_reason is not None
                or event.internal_metadata.get("outlier")):
            raise not_found(f"Event {event_id} not found in {room_id}")
        if not await self._reader.filter_visible(user_id, [event]):
            raise not_found(f"Event {event_id} not found in {room_id}")
        return event

    async def _is_in_thread(self, event: Event, thread_id: str) -> bool:
        """Whether a receipt on `event` may name `thread_id` (Synapse's rough relatedness check).

        An event is in thread T when it, or an event it relates to (up to 3 hops), is T or has
        an `m.thread` relation to T; it is in the main timeline when no such thread is found.
        """
        current: Event | None = event
        visited: set[str] = set()
        for _ in range(MAX_RELATION_HOPS + 1):
            if current is None or current.room_id != event.room_id:
                break
            visited.add(current.event_id)
            relation = relation_of(current)
            if relation is None:
                break
            rel_type, parent_id = relation
            if rel_type == "m.thread":
                return thread_id == parent_id
            if parent_id in visited:
                break
            current = await self._events.get_event(parent_id)
        if thread_id == MAIN_TIMELINE:
            return True
        # Synapse also requires T to be a thread root; without a relations index a root is
        # recognised only by name, which lets a client open a "thread" on any event it reads.
        return thread_id in visited

    # --- writes -----------------------------------------------------------------------
    async def _store_receipt(self, user_id: str, room_id: str, receipt_type: str, event: Event,
                             thread_id: str | None) -> None:
        position = await self._store.upsert_receipt(
            room_id, receipt_type, user_id, thread_id, event.event_id,
            int(event.internal_metadata["stream_ordering"]), {"ts": self._clock.time_ms()},
        )
        if position is None:
            return
        if receipt_type == READ_PRIVATE:
            self._notifier.notify_users([user_id])  # nobody else can see it
        else:
            self._notifier.notify_room(room_id)
        await self._bus.publish(ReadReceiptStored(room_id, user_id, event.event_id, thread_id))

    async def _set_fully_read(self, user_id: str, room_id: str, event: Event) -> None:
        key = (room_id, user_id)
        lock = self._marker_locks.get(key)
        if lock is None:
            lock = self._marker_locks[key] = asyncio.Lock()
        async with lock:
            if not await self._is_ahead_of_marker(user_id, room_id, event):
                return
            await self._account_data.set_server_managed_room(user_id, room_id, FULLY_READ,
                                                             {"event_id": event.event_id})

    async def _is_ahead_of_marker(self, user_id: str, room_id: str, event: Event) -> bool:
        try:
            current = await self._account_data.get_room(user_id, user_id, room_id, FULLY_READ)
        except MatrixError:
            return True  # no marker yet
        old = await self._events.get_event(current.get("event_id")) if isinstance(
            current.get("event_id"), str) else None
        if old is None or old.room_id != room_id:
            return True  # the old marker's event is gone (retention): any new one is ahead
        return int(event.internal_metadata["stream_ordering"]) > int(old.internal_metadata["stream_ordering"])

    # --- the sync provider ------------------------------------------------------------
    async def current_position(self) -> int:
        return await self._store.get_current_position()

    async def events_for_rooms(self, user_id: str, room_ids: Iterable[str], from_pos: int | None,
                               to_pos: int) -> dict[str, list[dict[str, Any]]]:
        """One `m.receipt` event per room with receipts written in (from_pos, to_pos], as `user_id` may see them.

        `from_pos` None (an initial sync) gives every current receipt up to `to_pos`.
        """
        by_room: dict[str, list[StoredReceipt]] = {}
        for receipt in await self._store.get_receipts_for_rooms(list(room_ids), from_pos or 0, to_pos):
            if receipt.receipt_type == READ_PRIVATE and receipt.user_id != user_id:
                continue
            by_room.setdefault(receipt.room_id, []).append(receipt)
        return {room_id: [{"type": RECEIPT_EVENT_TYPE, "content": receipt_edu_content(receipts)}]
                for room_id, receipts in by_room.items()}

    async def get_read_receipts(self, user_id: str, room_id: str) -> list[StoredReceipt]:
        """The user's current `m.read` and `m.read.private` receipts in a room, every thread (for push counts)."""
        return await self._store.get_receipts_for_user(user_id, room_id, (READ, READ_PRIVATE))
