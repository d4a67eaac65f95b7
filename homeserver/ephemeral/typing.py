"""Typing notifications: who is typing in which room, kept in memory on the `typing` stream.

Typing state is deliberately not persisted: it lives for seconds, and losing it on a restart
only means a typing indicator disappears early. The stream position therefore restarts at 0
with the process; a sync token from before a restart can hold a larger typing position than the
new process has reached, and such a token is treated as "from the beginning" so the client gets
the current typing lists instead of waiting until the counter catches up.

Every change (start, stop, expiry, leaving the room) moves the stream, wakes the room's
waiting syncs and is published as `TypingChanged` (application services hear it that way). Refreshing an ongoing typing notification only extends its expiry: the list of
typing users did not change, so there is nothing to deliver.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from typing import Any

from homeserver.errors import bad_json, forbidden, invalid_param, missing_param
from homeserver.identifiers import parse_user_id
from homeserver.streams.bus import StreamBus
from homeserver.streams.notifier import Notifier
from homeserver.streams.updates import EventPersisted, TypingChanged
from storage.stores.events import EventStore

TYPING = "typing"
TYPING_EVENT_TYPE = "m.typing"
DEFAULT_TIMEOUT_MS = 30_000
# Clients re-send every 20-30 s; longer timeouts only leave stale indicators behind (Synapse caps the same).
MAX_TIMEOUT_MS = 120_000
# Another server's typing notification carries no timeout: it lasts this long unless renewed (the
# sending server renews it while its user types, Synapse every 40 s) or stopped, as in Synapse.
REMOTE_TIMEOUT_MS = 60_000


def parse_typing_body(body: dict[str, Any]) -> tuple[bool, int]:
    """(typing, timeout_ms) from a typing request body; 400 naming the field when malformed."""
    if "typing" not in body:
        raise missing_param("typing: required")
    typing = body["typing"]
    if not isinstance(typing, bool):
        raise bad_json("typing: must be a boolean")
    timeout = body.get("timeout", DEFAULT_TIMEOUT_MS)
    if not typing and "timeout" not in body:
        return False, 0
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout):
        raise bad_json("timeout: must be an integer number of milliseconds")
    if timeout < 0:
        raise invalid_param("timeout: must not be negative")
    return typing, min(int(timeout), MAX_TIMEOUT_MS)


def typing_event(user_ids: Iterable[str]) -> dict[str, Any]:
    return {"type": TYPING_EVENT_TYPE, "content": {"user_ids": sorted(user_ids)}}


class TypingService:
    """Typing state per room with expiry timers; also the sync ephemeral provider of the `typing` stream."""

    stream_name = TYPING

    def __init__(self, events: EventStore, notifier: Notifier, bus: StreamBus | None = None):
        self._events = events
        self._notifier = notifier
        self._bus = bus
        # Publications in flight (expiry timers change the state outside any request).
        self._publishing: set[asyncio.Task[None]] = set()
        self._position = 0
        # room -> user -> the timer that ends their typing
        self._typing: dict[str, dict[str, asyncio.TimerHandle]] = {}
        # room -> the position of its last change
        self._room_positions: dict[str, int] = {}

    # --- requests ---------------------------------------------------------------------
    async def set_typing(self, requester_id: str, room_id: str, user_id: str, typing: bool,
                         timeout_ms: int) -> None:
        """Start (for `timeout_ms`) or stop the requester's typing notification in a room they are in."""
        parse_user_id(user_id, "userId")
        if user_id != requester_id:
            raise forbidden("userId: cannot set the typing state of another user")
        membership, _ = await self._events.get_membership(room_id, user_id)
        if membership != "join":
            raise forbidden(f"You are not joined to {room_id}")
        if typing:
            self._start(room_id, user_id, timeout_ms)
        else:
            self._stop(room_id, user_id)

    async def set_remote_typing(self, room_id: str, user_id: str, typing: bool) -> bool:
        """Start (for REMOTE_TIMEOUT_MS) or stop another server's user's typing; False when they are not joined.

        The caller (federation) has checked that the user belongs to the server that sent it."""
        membership, _ = await self._events.get_membership(room_id, user_id)
        if membership != "join":
            return False
        if typing:
            self._start(room_id, user_id, REMOTE_TIMEOUT_MS)
        else:
            self._stop(room_id, user_id)
        return True

    async def on_event_persisted(self, update: EventPersisted) -> None:
        """Drop the typing state of a member who leaves (or is kicked or banned from) the room."""
        event = update.event
        if event.type == "m.room.member" and event.state_key is not None and event.membership != "join":
            self._stop(event.room_id, event.state_key)

    # --- state ------------------------------------------------------------------------
    def _start(self, room_id: str, user_id: str, timeout_ms: int) -> None:
        loop = asyncio.get_running_loop()
        room = self._typing.setdefault(room_id, {})
        previous = room.get(user_id)
        room[user_id] = loop.call_later(timeout_ms / 1000, self._expire, room_id, user_id)
        if previous is not None:
            previous.cancel()
            return
        self._changed(room_id)

    def _stop(self, room_id: str, user_id: str) -> None:
        room = self._typing.get(room_id)
        handle = room.pop(user_id, None) if room else None
        if handle is None:
            return
        handle.cancel()
        if not room:
            del self._typing[room_id]
        self._changed(room_id)

    def _expire(self, room_id: str, user_id: str) -> None:
        self._stop(room_id, user_id)

    def _changed(self, room_id: str) -> None:
        self._position += 1
        self._room_positions[room_id] = self._position
        self._notifier.notify_room(room_id)
        if self._bus is not None and self._bus.has_consumers(TypingChanged):
            task = asyncio.get_running_loop().create_task(
                self._bus.publish(TypingChanged(room_id, tuple(self.typing_users(room_id)))))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    def typing_users(self, room_id: str) -> list[str]:
        """Who is typing in the room right now."""
        return sorted(self._typing.get(room_id, ()))

    # --- the sync provider ------------------------------------------------------------
    async def current_position(self) -> int:
        return self._position

    async def events_for_rooms(self, user_id: str, room_ids: Iterable[str], from_pos: int | None,
                               to_pos: int) -> dict[str, list[dict[str, Any]]]:
        """`m.typing` events of the rooms whose typing list changed after `from_pos`.

        `from_pos` None (an initial sync) gives the rooms where someone is typing now. The event
        is the room's current list (typing is a snapshot that clients replace wholesale), so a
        change after `to_pos` is already included; the next sync repeats the same list, which is
        harmless.
        """
        if from_pos is None:
            return {room_id: [typing_event(self._typing[room_id])] for room_id in room_ids
                    if self._typing.get(room_id)}
        if from_pos > self._position:
            from_pos = 0  # a token from before a restart: start over
        changed: dict[str, list[dict[str, Any]]] = {}
        for room_id in room_ids:
            position = self._room_positions.get(room_id)
            if position is not None and position > from_pos:
                changed[room_id] = [typing_event(self._typing.get(room_id, ()))]
        return changed

    async def stop(self) -> None:
        for task in list(self._publishing):
            task.cancel()
        for room in self._typing.values():
            for handle in room.values():
                handle.cancel()
        self._typing.clear()
