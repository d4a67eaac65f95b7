"""How other modules plug data into /sync without the engine knowing them.

- An `EphemeralSource` (typing, receipts, ...) owns one stream of the sync token: the engine asks
  for its position when building `next_batch`, and for the per-room ephemeral events between two
  positions of it (`from_position` None means "initial sync: the current snapshot").
- A `RoomFieldsProvider` adds keys to joined rooms in a response, e.g. `unread_notifications`
  from the push module; what it returns is merged over the engine's defaults.
- A `TopLevelSource` fills top-level sections (`to_device`, `device_lists`,
  `device_one_time_keys_count`, `presence`) from its own stream.

Each source must wake waiting syncs itself through `Notifier.notify_room` / `notify_users` when its
stream moves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.streams.client_tokens import SyncToken

# (user_id, room_ids, from_position or None, to_position) -> {room_id: [ephemeral event, ...]}
EphemeralEventsGetter = Callable[[str, Sequence[str], int | None, int],
                                 Awaitable[dict[str, list[dict[str, Any]]]]]
# (user_id, room_ids, since token or None, now token) -> {room_id: {key: value}}
RoomFieldsProvider = Callable[[str, Sequence[str], SyncToken | None, SyncToken],
                              Awaitable[dict[str, dict[str, Any]]]]
# (user_id, device_id, from_position or None, to_position) -> {top-level key: value}
TopLevelGetter = Callable[[str, str | None, int | None, int], Awaitable[dict[str, Any]]]
# A TopLevelSource that delivers only part of what is pending (to-device messages in batches) puts
# the position it delivered up to under this key; `next_batch` then stops there for its stream.
DELIVERED_UPTO = "__delivered_upto__"


@dataclass(frozen=True)
class EphemeralSource:
    stream: str
    current_position: Callable[[], Awaitable[int]]
    get_events: EphemeralEventsGetter


@dataclass(frozen=True)
class TopLevelSource:
    stream: str
    current_position: Callable[[], Awaitable[int]]
    get_sections: TopLevelGetter
    # Asked on every sync, not only when its stream moved: one-time key counts must always be
    # present once a device has keys, or clients keep uploading more.
    every_sync: bool = False
    # Whether what it returned counts as news that ends a long poll (counts of keys do not).
    is_news: Callable[[dict[str, Any]], bool] = lambda sections: any(
        bool(v.get("events") or v.get("changed") or v.get("left")) if isinstance(v, dict) else False
        for v in sections.values())
