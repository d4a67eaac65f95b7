"""Evaluating new events for every local member, unread counts, and GET /notifications.

Evaluation is a stream stage (`push_evaluation`): it follows the events stream in order, in
batches, after the events have committed, so sending never waits for it. Each batch's push
actions, the unread counts they add to and the stage's new position commit in one
transaction, so after a crash evaluation resumes exactly after the last batch it finished.

A read receipt recounts the reader's unread notifications in the room once evaluation has
reached the event the receipt names; recounts and batch writes take one lock, so an increment
and a recount of the same counts never interleave. /sync asks for counts as of its token:
`room_fields` first waits (briefly) until evaluation has reached the token, so a sync that
shows a new message also counts it.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from homeserver.requester import Requester
from homeserver.event_auth.constants import CREATE_KEY, POWER_LEVELS_KEY
from homeserver.event_auth.power_levels import get_user_power_level
from homeserver.client_input import parse_int_text
from homeserver.clock import Clock
from homeserver.errors import invalid_param
from homeserver.events.event import Event
from homeserver.push.evaluator import CompiledRules, EventView, Outcome, RoomFacts, compile_rules
from homeserver.push.push_rules import PushRulesService
from homeserver.rooms.serialize import ClientEventSerializer
from homeserver.streams.notifier import Notifier
from homeserver.streams.stages import EventStage
from homeserver.streams.client_tokens import SyncToken
from homeserver.streams.updates import AccountDataChanged, PushRulesChanged, ReadReceiptStored
from storage.stores.events import EventStore
from storage.stores.notifications import (
    MAIN_THREAD,
    EventPushActions,
    NotificationStore,
    PushActionRow,
    UnreadCounts,
    read_up_to,
)
from storage.stores.stages import StagePositionStore

logger = logging.getLogger(__name__)

# Members evaluated between yields to the event loop, so a big room never stalls other requests.
YIELD_EVERY = 64
COMPILED_CACHE_SIZE = 20_000
ROOM_SNAPSHOTS = 2_000
# How long /sync waits for a room's evaluation to catch up with its token before answering anyway.
SYNC_WAIT_S = 5.0
EVALUATION_STAGE = "push_evaluation"
MAX_NOTIFICATIONS_LIMIT = 1000
DEFAULT_NOTIFICATIONS_LIMIT = 50


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


class NotificationService:
    def __init__(self, server_name: str, events: EventStore, store: NotificationStore,
                 push_rules: PushRulesService, serializer: ClientEventSerializer, notifier: Notifier,
                 positions: StagePositionStore, clock: Clock, registry: CollectorRegistry | None = None):
        self._server_suffix = ":" + server_name
        self._events = events
        self._store = store
        self._push_rules = push_rules
        self._serializer = serializer
        self._notifier = notifier
        self._clock = clock
        self._compiled: OrderedDict[str, CompiledRules] = OrderedDict()
        # Whom each user ignores: their events notify nobody who ignores them.
        self._ignored: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._ignored_changes = 0
        self._rule_changes = 0
        self._snapshots: OrderedDict[str, _RoomSnapshot] = OrderedDict()
        # Batch writes and recounts of counts never interleave.
        self._counts_lock = asyncio.Lock()
        self._evaluation_time, self._recipients = _metrics(registry) if registry is not None else (None, None)
        self.stage = EventStage(EVALUATION_STAGE, events, positions, self._evaluate_batch, registry=registry)

    # --- consumers of the stream bus -------------------------------------------------------
    async def on_receipt(self, update: ReadReceiptStored) -> None:
        """Recount the reader's unread notifications in the room (thread-aware)."""
        if not update.user_id.endswith(self._server_suffix):
            return
        event = await self._events.get_event(update.event_id)
        if event is not None:
            await self.stage.wait_until(int(event.internal_metadata.get("stream_ordering") or 0), SYNC_WAIT_S)
        await self._recount(update.room_id, [update.user_id])

    def on_account_data_changed(self, update: AccountDataChanged) -> None:
        """The user's ignore list may have changed."""
        self._ignored_changes += 1
        self._ignored.pop(update.user_id, None)

    def on_push_rules_changed(self, update: PushRulesChanged) -> None:
        """The user's compiled rules are stale."""
        self._rule_changes += 1
        self._compiled.pop(update.user_id, None)

    # --- the stage ---------------------------------------------------------------------------
    async def _evaluate_batch(self, events: Sequence[Event], upto: int) -> bool:
        # Events read back from the database (after a restart) lack their state group: one query.
        unknown = [e.event_id for e in events if "state_group" not in e.internal_metadata]
        if unknown:
            groups = await self._events.get_state_groups_for_events(unknown)
            for event in events:
                if event.event_id in groups:
                    event.internal_metadata["state_group"] = groups[event.event_id]
        notified: list[EventPushActions] = []
        joined: list[tuple[str, str]] = []
        for event in events:
            if event.rejected_reason is not None or event.internal_metadata.get("outlier"):
                continue
            if event.redacts is not None:
                await self._forget_redacted(event)
            if (event.type == "m.room.member" and event.membership == "join" and event.state_key == event.sender
                    and event.sender.endswith(self._server_suffix) and event.internal_metadata.get("replaces_state")):
                # Counts start at the join: what notified the user before it (their invite) is read. A
                # first membership event (a public room's join, the creator's) has nothing to recount.
                joined.append((event.room_id, event.sender))
            entry = await self._evaluate(event)
            if entry is not None:
                notified.append(entry)
        async with self._counts_lock:
            await self._store.add_push_actions(notified, stage=EVALUATION_STAGE, upto=upto)
        for room_id, user_id in joined:
            await self._recount(room_id, [user_id])
        users = {row.user_id for entry in notified for row in entry.rows}
        if users:
            self._notifier.notify_users(users)
        return True

    # --- jobs -----------------------------------------------------------------------------
    async def _evaluate(self, event: Event) -> EventPushActions | None:
        snapshot = await self._snapshot(event)
        recipients = [u for u in snapshot.local_joined if u != event.sender]
        if (event.type == "m.room.member" and event.membership == "invite" and event.state_key
                and event.state_key.endswith(self._server_suffix) and event.state_key != event.sender
                and event.state_key not in snapshot.display_names):
            recipients.append(event.state_key)
        recipients = await self._not_ignoring(recipients, event.sender)
        if not recipients:
            return None
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
        notified: list[tuple[str, Outcome]] = []
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
                notified.append((user_id, outcome))
        spent += loop.time() - started
        if self._evaluation_time is not None and self._recipients is not None:
            self._evaluation_time.observe(spent)
            self._recipients.inc(len(recipients))
        if not notified:
            return None
        thread_id = await self._thread_of(event)
        return EventPushActions(
            room_id=event.room_id, event_id=event.event_id, thread_id=thread_id,
            stream_ordering=int(event.internal_metadata["stream_ordering"]),
            received_ts=self._clock.time_ms(),
            rows=[PushActionRow(user_id, outcome.actions, outcome.highlight) for user_id, outcome in notified])

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
        async with self._counts_lock:
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

    async def _snapshot(self, event: Event) -> _RoomSnapshot:
        group = event.internal_metadata.get("state_group")
        if group is None:
            group = await self._events.get_state_group_for_event(event.event_id)
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
        await self.stage.wait_until(now.get("events"), SYNC_WAIT_S)
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
            before = parse_int_text(from_token, "from")
        if limit is None:
            limit = DEFAULT_NOTIFICATIONS_LIMIT
        if limit < 0:
            raise invalid_param("limit: must not be negative")
        limit = min(limit, MAX_NOTIFICATIONS_LIMIT)
        rows = await self._store.get_notifications(requester.user_id, before=before, limit=limit,
                                                   only_highlight=only == "highlight")
        events = await self._events.get_events([r.event_id for r in rows])
        rows = [r for r in rows if r.event_id in events]
        serialized = await self._serializer.serialize([events[r.event_id] for r in rows], requester,
                                                      include_room_id=False)
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
