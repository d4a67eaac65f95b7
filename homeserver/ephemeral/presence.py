"""Presence: online / unavailable / offline with idle and offline timeouts, on the `presence` stream.

The state machine is pure (`apply_sync`, `apply_activity`, `apply_timeouts`); the service keeps
each local user's state in memory, writes a change (never a mere refresh) to the database at a
new stream position, wakes the syncs of everyone sharing a room with the user and publishes
`PresenceChanged`.

- A sync with `set_presence=online` turns an offline user online; `unavailable` sets that state;
  `offline` leaves presence alone (a background sync should not keep the user online).
- Activity (sending an event, PUT online) makes a user online and currently active.
- Online users without activity for IDLE_TIMEOUT_MS become unavailable; users who neither sync
  nor act for OFFLINE_TIMEOUT_MS go offline. A long-polling sync counts as syncing throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from homeserver.clock import Clock
from homeserver.errors import bad_json, forbidden, invalid_param
from homeserver.identifiers import parse_user_id
from homeserver.requester import Requester
from homeserver.streams.bus import StreamBus
from homeserver.streams.notifier import Notifier
from homeserver.streams.updates import EventPersisted, PresenceChanged
from storage.stores.events import EventStore
from storage.stores.presence import PRESENCE, PresenceRow, PresenceStore

logger = logging.getLogger(__name__)

ONLINE, UNAVAILABLE, OFFLINE = "online", "unavailable", "offline"
STATES = (ONLINE, UNAVAILABLE, OFFLINE)
IDLE_TIMEOUT_MS = 5 * 60_000
OFFLINE_TIMEOUT_MS = 30_000
# Active within this long counts as `currently_active`; as in Synapse.
CURRENTLY_ACTIVE_MS = 60_000
CHECK_INTERVAL_S = 5.0
# Other servers re-send their users' presence at least every 25 minutes (Synapse does); a user whose
# server has been silent for longer is taken to be offline, as in Synapse.
REMOTE_TIMEOUT_MS = 30 * 60_000
MAX_STATUS_MSG = 1024


def initial_row(user_id: str, now: int) -> PresenceRow:
    return PresenceRow(user_id, OFFLINE, None, 0, 0, False)


def apply_sync(row: PresenceRow, set_presence: str, now: int) -> PresenceRow:
    """The state after a sync request with `set_presence`."""
    if set_presence == OFFLINE:
        return row
    row = dataclasses.replace(row, last_user_sync_ts=now)
    if set_presence == UNAVAILABLE and row.state != UNAVAILABLE:
        return dataclasses.replace(row, state=UNAVAILABLE, explicit_unavailable=False)
    if set_presence == ONLINE and row.state == OFFLINE:
        return dataclasses.replace(row, state=ONLINE, last_active_ts=now, explicit_unavailable=False)
    return row


def apply_activity(row: PresenceRow, now: int) -> PresenceRow:
    """The state after the user did something (sent an event)."""
    return dataclasses.replace(row, state=ONLINE, last_active_ts=now, explicit_unavailable=False)


def apply_set(row: PresenceRow, state: str, status_msg: str | None, now: int) -> PresenceRow:
    """The state after an explicit PUT /presence/{userId}/status."""
    changed = dataclasses.replace(row, state=state, status_msg=status_msg,
                                  explicit_unavailable=state == UNAVAILABLE)
    if state == ONLINE:
        changed = dataclasses.replace(changed, last_active_ts=now, last_user_sync_ts=max(row.last_user_sync_ts, now))
    return changed


def apply_timeouts(row: PresenceRow, now: int, syncing: bool, *, idle_ms: int = IDLE_TIMEOUT_MS,
                   offline_ms: int = OFFLINE_TIMEOUT_MS) -> PresenceRow:
    """The state once idle and offline timeouts have been applied at `now`."""
    if row.state == OFFLINE:
        return row
    if not syncing and now - max(row.last_user_sync_ts, row.last_active_ts) > offline_ms:
        return dataclasses.replace(row, state=OFFLINE, explicit_unavailable=False)
    if row.state == ONLINE and now - row.last_active_ts > idle_ms:
        return dataclasses.replace(row, state=UNAVAILABLE, explicit_unavailable=False)
    return row


def apply_remote(row: PresenceRow, state: str, status_msg: str | None, last_active_ago: int | None,
                 now: int) -> PresenceRow:
    """Another server's user's presence after an update from their server; `last_user_sync_ts`
    holds when their server last told us (what REMOTE_TIMEOUT_MS counts from)."""
    last_active = row.last_active_ts if last_active_ago is None else max(0, now - last_active_ago)
    return dataclasses.replace(row, state=state, status_msg=status_msg, last_active_ts=last_active,
                               last_user_sync_ts=now, explicit_unavailable=False)


def apply_remote_timeout(row: PresenceRow, now: int, *, timeout_ms: int = REMOTE_TIMEOUT_MS) -> PresenceRow:
    """Another server's user goes offline when their server has said nothing for `timeout_ms`."""
    if row.state != OFFLINE and now - row.last_user_sync_ts > timeout_ms:
        return dataclasses.replace(row, state=OFFLINE)
    return row


