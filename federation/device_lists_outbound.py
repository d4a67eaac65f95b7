"""Telling other servers about our users' devices, and carrying their to-device messages.

The `federation_device_lists` stage follows the device_lists stream. Each change of a local user
becomes an EDU for every other server with a user in a room with them: a change to one device an
`m.device_list_update` (its position on our stream is the EDU's `stream_id`, the user's previous
device change its `prev_id`, and the device's current name and keys, merged with the signatures
uploaded for it, or `deleted` when it is gone), a change to the user's cross-signing keys an
`m.signing_key_update`. The EDUs are queued in the transaction that moves the stage, so a crash
neither loses nor repeats them; on start the stage catches up from its saved position.

Stream positions are unique per change (storage/stores/e2ee.py), so the `stream_id`s of one user
never repeat, and GET /user/devices answers the latest as the list's `stream_id`.

A room joined with partial state (faster joins) counts its `servers_in_room` (from the join
answer) among the servers sharing it until its full state is in: its member list names only some.

When one of our users joins a room, the room's servers that shared no room with them before this
join are told the user's current list (the spec: "when that user joins a room which contains
servers which are not already receiving updates for that user's device list"): one
`m.device_list_update` per device, each with the list's current `stream_id` and no `prev_id`, so
the server fetches the list whole (`GET /user/devices`) and follows the chain from there. The
hand-off stage (federation/outbound.py) asks `join_edus` for them and queues them right after the
join, in its transaction.

A room joined with partial state learns its whole member list only when its full state arrives;
the servers that list adds (and that share no other room with our user) are told the user's list
then, the same way. Those EDUs are queued by a bus consumer after the state committed, so a crash
between the two loses them; the server still learns the list when one of its users first asks for
our user's keys (`/user/keys/query`), as it does for any user it has no list of.

To-device messages for other servers (`RemoteToDeviceQueued`) are queued as one
`m.direct_to_device` EDU per server before the sending request returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from federation.policy import ServerPolicy
from homeserver.clock import Clock
from homeserver.events.event import Event
from homeserver.streams.bus import StreamBus
from homeserver.streams.updates import (
    DeviceListChanged,
    OutboundItemsQueued,
    PartialStateRoomCompleted,
    RemoteToDeviceQueued,
)
from storage.stores.e2ee import NO_DEVICE, DeviceListChange, E2eeKeyStore
from storage.stores.federation_outbound import FEDERATION_KIND, FederationOutboundStore
from storage.stores.partial_state import PartialStateStore
from storage.stores.stages import StagePositionStore

logger = logging.getLogger(__name__)

DEVICE_LISTS_STAGE = "federation_device_lists"
BATCH = 200
MAX_RETRY_S = 30.0


def _server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


class DeviceListSender:
    """The `federation_device_lists` stage, and the to-device hand-off."""

    def __init__(self, server_name: str, e2ee: E2eeKeyStore, outbound: FederationOutboundStore,
                 positions: StagePositionStore, bus: StreamBus, clock: Clock, policy: ServerPolicy, *,
                 enabled: bool = True, partial_state: PartialStateStore | None = None):
        self._server_name = server_name
        self._partial_state = partial_state
        self._e2ee = e2ee
        self._outbound = outbound
        self._positions = positions
        self._bus = bus
        self._clock = clock
        self._policy = policy
        self._enabled = enabled
        self._position = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        current = await self._e2ee.current_device_lists_position()
        saved = await self._positions.get(DEVICE_LISTS_STAGE)
        if saved is None or not self._enabled:
            # A new stage starts at the live end; with federation off, nothing is owed to anyone.
            saved = current
            await self._positions.save(DEVICE_LISTS_STAGE, saved)
        self._position = saved
        self._wakeup.set()
        self._task = asyncio.create_task(self._run(), name=f"stage-{DEVICE_LISTS_STAGE}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def on_device_list_changed(self, update: DeviceListChanged) -> None:
        """Bus consumer: a local user's devices or keys changed; catch up."""
        self._wakeup.set()

    # --- the loop --------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = 0.5
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                while await self._step():
                    pass
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("stage %s failed after position %d; retrying in %.1fs", DEVICE_LISTS_STAGE,
                                 self._position, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_S)
                self._wakeup.set()

    async def _step(self) -> bool:
        """Hand off the next batch of changes; False when there was nothing to do."""
        current = await self._e2ee.current_device_lists_position()
        if self._position >= current:
            return False
        changes = await self._e2ee.get_device_list_changes(self._position, current, BATCH)
        upto = changes[-1].stream_id if len(changes) == BATCH else current
        queued: dict[str, list[dict[str, Any]]] = {}
        destinations_of: dict[str, list[str]] = {}
        for change in changes:
            if _server_of(change.user_id) != self._server_name:
                continue  # a remote user's list we cache: theirs to announce
            if change.user_id not in destinations_of:
                destinations_of[change.user_id] = await self._destinations(change.user_id)
            if not destinations_of[change.user_id]:
                continue
            edu = await self._edu_for(change)
            for destination in destinations_of[change.user_id]:
                queued.setdefault(destination, []).append({"edu": edu})
        await self._outbound.queue_items(queued, stage=DEVICE_LISTS_STAGE, upto=upto, now_ms=self._clock.time_ms())
        self._position = upto
        for destination, items in queued.items():
            await self._bus.publish(OutboundItemsQueued(FEDERATION_KIND, destination, len(items)))
        return True

    async def _destinations(self, user_id: str) -> list[str]:
        servers = {_server_of(u) for u in await self._e2ee.get_users_sharing_a_room(user_id)}
        servers |= await self._partial_room_servers(user_id)
        servers.discard(self._server_name)
        return sorted(s for s in servers if s and self._policy.denial_reason(s) is None)

    async def _partial_room_servers(self, user_id: str, skip_room: str | None = None) -> set[str]:
        """The `servers_in_room` of the rooms with partial state the user is joined to."""
        if self._partial_state is None:
            return set()
        partial = await self._partial_state.room_ids()
        partial.discard(skip_room or "")
        if not partial:
            return set()
        servers: set[str] = set()
        for room_id in sorted(partial & await self._e2ee.get_joined_rooms(user_id)):
            room = await self._partial_state.get_room(room_id)
            if room is not None:
                servers.update(room.servers_in_room)
        return servers

    # --- a join brings new servers ---------------------------------------------------------------
    async def join_edus(self, join: Event, destinations: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """The EDUs owed to the servers our user's `join` goes to that shared no room with the user
        before it: the user's current device list, which makes them fetch it whole."""
        user_id = join.state_key or ""
        if not self._enabled or _server_of(user_id) != self._server_name:
            return {}
        position = int(join.internal_metadata.get("stream_ordering") or 0)
        before = {_server_of(u) for u in
                  await self._e2ee.get_users_sharing_a_room_joined_before(user_id, join.room_id, position)}
        before |= await self._partial_room_servers(user_id, skip_room=join.room_id)
        new = sorted(set(destinations) - before - {self._server_name})
        if not new:
            return {}
        edus = await self._current_list_edus(user_id)
        return {destination: list(edus) for destination in new} if edus else {}

    # --- a partial-state room's full member list names more servers ----------------------------
    async def on_partial_state_completed(self, update: PartialStateRoomCompleted) -> None:
        """Bus consumer: the full state of a room joined with partial state is in, and its member
        list may name servers the join answer did not. Each of our users in the room owes those
        that share no other room with the user its current device list, as after a join."""
        if not self._enabled:
            return
        members = await self._e2ee.get_joined_members([update.room_id])
        known = set(update.servers_in_room) | {self._server_name}
        newly_found = {_server_of(u) for u in members} - known
        newly_found = {s for s in newly_found if self._policy.denial_reason(s) is None}
        if not newly_found:
            return
        owed: dict[str, list[dict[str, Any]]] = {}
        for user_id in sorted(u for u in members if _server_of(u) == self._server_name):
            sharing = {_server_of(u) for u in await self._e2ee.get_users_sharing_a_room_joined_before(
                user_id, update.room_id, update.stream_ordering)}
            sharing |= await self._partial_room_servers(user_id, skip_room=update.room_id)
            new = newly_found - sharing
            if not new:
                continue
            edus = await self._current_list_edus(user_id)
            for server in new:
                owed.setdefault(server, []).extend(edus)
        now = self._clock.time_ms()
        for server, edus in sorted(owed.items()):
            if edus:
                await self._outbound.queue_edus(server, edus, now)
                await self._bus.publish(OutboundItemsQueued(FEDERATION_KIND, server, len(edus)))

    async def _current_list_edus(self, user_id: str) -> list[dict[str, Any]]:
        """One `m.device_list_update` per device with keys, at the list's current `stream_id`."""
        stream_id = await self._e2ee.get_last_device_change(user_id)
        edus = []
        for device in await self._e2ee.get_devices_with_keys(user_id):
            if not device.keys:
                continue  # as GET /user/devices: a device without keys is not listed
            content: dict[str, Any] = {"user_id": user_id, "device_id": device.device_id, "stream_id": stream_id,
                                       "prev_id": [], "keys": device.keys}
            if device.display_name is not None:
                content["device_display_name"] = device.display_name
            edus.append({"edu_type": "m.device_list_update", "content": content})
        return edus

    async def _edu_for(self, change: DeviceListChange) -> dict[str, Any]:
        if change.device_id == NO_DEVICE:
            keys = (await self._e2ee.get_cross_signing_keys([change.user_id])).get(change.user_id, {})
            content: dict[str, Any] = {"user_id": change.user_id}
            if "master" in keys:
                content["master_key"] = keys["master"]
            if "self_signing" in keys:
                content["self_signing_key"] = keys["self_signing"]
            return {"edu_type": "m.signing_key_update", "content": content}
        devices = {row.device_id: row for row in await self._e2ee.get_devices_with_keys(change.user_id)}
        content = {"user_id": change.user_id, "device_id": change.device_id, "stream_id": change.stream_id,
                   "prev_id": [] if change.previous is None else [change.previous]}
        device = devices.get(change.device_id)
        if device is None:
            content["deleted"] = True
        else:
            if device.display_name is not None:
                content["device_display_name"] = device.display_name
            if device.keys:
                content["keys"] = device.keys
        return {"edu_type": "m.device_list_update", "content": content}

    # --- to-device ---------------------------------------------------------------------------
    async def on_remote_to_device(self, update: RemoteToDeviceQueued) -> None:
        """Queue an `m.direct_to_device` EDU per server (durably, before the sender's request returns)."""
        if not self._enabled:
            logger.info("dropping to-device messages of %s for other servers: federation is off", update.sender)
            return
        for server, messages in update.messages.items():
            if self._policy.denial_reason(server) is not None:
                continue
            edu = {"edu_type": "m.direct_to_device",
                   "content": {"sender": update.sender, "type": update.event_type,
                               "message_id": update.message_id, "messages": messages}}
            await self._outbound.queue_edus(server, [edu], self._clock.time_ms())
            await self._bus.publish(OutboundItemsQueued(FEDERATION_KIND, server, 1))
