"""Evaluating new events for every local member, unread counts, and GET /notifications.

Every locally persisted event is queued on its room's worker (an after-persist callback that only
enqueues, so sending never waits for evaluation). The worker handles the room's jobs strictly in
order: evaluating events, applying redactions of counted events, and recounting after read
receipts. Because a receipt can only name an event whose persist callback already ran, the
receipt's recount always runs after that event's evaluation, which keeps the incremental counts
exact without cross-room locking.

/sync asks for counts as of its token: `room_fields` first waits (briefly) until each room's worker
has evaluated every event up to the token, so a sync that shows a new message also counts it.
The sender wakes syncs before it runs after-persist callbacks, so an event can be in a sync's
token before it reached our queue: the service also tracks the highest event position handed to
it at all, and waits for that to reach the token first.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from homeserver.accounts.auth import Requester
from homeserver.auth.constants import CREATE_KEY, POWER_LEVELS_KEY
from homeserver.auth.power_levels import get_user_power_level
from homeserver.clock import Clock
from homeserver.errors import invalid_param
from homeserver.events.event import Event
from homeserver.push.evaluator import CompiledRules, EventView, Outcome, RoomFacts, compile_rules
from homeserver.push.push_rules import PushRulesService
from homeserver.rooms.serialize import ClientEventSerializer
from homeserver.sync.notifier import Notifier
from homeserver.sync.tokens import SyncToken
from storage.stores.events import EventStore, PersistContext
from storage.stores.notifications import (
    MAIN_THREAD,
    NotificationStore,
    PushActionRow,
    UnreadCounts,
    read_up_to,
)

logger = logging.getLogger(__name__)

# Members evaluated between yields to the event loop, so a big room never stalls other requests.
YIELD_EVERY = 64
COMPILED_CACHE_SIZE = 20_000
ROOM_SNAPSHOTS = 2_000
# Rows of push actions written per transaction.
WRITE_CHUNK = 100
# How long /sync waits for a room's evaluation to catch up with its token before answering anyway.
SYNC_WAIT_S = 5.0
# Waiting for an event position that never reaches us (none should exist) stalls syncs at most once.
UNSEEN_WAIT_S = 2.0
MAX_NOTIFICATIONS_LIMIT = 1000
DEFAULT_NOTIFICATIONS_LIMIT = 50


@dataclass(frozen=True, slots=True)
class Notified:
    """One recipient's outcome for an event, handed to pushers."""

    user_id: str
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class EventNotifications:
    """Everything pushers need about one evaluated event."""

    event: Event
    notified: list[Notified]
    sender_display_name: str | None
    room_name: str | None
    room_alias: str | None


NotifiedCallback = Callable[[EventNotifications], Awaitable[None]]


@dataclass(slots=True)
class _RoomSnapshot:
    """The room as evaluation sees it at one state group."""

    state_group: int | None
    display_names: dict[str, str | None]  # joined members
    local_joined: list[str]
    power_levels: Event | None
    create: Event | None
    room_name: str | None
    room_alias: str | None


@dataclass(slots=True)
class _RoomQueue:
    jobs: deque[tuple[int | None, Callable[[], Awaitable[None]], asyncio.Future[None] | None]] = field(
        default_factory=deque)
    task: asyncio.Task[None] | None = None
    enqueued: int = 0  # highest event position queued
    done: int = 0  # highest event position fully handled
    advanced: asyncio.Event = field(default_factory=asyncio.Event)


