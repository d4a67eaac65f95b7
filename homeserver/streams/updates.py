"""The committed changes services publish on the bus, one frozen dataclass per kind.

A consumer subscribes to a kind by its class. Every update describes something already
durable: a consumer that fails cannot undo it, so failures are logged, not raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.events.event import Event
from storage.stores.events import PersistContext


@dataclass(frozen=True, slots=True)
class EventPersisted:
    """A room event (local or from another server) is in the DAG and has a stream position."""

    event: Event
    context: PersistContext


@dataclass(frozen=True, slots=True)
class AccountDataChanged:
    user_id: str
    position: int


@dataclass(frozen=True, slots=True)
class PushRulesChanged:
    user_id: str
    position: int


@dataclass(frozen=True, slots=True)
class ProfileChanged:
    user_id: str
    displayname: str | None
    avatar_url: str | None


@dataclass(frozen=True, slots=True)
class ReadReceiptStored:
    """An `m.read` or `m.read.private` receipt moved the user's read position in a room."""

    room_id: str
    user_id: str
    event_id: str
    thread_id: str | None


@dataclass(frozen=True, slots=True)
class DeviceCreated:
    user_id: str
    device_id: str


@dataclass(frozen=True, slots=True)
class DeviceRenamed:
    """A local device's display name was set (other servers show it with the device's keys)."""

    user_id: str
    device_id: str


@dataclass(frozen=True, slots=True)
class DevicesDeleted:
    user_id: str
    device_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OutboundItemsQueued:
    """Items for a destination committed to the outbound queue; the queue should deliver them."""

    kind: str
    destination: str
    count: int


@dataclass(frozen=True, slots=True)
class RoomUpgraded:
    """A room was replaced by a new one; `local_user_ids` were its local members."""

    old_room_id: str
    new_room_id: str
    local_user_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TypingChanged:
    """The users typing in a room changed (typing lives in memory only; `user_ids` is the new list)."""

    room_id: str
    user_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """A local user's presence changed (stored); `content` as an `m.presence` event carries it."""

    user_id: str
    content: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToDeviceQueued:
    """To-device messages were stored at `position` for these local users' devices."""

    position: int
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RemoteToDeviceQueued:
    """A local user sent to-device messages to users of other servers (their `txn_id` is recorded):
    `messages` is {server: {user_id: {device_id or "*": content}}}, all of one `event_type`, sent
    once under `message_id`. Consumers that send them must have queued them durably on return."""

    sender: str
    event_type: str
    message_id: str
    messages: dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class DeviceListChanged:
    """A user's devices or device keys changed (the device_lists stream moved for them): a local
    user's, or another server's user's list that we cache (homeserver/e2ee/remote_devices.py)."""

    user_id: str


@dataclass(frozen=True, slots=True)
class RoomSharingChanged:
    """A user became joined to a room (`joined`) or stopped being joined: whom they share rooms
    with, and so whose device lists concern them, may have changed."""

    room_id: str
    user_id: str
    joined: bool


@dataclass(frozen=True, slots=True)
class OneTimeKeysChanged:
    """One-time or fallback keys of these local devices were uploaded or claimed (their counts moved)."""

    user_id: str
    device_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PartialStateRoomCompleted:
    """A room joined with partial state has its full state; `stream_ordering` is the events stream
    position of that change (a /sync from before it gets the room's whole state again).
    `servers_in_room` are the servers the join answer named (those the room counted until now)."""

    room_id: str
    stream_ordering: int
    servers_in_room: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RoomPurged:
    """A room's events and state were deleted outside the persister (an admin's room purge):
    whatever was remembered of its memberships must be read again."""

    room_id: str
