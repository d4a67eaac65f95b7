"""Who must re-fetch whose device keys: the device_lists stream as /sync and /keys/changes show it.

A user appears in `changed` when their devices or keys moved and they share a room with the
syncing user, or when they started sharing one (someone joined a room of ours, or we joined a room
of theirs); in `left` when a membership change means they share no room any more. The syncing user
always sees their own changes. Room sharing is judged on the rooms joined *now*, as Synapse does.
"""

from __future__ import annotations

import logging
from typing import Any

from homeserver.streams.bus import StreamBus
from homeserver.streams.flights import Flights
from homeserver.streams.notifier import Notifier
from homeserver.streams.updates import DeviceListChanged, EventPersisted, RoomSharingChanged
from storage.stores.e2ee import DEVICE_LISTS, DeviceListDelta, E2eeKeyStore
from storage.stores.events import EventStore

logger = logging.getLogger(__name__)

# Synapse always reports this count, even at zero, and clients treat a missing one as "upload more".
SIGNED_CURVE25519 = "signed_curve25519"


def candidate_users(user_id: str, delta: DeviceListDelta, my_rooms: set[str]
                    ) -> tuple[set[str], set[str], set[str], set[str]]:
    """From a stream delta: (users maybe changed, rooms whose members maybe changed,
    users maybe left, rooms whose members maybe left), before checking who shares a room now."""
    changed, changed_rooms, left, left_rooms = set(delta.key_changes), set(), set(), set()
    for change in delta.memberships:
        if change.user_id == user_id:
            (changed_rooms if change.joined else left_rooms).add(change.room_id)
        elif change.room_id in my_rooms:
            (changed if change.joined else left).add(change.user_id)
    return changed, changed_rooms, left, left_rooms


class DeviceListService:
    """The device_lists stream: announcing changes, and reading them back per user."""

    stream_name = DEVICE_LISTS

    def __init__(self, store: E2eeKeyStore, events: EventStore, notifier: Notifier, bus: StreamBus | None = None):
        self._store = store
        self._events = events
        self._notifier = notifier
        self._bus = bus
        self._key_counts = Flights()

    async def current_position(self) -> int:
        return await self._store.current_device_lists_position()

    async def notify_key_change(self, user_id: str) -> None:
        """Wake the syncs of everyone who shares a room with the user, and the user's own."""
        users = await self._store.get_users_sharing_a_room(user_id)
        self._notifier.notify_users(users | {user_id})
        if self._bus is not None:
            await self._bus.publish(DeviceListChanged(user_id))

    async def on_event_persisted(self, update: EventPersisted) -> None:
        """Record joins and leaves, which start or may end room sharing."""
        event = update.event
        if event.type != "m.room.member" or not event.state_key:
            return
        joined = event.content.get("membership") == "join"
        was_joined = False
        replaced = event.internal_metadata.get("replaces_state")
        if replaced:
            previous = await self._events.get_event(replaced)
            was_joined = previous is not None and previous.content.get("membership") == "join"
        if joined == was_joined:
            return  # a profile change, or invite/leave churn that never shared the room
        await self._store.record_membership_change(event.room_id, event.state_key, joined)
        self._notifier.notify_room(event.room_id)
        self._notifier.notify_users([event.state_key])
        if self._bus is not None:
            await self._bus.publish(RoomSharingChanged(event.room_id, event.state_key, joined))

    async def get_changes(self, user_id: str, from_position: int, to_position: int) -> tuple[list[str], list[str]]:
        """(changed, left) user IDs for `user_id` between two device_lists positions."""
        if from_position >= to_position:
            return [], []
        delta = await self._store.get_device_list_delta(from_position, to_position)
        if not delta.key_changes and not delta.memberships:
            return [], []
        my_rooms = await self._store.get_joined_rooms(user_id)
        changed, changed_rooms, left, left_rooms = candidate_users(user_id, delta, my_rooms)
        changed |= await self._store.get_joined_members(sorted(changed_rooms & my_rooms))
        left |= await self._store.get_joined_members(sorted(left_rooms - my_rooms))
        candidates = sorted((changed | left) - {user_id})
        sharing = await self._store.get_users_sharing_a_room(user_id, candidates)
        out_changed = changed & sharing
        if user_id in delta.key_changes:
            out_changed.add(user_id)
        out_left = left - sharing - {user_id}
        return sorted(out_changed), sorted(out_left)

    async def sync_sections(self, user_id: str, device_id: str | None, from_position: int | None,
                            to_position: int) -> dict[str, Any]:
        """The /sync top-level source: device_lists, one-time key counts and unused fallback key types."""
        out: dict[str, Any] = {}
        if from_position is not None and from_position < to_position:
            changed, left = await self.get_changes(user_id, from_position, to_position)
            out["device_lists"] = {"changed": changed, "left": left}
        if device_id is not None:
            # A message wakes every device of a user at once: one read answers them all. Only a
            # read that begins after this call is shared, so a count is never older than the sync.
            counts, fallback = await self._key_counts.run(
                user_id, self._key_counts.ticket(), lambda: self._store.get_key_counts_of_user(user_id))
            out["device_one_time_keys_count"] = {SIGNED_CURVE25519: 0, **counts.get(device_id, {})}
            out["device_unused_fallback_key_types"] = list(fallback.get(device_id, []))
        return out