class NotificationService:
    def __init__(self, server_name: str, events: EventStore, store: NotificationStore,
                 push_rules: PushRulesService, serializer: ClientEventSerializer, notifier: Notifier,
                 clock: Clock, registry: CollectorRegistry | None = None):
        self._server_suffix = ":" + server_name
        self._events = events
        self._store = store
        self._push_rules = push_rules
        self._serializer = serializer
        self._notifier = notifier
        self._clock = clock
        self._queues: dict[str, _RoomQueue] = {}
        self._compiled: OrderedDict[str, CompiledRules] = OrderedDict()
        # Whom each user ignores: their events notify nobody who ignores them.
        self._ignored: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._ignored_changes = 0
        self._rule_changes = 0
        self._snapshots: OrderedDict[str, _RoomSnapshot] = OrderedDict()
        self._on_notified: list[NotifiedCallback] = []
        self._stopping = False
        # Highest event stream position handed to on_event_persisted (None: read it at first use).
        self._seen_upto: int | None = None
        self._seen_advanced = asyncio.Event()
        self._evaluation_time, self._recipients = _metrics(registry) if registry is not None else (None, None)

    def add_notified_callback(self, callback: NotifiedCallback) -> None:
        """Call `callback(EventNotifications)` after an event's notifications are stored."""
        self._on_notified.append(callback)

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self._stopping = False

    async def stop(self) -> None:
        """Let queued work finish (briefly), then cancel what is left."""
        self._stopping = True
        tasks = [q.task for q in self._queues.values() if q.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # --- hooks ---------------------------------------------------------------------------
    async def on_event_persisted(self, event: Event, context: PersistContext) -> None:
        """After-persist callback: queue the event for evaluation and return at once."""
        position = int(event.internal_metadata.get("stream_ordering") or context.stream_ordering)
        if not (event.rejected_reason is not None or event.internal_metadata.get("outlier")):
            self._enqueue(event.room_id, position, lambda: self._handle_event(event, context))
        self._saw(position)

    def _saw(self, position: int) -> None:
        if self._seen_upto is not None and position > self._seen_upto:
            self._seen_upto = position
            advanced, self._seen_advanced = self._seen_advanced, asyncio.Event()
            advanced.set()

    async def on_receipt(self, room_id: str, user_id: str, event_id: str, thread_id: str | None) -> None:
        """Receipt callback: recount the user's unread notifications in the room (thread-aware)."""
        if not user_id.endswith(self._server_suffix):
            return
        done = asyncio.get_running_loop().create_future()
        self._enqueue(room_id, None, lambda: self._recount(room_id, [user_id]), done)
        await done

    def on_account_data_changed(self, user_id: str, position: int) -> None:
        """AccountDataService callback: the user's ignore list may have changed."""
        self._ignored_changes += 1
        self._ignored.pop(user_id, None)

    def on_push_rules_changed(self, user_id: str, position: int) -> None:
        """PushRulesService callback: the user's compiled rules are stale."""
        self._rule_changes += 1
        self._compiled.pop(user_id, None)

    # --- the per-room worker ----------------------------------------------------------------
    def _enqueue(self, room_id: str, position: int | None, job: Callable[[], Awaitable[None]],
                 done: asyncio.Future[None] | None = None) -> None:
        queue = self._queues.get(room_id)
        if queue is None:
            queue = self._queues[room_id] = _RoomQueue()
        queue.jobs.append((position, job, done))
        if position is not None:
            queue.enqueued = max(queue.enqueued, position)
        if queue.task is None:
            queue.task = asyncio.create_task(self._drain(room_id, queue), name=f"push-{room_id}")

    async def _drain(self, room_id: str, queue: _RoomQueue) -> None:
        try:
            while queue.jobs:
                position, job, done = queue.jobs.popleft()
                try:
                    await job()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("push evaluation job failed in %s", room_id)
                finally:
                    if done is not None and not done.done():
                        done.set_result(None)
                if position is not None and position > queue.done:
                    queue.done = position
                    advanced, queue.advanced = queue.advanced, asyncio.Event()
                    advanced.set()
        finally:
            queue.task = None
            for _, _, done in queue.jobs:
                if done is not None and not done.done():
                    done.cancel()
            if not queue.jobs and self._queues.get(room_id) is queue:
                # Idle rooms keep no state; positions restart from 0 and are only compared to
                # positions queued since.
                del self._queues[room_id]

    async def wait_until_evaluated(self, room_ids: Sequence[str], position: int, timeout_s: float) -> None:
        """Wait until every event up to `position` in these rooms is evaluated (or the timeout)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        await self._wait_until_seen(position, min(timeout_s, UNSEEN_WAIT_S))
        for room_id in room_ids:
            while True:
                queue = self._queues.get(room_id)
                if queue is None or queue.done >= min(position, queue.enqueued):
                    break
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return
                try:
                    await asyncio.wait_for(queue.advanced.wait(), remaining)
                except TimeoutError:
                    return

    async def _wait_until_seen(self, position: int, timeout_s: float) -> None:
        if self._seen_upto is None:
            # Everything committed before we started listening needs no evaluation by us.
            current = await self._events.current_stream_position()
            self._seen_upto = current if self._seen_upto is None else max(self._seen_upto, current)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._seen_upto < position:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                await asyncio.wait_for(self._seen_advanced.wait(), remaining)
            except TimeoutError:
                logger.warning("event position %d never reached push evaluation; not waiting again", position)
                self._saw(position)
                return

    # --- jobs -----------------------------------------------------------------------------
    async def _handle_event(self, event: Event, context: PersistContext) -> None:
        if event.redacts is not None:
            await self._forget_redacted(event)
        if (event.type == "m.room.member" and event.membership == "join" and event.state_key == event.sender
                and event.sender.endswith(self._server_suffix) and event.internal_metadata.get("replaces_state")):
            # Counts start at the join: what notified the user before it (their invite) is read. A
            # first membership event (a public room's join, the creator's) has nothing to recount.
            await self._recount(event.room_id, [event.sender])
        snapshot = await self._snapshot(event, context)
        recipients = [u for u in snapshot.local_joined if u != event.sender]
        if (event.type == "m.room.member" and event.membership == "invite" and event.state_key
                and event.state_key.endswith(self._server_suffix) and event.state_key != event.sender
                and event.state_key not in snapshot.display_names):
            recipients.append(event.state_key)
        recipients = await self._not_ignoring(recipients, event.sender)
        if not recipients:
            return
        auth_state = {k: v for k, v in ((POWER_LEVELS_KEY, snapshot.power_levels), (CREATE_KEY, snapshot.create))
                      if v is not None}
        notifications = snapshot.power_levels.content.get("notifications") if snapshot.power_levels else None
        facts = RoomFacts(
            member_count=len(snapshot.display_names),
            sender_power_level=get_user_power_level(event.sender, auth_state, event.room_version),
            notification_levels=notifications if isinstance(notifications, dict) else {},
        )
        view = EventView(event.pdu)
        loop = asyncio.get_running_loop()
        started = loop.time()
        spent = 0.0
        notified: list[Notified] = []
        for index, user_id in enumerate(recipients):
            if index and index % YIELD_EVERY == 0:
                spent += loop.time() - started
                await asyncio.sleep(0)
                started = loop.time()
            rules = self._compiled.get(user_id)
            if rules is None:
                spent += loop.time() - started
                rules = await self._load_compiled(user_id)
                started = loop.time()
            outcome = rules.evaluate(view, facts, snapshot.display_names.get(user_id))
            if outcome is not None and outcome.notify:
                notified.append(Notified(user_id, outcome))
        spent += loop.time() - started
        if self._evaluation_time is not None and self._recipients is not None:
            self._evaluation_time.observe(spent)
            self._recipients.inc(len(recipients))
        if not notified:
            return
        thread_id = await self._thread_of(event)
        rows = [PushActionRow(n.user_id, n.outcome.actions, n.outcome.highlight) for n in notified]
        # Several short transactions rather than one long one: on SQLite every write shares one
        # connection, and a message being sent meanwhile should wait for one chunk at most.
        for start in range(0, len(rows), WRITE_CHUNK):
            await self._store.add_push_actions(
                event.room_id, event.event_id, thread_id, int(event.internal_metadata["stream_ordering"]),
                context.received_ts or self._clock.time_ms(), rows[start:start + WRITE_CHUNK])
        self._notifier.notify_users([n.user_id for n in notified])
        batch = EventNotifications(event, notified, snapshot.display_names.get(event.sender),
                                   snapshot.room_name, snapshot.room_alias)
        for callback in self._on_notified:
            try:
                await callback(batch)
            except Exception:
                logger.exception("notified callback %r failed for %s", callback, event.event_id)

    async def _not_ignoring(self, user_ids: list[str], sender: str) -> list[str]:
        missing = [u for u in user_ids if u not in self._ignored]
        if missing:
            changes = self._ignored_changes
            loaded = await self._store.get_ignored_users(missing)
            if changes == self._ignored_changes:
                self._ignored.update(loaded)
                while len(self._ignored) > COMPILED_CACHE_SIZE:
                    self._ignored.popitem(last=False)
        else:
            loaded = {}
        kept = []
        for user_id in user_ids:
            ignored = self._ignored.get(user_id)
            if ignored is None:
                ignored = loaded.get(user_id, frozenset())
            if sender not in ignored:
                kept.append(user_id)
        return kept

    async def _load_compiled(self, user_id: str) -> CompiledRules:
        changes = self._rule_changes
        rules = compile_rules((await self._push_rules.get_user_rules(user_id)).rules)
        # A change while we read may have been missed: use the result once, cache it only if none came.
        if changes == self._rule_changes:
            self._compiled[user_id] = rules
            if len(self._compiled) > COMPILED_CACHE_SIZE:
                self._compiled.popitem(last=False)
        return rules

    async def _forget_redacted(self, redaction: Event) -> None:
        target = await self._events.get_event(redaction.redacts or "")
        if target is None or target.room_id != redaction.room_id or not target.internal_metadata.get("redacted_by"):
            return  # not (yet) redacted: the redaction did not apply
        users = await self._store.remove_push_actions_for_event(target.event_id)
        if users:
            await self._recount(redaction.room_id, users)

    async def _recount(self, room_id: str, user_ids: list[str]) -> None:
        await self._store.recount(room_id, user_ids)
        self._notifier.notify_users(user_ids)

    async def _thread_of(self, event: Event) -> str:
        """The thread root an event belongs to ('main' outside threads); follows one relation hop."""
        relation = event.content.get("m.relates_to")
        if not isinstance(relation, dict) or not isinstance(relation.get("event_id"), str):
            return MAIN_THREAD
        if relation.get("rel_type") == "m.thread":
            return relation["event_id"]
        parent = await self._events.get_event(relation["event_id"])
        if parent is not None and parent.room_id == event.room_id:
            parent_relation = parent.content.get("m.relates_to")
            if (isinstance(parent_relation, dict) and parent_relation.get("rel_type") == "m.thread"
                    and isinstance(parent_relation.get("event_id"), str)):
                return parent_relation["event_id"]
        return MAIN_THREAD

    async def _snapshot(self, event: Event, context: PersistContext) -> _RoomSnapshot:
        group = context.state_group
        cached = self._snapshots.get(event.room_id)
        if cached is not None and group is not None and cached.state_group == group:
            self._snapshots.move_to_end(event.room_id)
            return cached
        if group is not None:
            state = await self._events.get_state_for_group(group)
        else:
            state = await self._events.get_current_state_ids(event.room_id)
        wanted = [event_id for (event_type, _), event_id in state.items()
                  if event_type in ("m.room.member", "m.room.power_levels", "m.room.create", "m.room.name",
                                    "m.room.canonical_alias")]
        loaded = await self._events.get_events(wanted)
        names: dict[str, str | None] = {}
        special: dict[str, Event] = {}
        for (event_type, state_key), event_id in state.items():
            state_event = loaded.get(event_id)
            if state_event is None:
                continue
            if event_type == "m.room.member":
                if state_event.membership == "join":
                    name = state_event.content.get("displayname")
                    names[state_key] = name if isinstance(name, str) else None
            elif state_key == "":
                special[event_type] = state_event
        room_name = special["m.room.name"].content.get("name") if "m.room.name" in special else None
        alias = special["m.room.canonical_alias"].content.get("alias") if "m.room.canonical_alias" in special else None
        snapshot = _RoomSnapshot(
            state_group=group, display_names=names,
            local_joined=[u for u in names if u.endswith(self._server_suffix)],
            power_levels=special.get("m.room.power_levels"), create=special.get("m.room.create"),
            room_name=room_name if isinstance(room_name, str) and room_name else None,
            room_alias=alias if isinstance(alias, str) and alias else None,
        )
        self._snapshots[event.room_id] = snapshot
        self._snapshots.move_to_end(event.room_id)
        if len(self._snapshots) > ROOM_SNAPSHOTS:
            self._snapshots.popitem(last=False)
        return snapshot

    # --- reading -----------------------------------------------------------------------------
    async def room_fields(self, user_id: str, room_ids: Sequence[str], since: SyncToken | None,
                          now: SyncToken) -> dict[str, dict[str, Any]]:
        """The /sync RoomFieldsProvider: main-timeline counts and per-thread counts per room.

        `unread_thread_notifications` is always returned; the sync engine folds it into
        `unread_notifications` when the filter did not ask for thread counts.
        """
        await self.wait_until_evaluated(room_ids, now.get("events"), SYNC_WAIT_S)
        counts = await self._store.get_counts(user_id, room_ids)
        out: dict[str, dict[str, Any]] = {}
        for room_id in room_ids:
            threads = counts.get(room_id, {})
            main = threads.get(MAIN_THREAD, UnreadCounts(0, 0))
            out[room_id] = {
                "unread_notifications": _count_json(main),
                "unread_thread_notifications": {thread: _count_json(c) for thread, c in threads.items()
                                                if thread != MAIN_THREAD},
            }
        return out

    async def total_unread(self, user_id: str) -> int:
        return await self._store.get_total_unread(user_id)

    async def get_notifications(self, requester: Requester, from_token: str | None, limit: int | None,
                                only: str | None) -> dict[str, Any]:
        """GET /notifications: the user's notified events, newest first."""
        before = None
        if from_token is not None:
            try:
                before = int(from_token)
            except ValueError:
                raise invalid_param("from: not a token returned by this endpoint") from None
        if limit is None:
            limit = DEFAULT_NOTIFICATIONS_LIMIT
        if limit < 0:
            raise invalid_param("limit: must not be negative")
        limit = min(limit, MAX_NOTIFICATIONS_LIMIT)
        rows = await self._store.get_notifications(requester.user_id, before=before, limit=limit,
                                                   only_highlight=only == "highlight")
        events = await self._events.get_events([r.event_id for r in rows])
        rows = [r for r in rows if r.event_id in events]
        serialized = await self._serializer.serialize([events[r.event_id] for r in rows], requester)
        positions = await self._store.get_read_positions(requester.user_id, sorted({r.room_id for r in rows}))
        notifications = [
            {"actions": row.actions, "event": body,
             "read": row.stream_ordering <= read_up_to(positions.get(row.room_id, {}), row.thread_id),
             "room_id": row.room_id, "ts": row.received_ts}
            for row, body in zip(rows, serialized, strict=True)
        ]
        response: dict[str, Any] = {"notifications": notifications}
        if rows and len(rows) == limit:
            response["next_token"] = str(rows[-1].stream_ordering)
        return response


# A server restarted in the same process (tests) builds its services again on the same registry.
_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, tuple[Histogram, Counter]] = weakref.WeakKeyDictionary()


def _metrics(registry: CollectorRegistry) -> tuple[Histogram, Counter]:
    metrics = _METRICS.get(registry)
    if metrics is None:
        # CPU time of rule evaluation per event (not waiting for storage), for bench/push.py.
        metrics = _METRICS[registry] = (
            Histogram("push_evaluation_seconds", "Time evaluating one event against every recipient's push rules",
                      buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
                      registry=registry),
            Counter("push_evaluated_recipients", "Recipients whose push rules were evaluated", registry=registry),
        )
    return metrics


def _count_json(counts: UnreadCounts) -> dict[str, int]:
    return {"highlight_count": counts.highlights, "notification_count": counts.notifications}
