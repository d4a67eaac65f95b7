"""Our users' typing, read receipts and presence, sent as EDUs to the servers that should hear them.

A consumer of the stream bus (homeserver/server.py subscribes it; the services know nothing of
federation). Each EDU is queued per destination on the durable outbound queue with
`FederationHandoff.queue_edus`, and rides the next transaction to that server.

- Typing (`TypingChanged` carries a room's whole list): the local users who started or stopped
  typing since the last list are sent to every other server with a member joined to the room.
  Other servers expire a typing notification after a while (Synapse: 60 s) unless renewed, so a
  user still typing is sent again every TYPING_RENEW_S.
- Receipts (`ReadReceiptStored`): a local user's public `m.read` receipt (threaded or not) goes to
  the room's servers; private receipts never leave.
- Presence (`PresenceChanged`): collected for PRESENCE_BATCH_S, then each server sharing a room
  with any of the changed users gets one `m.presence` EDU listing the users it shares a room with.
  A server that newly joins a room gets the presence of our users in it, and our user joining a
  room has their presence sent to the room's servers (offline users are left out of both).
  Other servers take a user they have not heard about for 30 minutes to be offline (Synapse), so a
  user who stays online or unavailable without a change is sent again every PRESENCE_RESEND_MS
  (25 minutes, as Synapse pings): `resend_presence`, run every PRESENCE_RESEND_CHECK_S. When each
  was last sent is kept in memory only, so after a restart (`start`) every user the last run left
  online or unavailable is due at the first check: sent once too often rather than timed out.

In a room joined with partial state the room's servers include the join answer's `servers_in_room`
until its full state arrives (federation/room_hosts.py), as for our events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from federation.outbound import server_of
from federation.room_hosts import joined_hosts
from homeserver.clock import Clock
from homeserver.streams.updates import EventPersisted, PresenceChanged, ReadReceiptStored, TypingChanged
from storage.stores.events import EventStore
from storage.stores.partial_state import PartialStateStore
from storage.stores.receipts import StoredReceipt

logger = logging.getLogger(__name__)

TYPING_EDU = "m.typing"
RECEIPT_EDU = "m.receipt"
PRESENCE_EDU = "m.presence"
READ = "m.read"
TYPING_RENEW_S = 40.0
PRESENCE_BATCH_S = 0.5
# Users per m.presence EDU (a transaction carries up to 100 EDUs).
PRESENCE_PER_EDU = 50
OFFLINE = "offline"
PRESENCE_RESEND_MS = 25 * 60_000
PRESENCE_RESEND_CHECK_S = 60.0

QueueEdus = Callable[[str, Sequence[dict[str, Any]]], Awaitable[None]]
# (user_id, room_id) -> the user's current m.read / m.read.private receipts in the room
ReadReceipts = Callable[[str, str], Awaitable[list[StoredReceipt]]]
# user IDs -> their current m.presence events ({"type", "sender", "content"})
PresenceEvents = Callable[[Sequence[str]], Awaitable[list[dict[str, Any]]]]
# -> our users whose stored presence is not offline
UsersNotOffline = Callable[[], Awaitable[list[str]]]


def typing_edu(room_id: str, user_id: str, typing: bool) -> dict[str, Any]:
    return {"edu_type": TYPING_EDU, "content": {"room_id": room_id, "user_id": user_id, "typing": typing}}


def receipt_edu(receipt: StoredReceipt) -> dict[str, Any]:
    data: dict[str, Any] = {"ts": int(receipt.data.get("ts", 0))}
    if receipt.thread_id is not None:
        data["thread_id"] = receipt.thread_id
    return {"edu_type": RECEIPT_EDU, "content": {receipt.room_id: {receipt.receipt_type: {
        receipt.user_id: {"event_ids": [receipt.event_id], "data": data}}}}}


def presence_push(user_id: str, content: dict[str, Any]) -> dict[str, Any]:
    """One entry of an m.presence EDU's `push` from an m.presence event's content."""
    push: dict[str, Any] = {"user_id": user_id, "presence": content.get("presence", "offline"),
                            # Required by the schema: a user never active was last active at 0 (as Synapse sends).
                            "last_active_ago": content.get("last_active_ago", 0),
                            "currently_active": bool(content.get("currently_active", False))}
    if content.get("status_msg") is not None:
        push["status_msg"] = content["status_msg"]
    return push


def presence_edus(pushes: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"edu_type": PRESENCE_EDU, "content": {"push": list(pushes[i:i + PRESENCE_PER_EDU])}}
            for i in range(0, len(pushes), PRESENCE_PER_EDU)]


class EphemeralEduSender:
    def __init__(self, server_name: str, events: EventStore, queue_edus: QueueEdus, read_receipts: ReadReceipts,
                 presence_events: PresenceEvents, users_not_offline: UsersNotOffline, clock: Clock, *,
                 typing_renew_s: float = TYPING_RENEW_S,
                 presence_batch_s: float = PRESENCE_BATCH_S, partial_state: PartialStateStore | None = None):
        self._server_name = server_name
        self._partial_state = partial_state
        self._events = events
        self._queue_edus = queue_edus
        self._read_receipts = read_receipts
        self._presence_events = presence_events
        self._users_not_offline = users_not_offline
        self._clock = clock
        self._typing_renew_s = typing_renew_s
        self._presence_batch_s = presence_batch_s
        # room -> our users typing there, as last sent
        self._typing: dict[str, set[str]] = {}
        self._renewals: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._typing_lock = asyncio.Lock()
        self._pending_presence: dict[str, dict[str, Any]] = {}
        # Our users whose presence other servers hold as not offline -> when it was last sent.
        self._presence_sent_ms: dict[str, int] = {}
        self._resend: asyncio.Task[None] | None = None
        self._presence_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flush: asyncio.Task[None] | None = None

    def _is_ours(self, user_id: str) -> bool:
        return server_of(user_id) == self._server_name

    async def _hosts(self, room_id: str) -> set[str]:
        return await joined_hosts(self._events, room_id, self._partial_state)

    async def _send_to_room(self, room_id: str, edus: Sequence[dict[str, Any]]) -> None:
        for destination in sorted(await self._hosts(room_id) - {self._server_name}):
            await self._queue_edus(destination, edus)

    # --- typing ------------------------------------------------------------------------------
    async def on_typing(self, update: TypingChanged) -> None:
        """Send our users who started or stopped typing in the room."""
        async with self._typing_lock:  # changes are sent in the order they happened
            now_typing = {user_id for user_id in update.user_ids if self._is_ours(user_id)}
            before = self._typing.get(update.room_id, set())
            started, stopped = sorted(now_typing - before), sorted(before - now_typing)
            if now_typing:
                self._typing[update.room_id] = now_typing
            else:
                self._typing.pop(update.room_id, None)
            for user_id in started:
                self._schedule_renewal(update.room_id, user_id)
            for user_id in stopped:
                handle = self._renewals.pop((update.room_id, user_id), None)
                if handle is not None:
                    handle.cancel()
            edus = ([typing_edu(update.room_id, u, True) for u in started]
                    + [typing_edu(update.room_id, u, False) for u in stopped])
            if edus:
                await self._send_to_room(update.room_id, edus)

    def _schedule_renewal(self, room_id: str, user_id: str) -> None:
        loop = asyncio.get_running_loop()
        self._renewals[(room_id, user_id)] = loop.call_later(self._typing_renew_s, self._renew, room_id, user_id)

    def _renew(self, room_id: str, user_id: str) -> None:
        if user_id not in self._typing.get(room_id, ()):
            return
        self._schedule_renewal(room_id, user_id)
        self._spawn(self._send_renewal(room_id, user_id))

    async def _send_renewal(self, room_id: str, user_id: str) -> None:
        async with self._typing_lock:
            if user_id in self._typing.get(room_id, ()):
                await self._send_to_room(room_id, [typing_edu(room_id, user_id, True)])

    # --- receipts ----------------------------------------------------------------------------
    async def on_receipt(self, update: ReadReceiptStored) -> None:
        """Send our user's public read receipt to the room's servers."""
        if not self._is_ours(update.user_id):
            return
        stored = [r for r in await self._read_receipts(update.user_id, update.room_id)
                  if r.receipt_type == READ and r.event_id == update.event_id and r.thread_id == update.thread_id]
        if stored:  # none: a private receipt, or replaced meanwhile by a later one that brings its own update
            await self._send_to_room(update.room_id, [receipt_edu(stored[0])])

    # --- presence ----------------------------------------------------------------------------
    def on_presence(self, update: PresenceChanged) -> None:
        """Collect our user's new presence for the next batch."""
        if not self._is_ours(update.user_id):
            return
        self._pending_presence[update.user_id] = dict(update.content)
        if self._flush is None:
            self._flush = self._spawn(self._flush_presence_later())

    async def _flush_presence_later(self) -> None:
        await asyncio.sleep(self._presence_batch_s)
        self._flush = None
        pending, self._pending_presence = self._pending_presence, {}
        await self._send_presence(pending)

    async def _send_presence(self, pending: dict[str, dict[str, Any]]) -> None:
        """Send each user's presence to the servers sharing a room with them."""
        now = self._clock.time_ms()
        for user_id, content in pending.items():
            if content.get("presence", OFFLINE) == OFFLINE:
                self._presence_sent_ms.pop(user_id, None)
            else:
                self._presence_sent_ms[user_id] = now
        if self._presence_sent_ms and self._resend is None:
            self._resend = self._spawn(self._resend_periodically())
        async with self._presence_lock:
            room_hosts: dict[str, set[str]] = {}
            by_destination: dict[str, list[dict[str, Any]]] = {}
            for user_id in sorted(pending):
                destinations: set[str] = set()
                for room_id in await self._events.get_rooms_for_user(user_id, ("join",)):
                    if room_id not in room_hosts:
                        room_hosts[room_id] = await self._hosts(room_id)
                    destinations |= room_hosts[room_id]
                destinations.discard(self._server_name)
                for destination in destinations:
                    by_destination.setdefault(destination, []).append(presence_push(user_id, pending[user_id]))
            for destination in sorted(by_destination):
                await self._queue_edus(destination, presence_edus(by_destination[destination]))

    async def _resend_periodically(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_RESEND_CHECK_S)
            try:
                await self.resend_presence()
            except Exception:
                logger.exception("re-sending presence failed")

    async def resend_presence(self) -> None:
        """Send again the presence of our users last sent PRESENCE_RESEND_MS ago or more who are still
        not offline, before other servers time them out."""
        now = self._clock.time_ms()
        due = sorted(u for u, sent in self._presence_sent_ms.items() if now - sent >= PRESENCE_RESEND_MS)
        if not due:
            return
        current = {e["sender"]: e["content"] for e in await self._presence_events(due)}
        pending = {u: current.get(u, {"presence": OFFLINE}) for u in due if u not in self._pending_presence}
        for user_id in [u for u, content in pending.items() if content.get("presence", OFFLINE) == OFFLINE]:
            del pending[user_id]  # went offline without us hearing: its change was (or will be) sent
            self._presence_sent_ms.pop(user_id, None)
        if pending:
            logger.debug("re-sending the presence of %d users", len(pending))
            await self._send_presence(pending)

    async def on_event_persisted(self, update: EventPersisted) -> None:
        """A server new to a room learns our members' presence; our new member's goes to the room."""
        event = update.event
        if (event.type != "m.room.member" or event.state_key is None or event.membership != "join"
                or event.rejected_reason is not None or event.internal_metadata.get("outlier")):
            return
        joiner = event.state_key
        members = await self._events.get_members(event.room_id, ("join",))
        if joiner not in members:
            return  # not (or no longer) the current membership
        if self._is_ours(joiner):
            destinations = await self._hosts(event.room_id) - {self._server_name}
            pushes = await self._presence_pushes([joiner])
            for destination in sorted(destinations):
                await self._queue_edus(destination, presence_edus(pushes))
            return
        joiner_server = server_of(joiner)
        if any(server_of(m) == joiner_server for m in members if m != joiner):
            return  # that server was in the room already
        pushes = await self._presence_pushes([m for m in members if self._is_ours(m)])
        await self._queue_edus(joiner_server, presence_edus(pushes))

    async def _presence_pushes(self, user_ids: Sequence[str]) -> list[dict[str, Any]]:
        events = await self._presence_events(user_ids)
        return [presence_push(e["sender"], e["content"]) for e in events
                if e["content"].get("presence") != "offline"]

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Take over the users the last run left online or unavailable, due at the first check."""
        for user_id in await self._users_not_offline():
            self._presence_sent_ms.setdefault(user_id, 0)
        if self._presence_sent_ms and self._resend is None:
            self._resend = self._spawn(self._resend_periodically())

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._logged(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _logged(work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:
            logger.exception("queueing ephemeral EDUs failed")

    async def stop(self) -> None:
        for handle in self._renewals.values():
            handle.cancel()
        self._renewals.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
