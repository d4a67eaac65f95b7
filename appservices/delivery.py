"""Delivering events and ephemeral data to application services through the durable outbound queue.

Events: a stream stage (`appservice_handoff`) reads every persisted event in stream order and,
for each registered service interested in it, queues the event's ID on the outbound queue
(kind `appservice`, destination the service's ID) in the transaction that also moves the stage.
A crash therefore neither loses nor repeats a hand-off.

The outbound queue then delivers each service's items in order, as transactions of up to
`max_items`: the first attempt fixes the transaction's ID (a counter per service) and its items,
and every retry — after a failure, or after a restart — sends exactly those items under that ID,
so a service that deduplicates by transaction ID (as the spec asks) sees every event once.
Failures back off exponentially per service; a successful ping retries at once.

Ephemeral data (receipts, typing, presence, to-device messages, and for MSC3202 services device
list changes and one-time-key count changes) is queued live from the stream bus, after the change
committed, as Synapse does: a crash between the change and the queueing loses that one update.
Once queued it is as durable and ordered as the events.

MSC3202 items only name what changed (a user whose device list changed or who left, a device whose
key counts moved); the courier reads the counts when it builds the transaction, so a service always
receives current counts, once per device per transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from appservices.interest import (
    RoomContext,
    is_interested_in_room,
    services_for_device_keys,
    services_for_event,
    services_for_presence,
    services_for_room_ephemeral,
    services_for_to_device,
)
from appservices.registration import AppServiceRegistration
from appservices.service import AppServices
from appservices.transactions import PendingTransaction, TransactionContent, TransactionSender
from homeserver.clock import Clock
from homeserver.events.event import Event
from homeserver.outbound.queue import PermanentDeliveryError
from homeserver.rooms.serialize import ClientEventSerializer
from homeserver.streams.bus import StreamBus
from homeserver.streams.stages import EventStage
from homeserver.streams.updates import (
    DeviceListChanged,
    OneTimeKeysChanged,
    OutboundItemsQueued,
    PresenceChanged,
    ReadReceiptStored,
    RoomSharingChanged,
    ToDeviceQueued,
    TypingChanged,
)
from storage.stores.appservice_queue import APPSERVICE_KIND, AppServiceQueueStore
from storage.stores.e2ee import E2eeKeyStore
from storage.stores.events import EventStore
from storage.stores.receipts import ReceiptStore
from storage.stores.stages import StagePositionStore

logger = logging.getLogger(__name__)

HANDOFF_STAGE = "appservice_handoff"
# Synapse sends at most 100 events (and 100 ephemeral events) per transaction.
MAX_ITEMS_PER_TRANSACTION = 100
RECEIPT_TYPES = ("m.read", "m.read.private")
# As /sync: this count is always present, zero included (clients read a missing one as "upload more").
SIGNED_CURVE25519 = "signed_curve25519"


class TransactionRefused(Exception):
    """The service did not accept the transaction (down, or an error status); the queue retries."""


class AppServiceDelivery:
    """The `appservice_handoff` stage, the live ephemeral feed, and the courier of `appservice` items."""

    max_items = MAX_ITEMS_PER_TRANSACTION

    def __init__(self, app_services: AppServices, sender: TransactionSender, store: AppServiceQueueStore,
                 events: EventStore, positions: StagePositionStore, serializer: ClientEventSerializer,
                 receipts: ReceiptStore, bus: StreamBus, clock: Clock, *,
                 keys: E2eeKeyStore | None = None, registry: CollectorRegistry | None = None):
        self._app_services = app_services
        self._sender = sender
        self._store = store
        self._events = events
        self._serializer = serializer
        self._receipts = receipts
        self._bus = bus
        self._clock = clock
        self._keys = keys
        self.stage = EventStage(HANDOFF_STAGE, events, positions, self._hand_off, registry=registry)
        # Typing lists are snapshots: queued in the order they changed, the last one is the current one.
        self._typing_lock = asyncio.Lock()

    def _receivers(self) -> list[AppServiceRegistration]:
        return [r for r in self._app_services.registry.registrations if r.url is not None]

    # --- events: the hand-off stage ------------------------------------------------------------
    async def _hand_off(self, events: Sequence[Event], upto: int) -> bool:
        """Queue each event for the services interested in it; False when there was nothing to queue."""
        receivers = self._receivers()
        if not events or not receivers:
            return False
        rooms: dict[str, RoomContext] = {}
        queued: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            room = rooms.get(event.room_id)
            if room is None:
                room = rooms[event.room_id] = await self._app_services.room_context(event.room_id)
            for registration in services_for_event(receivers, event, room):
                queued.setdefault(registration.id, []).append({"event_id": event.event_id})
        if not queued:
            return False
        await self._store.queue_events(queued, stage=HANDOFF_STAGE, upto=upto, now_ms=self._clock.time_ms())
        await self._announce(queued)
        return True

    async def _announce(self, queued: dict[str, list[dict[str, Any]]]) -> None:
        for service_id, items in queued.items():
            await self._bus.publish(OutboundItemsQueued(APPSERVICE_KIND, service_id, len(items)))

    # --- ephemeral data: the live feed -----------------------------------------------------------
    async def _queue_ephemeral(self, receivers: Iterable[AppServiceRegistration], data: dict[str, Any]) -> None:
        queued = {r.id: [{"ephemeral": data}] for r in receivers}
        if queued:
            await self._store.queue(queued, self._clock.time_ms())
            await self._announce(queued)

    async def on_receipt(self, update: ReadReceiptStored) -> None:
        """A read receipt: to the ephemeral-enabled services interested in the room (private ones:
        only to services whose namespace covers the reader, as the spec says)."""
        receivers = self._ephemeral_receivers()
        if not receivers:
            return
        stored = [r for r in await self._receipts.get_receipts_for_user(update.user_id, update.room_id,
                                                                          RECEIPT_TYPES)
                  if r.event_id == update.event_id and r.thread_id == update.thread_id]
        if not stored:
            return  # already replaced by a later receipt, which brings its own update
        room = await self._app_services.room_context(update.room_id)
        interested = services_for_room_ephemeral(receivers, update.room_id, room)
        for receipt in stored:
            data = dict(receipt.data)
            if receipt.thread_id is not None:
                data["thread_id"] = receipt.thread_id
            event = {"type": "m.receipt", "room_id": update.room_id,
                     "content": {receipt.event_id: {receipt.receipt_type: {receipt.user_id: data}}}}
            targets = interested
            if receipt.receipt_type == "m.read.private":
                targets = [r for r in interested if r.is_interested_in_user(receipt.user_id)]
            await self._queue_ephemeral(targets, event)

    async def on_typing(self, update: TypingChanged) -> None:
        """A room's typing list changed: the new list to the services interested in the room."""
        async with self._typing_lock:  # taken before any await: changes queue in the order they happened
            receivers = self._ephemeral_receivers()
            if not receivers:
                return
            room = await self._app_services.room_context(update.room_id)
            event = {"type": "m.typing", "room_id": update.room_id, "content": {"user_ids": list(update.user_ids)}}
            await self._queue_ephemeral(services_for_room_ephemeral(receivers, update.room_id, room), event)

    async def on_presence(self, update: PresenceChanged) -> None:
        """A user's presence changed: to the services covering the user or someone sharing a room."""
        receivers = self._ephemeral_receivers()
        if not receivers:
            return
        wanting = [r for r in receivers if r.is_interested_in_user(update.user_id)]
        others = [r for r in receivers if r not in wanting]
        for room_id in await self._events.get_rooms_for_user(update.user_id, ("join",)) if others else ():
            members = (await self._app_services.room_context(room_id)).members
            found = services_for_presence(others, update.user_id, members)
            wanting.extend(found)
            others = [r for r in others if r not in found]
            if not others:
                break
        event = {"type": "m.presence", "sender": update.user_id, "content": dict(update.content)}
        await self._queue_ephemeral(wanting, event)

    async def on_to_device(self, update: ToDeviceQueued) -> None:
        """To-device messages for namespace users' devices (MSC2409), to the services that own the users."""
        receivers = self._ephemeral_receivers()
        if not receivers:
            return
        by_service: dict[str, list[str]] = {}
        for recipient in update.recipients:
            for registration in services_for_to_device(receivers, recipient):
                by_service.setdefault(registration.id, []).append(recipient)
        queued: dict[str, list[dict[str, Any]]] = {}
        for service_id, recipients in by_service.items():
            messages = await self._store.to_device_messages_at(update.position, recipients)
            if messages:
                # MSC2409's transaction format: the message with its recipient device added.
                queued[service_id] = [
                    {"to_device": {**m.message, "to_user_id": m.user_id, "to_device_id": m.device_id}}
                    for m in messages]
        if queued:
            await self._store.queue(queued, self._clock.time_ms())
            await self._announce(queued)

    def _ephemeral_receivers(self) -> list[AppServiceRegistration]:
        return [r for r in self._receivers() if r.wants_ephemeral]

    # --- MSC3202: device lists and one-time-key counts -------------------------------------------
    def _msc3202_receivers(self) -> list[AppServiceRegistration]:
        return [r for r in self._receivers() if r.msc3202] if self._keys is not None else []

    async def _sharing_a_room(self, user_id: str, candidates: list[AppServiceRegistration],
                              skip_room: str | None = None) -> list[AppServiceRegistration]:
        """The candidates interested in a room the user is joined to now (MSC3202's "interested")."""
        found: list[AppServiceRegistration] = []
        for room_id in await self._events.get_rooms_for_user(user_id, ("join",)) if candidates else ():
            if room_id == skip_room:
                continue
            room = await self._app_services.room_context(room_id)
            found.extend(r for r in candidates if r not in found and is_interested_in_room(r, room_id, room))
            if len(found) == len(candidates):
                break
        return found

    async def _queue_device_lists(self, queued: dict[str, list[dict[str, Any]]]) -> None:
        queued = {service_id: items for service_id, items in queued.items() if items}
        if queued:
            await self._store.queue(queued, self._clock.time_ms())
            await self._announce(queued)

    async def on_device_list_changed(self, update: DeviceListChanged) -> None:
        """A user's devices or keys changed: `changed` for the services covering the user or a room
        the user is in (as /sync shows it to users sharing a room)."""
        receivers = self._msc3202_receivers()
        if not receivers:
            return
        wanting = [r for r in receivers if r.is_interested_in_user(update.user_id)]
        wanting += await self._sharing_a_room(update.user_id, [r for r in receivers if r not in wanting])
        item = {"device_list": {"user_ids": [update.user_id], "state": "changed"}}
        await self._queue_device_lists({r.id: [item] for r in wanting})

    async def on_room_sharing_changed(self, update: RoomSharingChanged) -> None:
        """A join starts sharing a room: the joiner is `changed` for the services interested in the
        room, and the room's members are `changed` for a service whose user joined. A leave ends it:
        the leaver is `left` for the services that no longer share any room with them."""
        receivers = self._msc3202_receivers()
        if not receivers:
            return
        user_id, room_id = update.user_id, update.room_id
        room = await self._app_services.room_context(room_id)
        queued: dict[str, list[dict[str, Any]]] = {}
        if update.joined:
            members = sorted(await self._keys.get_joined_members([room_id])) if self._keys is not None else []
            for registration in receivers:
                users: list[str] = []
                if registration.is_interested_in_user(user_id):
                    users = [m for m in members if m != user_id]
                elif is_interested_in_room(registration, room_id, room):
                    users = [user_id]
                if users:  # one item, however big the room
                    queued[registration.id] = [{"device_list": {"user_ids": users, "state": "changed"}}]
        else:
            # Services that cover the leaver keep following them; the others did share this room
            # when they are interested in it, and stop sharing when no other room of the user is.
            candidates = [r for r in receivers if not r.is_interested_in_user(user_id)
                          and is_interested_in_room(r, room_id, room)]
            still = await self._sharing_a_room(user_id, candidates, skip_room=room_id)
            item = {"device_list": {"user_ids": [user_id], "state": "left"}}
            queued = {r.id: [item] for r in candidates if r not in still}
        await self._queue_device_lists(queued)

    async def on_one_time_keys_changed(self, update: OneTimeKeysChanged) -> None:
        """A namespace user's device uploaded keys or had keys claimed: its counts to the services
        covering the user."""
        receivers = services_for_device_keys(self._msc3202_receivers(), update.user_id)
        items = [{"one_time_keys": {"user_id": update.user_id, "device_id": d}} for d in update.device_ids]
        await self._queue_device_lists({r.id: list(items) for r in receivers})

    async def _msc3202_content(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """The device list and key count fields of a transaction, from its MSC3202 items."""
        states: dict[str, str] = {}
        for item in items:
            if "device_list" in item:
                change = item["device_list"]
                for user_id in change["user_ids"]:
                    states.pop(user_id, None)  # the last word on a user wins
                    states[user_id] = change["state"]
        devices = list(dict.fromkeys((i["one_time_keys"]["user_id"], i["one_time_keys"]["device_id"])
                                     for i in items if "one_time_keys" in i))
        counts: dict[str, dict[str, dict[str, int]]] = {}
        fallback: dict[str, dict[str, list[str]]] = {}
        for user_id, device_id in devices if self._keys is not None else ():
            assert self._keys is not None
            counts.setdefault(user_id, {})[device_id] = {
                SIGNED_CURVE25519: 0, **await self._keys.count_one_time_keys(user_id, device_id)}
            fallback.setdefault(user_id, {})[device_id] = await self._keys.get_unused_fallback_key_types(
                user_id, device_id)
        return {
            "device_lists_changed": [u for u, state in states.items() if state == "changed"],
            "device_lists_left": [u for u, state in states.items() if state == "left"],
            "one_time_key_counts": counts,
            "unused_fallback_key_types": fallback,
        }

    # --- the courier ---------------------------------------------------------------------------
    async def deliver(self, destination: str, txn_id: str, items: list[dict[str, Any]]) -> None:
        """Send one transaction to a service (outbound queue courier); raise to have it retried."""
        registration = self._app_services.registry.by_id(destination)
        if registration is None:
            # Its registration file is gone, perhaps for a while: keep what it has not received.
            raise TransactionRefused(f"application service {destination} is not registered (any more)")
        if registration.url is None:
            raise PermanentDeliveryError(f"application service {destination} has no URL any more")
        event_ids = [item["event_id"] for item in items if "event_id" in item]
        loaded = await self._events.get_events(event_ids) if event_ids else {}
        # Purged meanwhile: left out (the rest of the transaction still goes).
        events = [loaded[event_id] for event_id in event_ids if event_id in loaded]
        serialized = await self._serializer.serialize(events, None, bundle=False) if events else []
        content = TransactionContent(
            events=serialized,
            ephemeral=[item["ephemeral"] for item in items if "ephemeral" in item],
            to_device=[item["to_device"] for item in items if "to_device" in item],
            **(await self._msc3202_content(items) if registration.msc3202 else {}),
        )
        self._sender.queue_length_changed(registration, await self._store.queue_length(destination))
        if content.is_empty():
            return
        if not await self._sender.attempt(registration, PendingTransaction(txn_id, content)):
            raise TransactionRefused(f"application service {destination} did not accept transaction {txn_id}")
        self._sender.queue_length_changed(registration,
                                          max(0, await self._store.queue_length(destination) - len(items)))