def is_significant(before: PresenceRow, after: PresenceRow, now: int) -> bool:
    """Whether a change is worth a stream position: what other users see changed."""
    return (before.state != after.state or before.status_msg != after.status_msg
            or currently_active(before, now) != currently_active(after, now))


def currently_active(row: PresenceRow, now: int) -> bool:
    return row.state == ONLINE and now - row.last_active_ts < CURRENTLY_ACTIVE_MS


def presence_content(row: PresenceRow, now: int) -> dict[str, Any]:
    """The `content` of an m.presence event (and the GET /presence response)."""
    content: dict[str, Any] = {"presence": row.state}
    if row.last_active_ts:
        content["last_active_ago"] = max(0, now - row.last_active_ts)
    if row.state != OFFLINE:
        content["currently_active"] = currently_active(row, now)
    if row.status_msg is not None:
        content["status_msg"] = row.status_msg
    return content


def parse_presence_body(body: Mapping[str, Any]) -> tuple[str, str | None]:
    state = body.get("presence")
    if state not in STATES:
        raise invalid_param(f"presence: must be one of {', '.join(STATES)}")
    status_msg = body.get("status_msg")
    if status_msg is not None and not isinstance(status_msg, str):
        raise bad_json("status_msg: must be a string")
    if status_msg is not None and len(status_msg) > MAX_STATUS_MSG:
        raise invalid_param(f"status_msg: at most {MAX_STATUS_MSG} characters")
    return state, status_msg


