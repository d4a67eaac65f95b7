"""To-device messages: PUT /sendToDevice, and delivery through /sync's `to_device` section.

A message waits in its device's inbox until a sync *acknowledges* it: a sync whose `since` token
is at or past the message's position proves the client stored the response that carried it, so
only then is it deleted (a lost response is simply delivered again). At most `MAX_PER_SYNC`
messages go out per sync; the token then stops at the last one delivered, so the rest follow.
Stored messages are published as `ToDeviceQueued` (application services receive their users' ones).

Messages for users of other servers are published as `RemoteToDeviceQueued`, which federation
turns into durably queued `m.direct_to_device` EDUs before the request returns; messages that
arrive in such EDUs are stored like local ones, once per (sender, `message_id`).
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from typing import Any

from homeserver.clock import Clock
from homeserver.errors import bad_json, invalid_param
from homeserver.identifiers import parse_user_id
from homeserver.requester import Requester
from homeserver.streams.bus import StreamBus
from homeserver.streams.notifier import Notifier
from homeserver.streams.sources import DELIVERED_UPTO
from homeserver.streams.updates import RemoteToDeviceQueued, ToDeviceQueued
from storage.stores.to_device import TO_DEVICE, ToDeviceStore

logger = logging.getLogger(__name__)

MAX_PER_SYNC = 100
# The most a sliding sync client may ask for at once with the extension's `limit`.
MAX_LIMIT = 1000
# Devices whose acknowledged position is remembered, so that a sync acknowledging nothing new
# writes nothing (a wake of a thousand long polls would otherwise queue a thousand DELETEs ahead
# of the writes of senders).
ACKED_CACHE_DEVICES = 20_000
MAX_MESSAGES_PER_REQUEST = 10_000
# The sending "device" recorded for messages that came over federation (an EDU names no device):
# their `message_id`s are remembered under it, per sender, like a local device's transaction IDs.
FEDERATION_SENDER_DEVICE = ""


def parse_messages(body: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """`messages` of a /sendToDevice body as (user_id, device_id or `*`, content) triples."""
    messages = body.get("messages")
    if not isinstance(messages, dict):
        raise bad_json("messages: required, an object of user ID to {device ID: content}")
    out = []
    for user_id, devices in messages.items():
        parse_user_id(user_id, "messages")
        if not isinstance(devices, dict):
            raise bad_json(f"messages.{user_id}: must be an object of device ID to content")
        for device_id, content in devices.items():
            if not device_id:
                raise bad_json(f"messages.{user_id}: device IDs must not be empty")
            if not isinstance(content, dict):
                raise bad_json(f"messages.{user_id}.{device_id}: must be an object")
            out.append((user_id, device_id, content))
    if len(out) > MAX_MESSAGES_PER_REQUEST:
        raise bad_json(f"messages: at most {MAX_MESSAGES_PER_REQUEST} per request")
    return out


class ToDeviceService:
    """Sending to-device messages; also the /sync top-level source of the `to_device` stream."""

    stream_name = TO_DEVICE

    def __init__(self, server_name: str, store: ToDeviceStore, notifier: Notifier, clock: Clock,
                 bus: StreamBus | None = None):
        self._server_name = server_name
        self._bus = bus
        self._store = store
        self._notifier = notifier
        self._clock = clock
        # (user, device) -> position up to which its messages are known deleted.
        self._acked: OrderedDict[tuple[str, str], int] = OrderedDict()

    async def current_position(self) -> int:
        return await self._store.current_position()

    async def send(self, requester: Requester, event_type: str, txn_id: str, body: dict[str, Any]) -> None:
        """Queue the messages for their devices; a repeated txn_id from the same device is a no-op."""
        if not event_type:
            raise invalid_param("eventType: must not be empty")
        parsed = parse_messages(body)
        local = [(u, d, c) for u, d, c in parsed if u.partition(":")[2] == self._server_name]
        remote: dict[str, dict[str, dict[str, Any]]] = {}
        for user_id, device_id, content in parsed:
            server = user_id.partition(":")[2]
            if server != self._server_name:
                remote.setdefault(server, {}).setdefault(user_id, {})[device_id] = content
        deliveries = [(user_id, device_id, {"type": event_type, "sender": requester.user_id, "content": content})
                      for user_id, device_id, content in local]
        stored = await self._store.add_messages(requester.user_id, requester.device_id or "", txn_id,
                                                deliveries, self._clock.time_ms())
        if stored is None:
            return  # a retried request: everything was queued the first time
        await self._delivered(stored)
        if remote and self._bus is not None:
            await self._bus.publish(RemoteToDeviceQueued(requester.user_id, event_type, secrets.token_urlsafe(16),
                                                         remote))

    async def receive_remote(self, sender: str, event_type: str, message_id: str,
                             messages: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Store messages from another server's `m.direct_to_device` EDU; a repeated `message_id` is a no-op."""
        deliveries = [(user_id, device_id, {"type": event_type, "sender": sender, "content": content})
                      for user_id, device_id, content in messages]
        stored = await self._store.add_messages(sender, FEDERATION_SENDER_DEVICE, message_id, deliveries,
                                                self._clock.time_ms())
        if stored is not None:
            await self._delivered(stored)

    async def _delivered(self, stored: tuple[int, set[str]]) -> None:
        position, recipients = stored
        if not recipients:
            return
        self._notifier.notify_users(recipients)
        if self._bus is not None:
            await self._bus.publish(ToDeviceQueued(position, tuple(sorted(recipients))))

    async def sync_sections(self, user_id: str, device_id: str | None, from_position: int | None,
                            to_position: int, limit: int = MAX_PER_SYNC) -> dict[str, Any]:
        """Acknowledge what `from_position` covers, then deliver the next batch up to `to_position`:
        at most `limit` messages (capped at MAX_LIMIT; sliding sync's extension passes its `limit`)."""
        limit = min(limit, MAX_LIMIT)
        if device_id is None:
            return {}
        after = 0
        if from_position is not None:
            # A token from the future must not delete messages its holder never received.
            after = min(from_position, to_position)
            key = (user_id, device_id)
            if after > self._acked.get(key, 0):
                await self._store.delete_messages(user_id, device_id, after)
                # New messages get positions past the stream's current one, so none can arrive
                # at or below `after` later: this device has nothing there to delete again.
                self._acked[key] = after
                self._acked.move_to_end(key)
                while len(self._acked) > ACKED_CACHE_DEVICES:
                    self._acked.popitem(last=False)
        if after >= to_position:
            return {"to_device": {"events": []}}
        if limit <= 0:
            return {"to_device": {"events": []}, DELIVERED_UPTO: after}
        messages = await self._store.get_messages(user_id, device_id, after, to_position, limit)
        out: dict[str, Any] = {"to_device": {"events": [message for _, message in messages]}}
        if len(messages) == limit:
            out[DELIVERED_UPTO] = messages[-1][0]
        return out