class PresenceService:
    """Presence of local users; also the /sync top-level source of the `presence` stream."""

    stream_name = PRESENCE

    def __init__(self, server_name: str, store: PresenceStore, events: EventStore, notifier: Notifier,
                 clock: Clock, *, enabled: bool = True, bus: StreamBus | None = None):
        self._server_name = server_name
        self._bus = bus
        self._store = store
        self._events = events
        self._notifier = notifier
        self._clock = clock
        self.enabled = enabled
        self._rows: dict[str, PresenceRow] = {}
        self._syncing: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._check_timeouts_periodically())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _check_timeouts_periodically(self) -> None:
        await self._resume_timeouts()
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            try:
                await self.check_timeouts()
            except Exception:
                logger.exception("presence timeout check failed")

    async def _resume_timeouts(self) -> None:
        """Users left online or unavailable by the last run go on being timed out: their rows are
        taken into memory, where `check_timeouts` looks (a row already changed meanwhile is kept)."""
        try:
            for row in await self._store.get_not_offline():
                self._rows.setdefault(row.user_id, row)
        except Exception:
            logger.exception("reading the presence left by the last run failed")

    async def local_users_not_offline(self) -> list[str]:
        """Our users whose stored presence is online or unavailable."""
        if not self.enabled:
            return []
        return sorted(row.user_id for row in await self._store.get_not_offline() if self._is_local(row.user_id))

    async def check_timeouts(self) -> None:
        """Move idle users to unavailable and absent ones to offline."""
        now = self._clock.time_ms()
        for user_id, row in list(self._rows.items()):
            if row.state == OFFLINE:
                continue
            if not self._is_local(user_id):
                await self._update(user_id, lambda r: apply_remote_timeout(r, now))
                continue
            syncing = self._syncing.get(user_id, 0) > 0
            await self._update(user_id, lambda r, syncing=syncing: apply_timeouts(r, now, syncing))

    # --- state --------------------------------------------------------------------------
    async def _current(self, user_id: str) -> PresenceRow:
        row = self._rows.get(user_id)
        if row is None:
            row = await self._store.get_presence(user_id) or initial_row(user_id, self._clock.time_ms())
            self._rows.setdefault(user_id, row)
            row = self._rows[user_id]
        return row

    async def _update(self, user_id: str, change) -> None:
        async with self._lock:
            before = await self._current(user_id)
            after = change(before)
            if after == before:
                return
            now = self._clock.time_ms()
            if not is_significant(before, after, now):
                self._rows[user_id] = after  # a refresh: kept in memory, written with the next change
                return
            self._rows[user_id] = stored = await self._store.store_presence(after)
        self._notifier.notify_users([user_id])
        for room_id in await self._events.get_rooms_for_user(user_id, ("join",)):
            self._notifier.notify_room(room_id)
        if self._bus is not None:
            await self._bus.publish(PresenceChanged(user_id, presence_content(stored, now)))

    def _is_local(self, user_id: str) -> bool:
        # Everything after the first colon: server names may carry a port.
        return user_id.split(":", 1)[1] == self._server_name if ":" in user_id else False

    # --- requests -----------------------------------------------------------------------
    async def get_presence(self, requester: Requester, user_id: str) -> dict[str, Any]:
        """A user's presence, for themselves or users sharing a room with them."""
        parse_user_id(user_id, "userId")
        if user_id != requester.user_id and not await self._store.shares_room(requester.user_id, user_id):
            raise forbidden("You are not allowed to see their presence")
        if not self.enabled:
            return {"presence": OFFLINE}
        now = self._clock.time_ms()
        return presence_content(await self._current(user_id), now)

    async def set_presence(self, requester: Requester, user_id: str, body: Mapping[str, Any]) -> None:
        """Set the requester's own presence and status message."""
        parse_user_id(user_id, "userId")
        if user_id != requester.user_id:
            raise forbidden("You can only set your own presence")
        state, status_msg = parse_presence_body(body)
        if not self.enabled:
            return
        now = self._clock.time_ms()
        await self._update(user_id, lambda r: apply_set(r, state, status_msg, now))

    async def set_remote_presence(self, user_id: str, state: str, status_msg: str | None,
                                  last_active_ago: int | None) -> None:
        """Another server's user's presence as their server sent it (federation checked the server)."""
        if not self.enabled or self._is_local(user_id) or state not in STATES:
            return
        now = self._clock.time_ms()
        await self._update(user_id, lambda r: apply_remote(r, state, status_msg, last_active_ago, now))

    async def clear(self, user_id: str) -> None:
        """Offline, without a status message (erasure)."""
        now = self._clock.time_ms()
        await self._update(user_id, lambda r: apply_set(r, OFFLINE, None, now))

    @contextlib.asynccontextmanager
    async def syncing(self, user_id: str, set_presence: str) -> AsyncIterator[None]:
        """Around a /sync request: applies `set_presence` and counts the user as syncing meanwhile."""
        if not self.enabled or set_presence == OFFLINE:
            yield
            return
        self._syncing[user_id] = self._syncing.get(user_id, 0) + 1
        try:
            now = self._clock.time_ms()
            await self._update(user_id, lambda r: apply_sync(r, set_presence, now))
            yield
        finally:
            remaining = self._syncing[user_id] - 1
            if remaining:
                self._syncing[user_id] = remaining
            else:
                del self._syncing[user_id]
                # Leaving a long poll is the last sign of life the offline timeout counts from.
                done = self._clock.time_ms()
                row = self._rows.get(user_id)
                if row is not None:
                    self._rows[user_id] = dataclasses.replace(row, last_user_sync_ts=done)

    async def on_event_persisted(self, update: EventPersisted) -> None:
        """A local user sending an event is active."""
        event = update.event
        if not self.enabled or not self._is_local(event.sender):
            return
        now = self._clock.time_ms()
        await self._update(event.sender, lambda r: apply_activity(r, now))

    async def presence_events(self, user_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Current m.presence events of these users, offline ones included (as Synapse sends for
        users who newly share a room with the syncing user)."""
        if not self.enabled or not user_ids:
            return []
        stored = {row.user_id: row for row in await self._store.get_presence_many(sorted(set(user_ids)))}
        now = self._clock.time_ms()
        events = []
        for user_id in sorted(set(user_ids)):
            row = self._rows.get(user_id) or stored.get(user_id) or initial_row(user_id, now)
            events.append({"type": "m.presence", "sender": user_id, "content": presence_content(row, now)})
        return events

    # --- the sync source ----------------------------------------------------------------
    async def current_position(self) -> int:
        return await self._store.current_position()

    async def sync_sections(self, user_id: str, device_id: str | None, from_pos: int | None,
                            to_pos: int) -> dict[str, Any]:
        """`presence.events` of users sharing a room with the user, changed between the positions.

        An initial sync gets everyone not offline (and offline users with a status message).
        """
        if not self.enabled:
            return {}
        if from_pos is not None and from_pos > to_pos:
            from_pos = None
        rows = await self._store.get_co_member_presence(user_id, from_pos, to_pos)
        now = self._clock.time_ms()
        events = []
        for stored in sorted(rows, key=lambda r: r.user_id):
            row = self._rows.get(stored.user_id, stored)
            if from_pos is None and row.state == OFFLINE and row.status_msg is None:
                continue
            events.append({"type": "m.presence", "sender": row.user_id, "content": presence_content(row, now)})
        return {"presence": {"events": events}}
