"""Reading room history: /messages, /context and /timestamp_to_event, with history visibility.

Visibility is decided for a whole page at once: the history-visibility setting and the
reader's membership before each event come out of one query over the page's state groups
(consecutive events share them), instead of a state lookup per event.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from homeserver.errors import forbidden, not_found
from homeserver.events.event import Event
from homeserver.events.sync_filter import EventFilter
from homeserver.requester import Requester
from homeserver.rooms.erasure import ErasedUsers, strip_erased_senders
from homeserver.rooms.room_event_filter import conditions_of
from homeserver.rooms.serialize import ClientEventSerializer
from homeserver.state import StateAtEvent, is_event_visible
from homeserver.state.visibility import HISTORY_VISIBILITY_KEY, WORLD_READABLE, visible_whatever_the_event
from homeserver.streams.client_tokens import PaginationToken, parse_pagination_token
from storage.stores.events import EventStore
from storage.stores.timeline import (
    NO_STATE,
    NOT_LOOKED_UP,
    Bound,
    EventConditions,
    Position,
    TimelineRow,
    TimelineStore,
)

DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
IGNORED_USER_LIST = "m.ignored_user_list"

# user_id -> the content of their global account data of a type, or None.
GlobalAccountData = Callable[[str, str], Awaitable[dict[str, Any] | None]]


def bound_of(token: PaginationToken) -> Bound:
    return Bound(token.depth, token.stream)


def token_after(position: Position) -> str:
    """The token naming the gap just after the event at `position`."""
    return str(PaginationToken(position[0], position[1]))


def token_before(position: Position) -> str:
    # Stream orderings are integers, so "at or before (d, s - 1)" is "strictly before (d, s)".
    return str(PaginationToken(position[0], position[1] - 1))


def earlier_bound(a: Bound, b: Bound) -> Bound:
    """The earlier of two bounds (a stream-only bound is compared by stream)."""
    if a.depth is None or b.depth is None:
        return a if a.stream <= b.stream else b
    return a if (a.depth, a.stream) <= (b.depth, b.stream) else b


class HistoryBackfill(Protocol):
    """Fetching older history of a room from other servers in it (federation's /backfill)."""

    async def backfill(self, room_id: str, limit: int) -> bool:
        """Try to store up to `limit` events older than what we hold; whether any were stored."""
        ...


class HistoryVisibilityFilter:
    """Which events (of one room or several) a user may see, decided per batch."""

    def __init__(self, events: EventStore, timeline: TimelineStore, erased_users: ErasedUsers | None = None):
        self._events = events
        self._timeline = timeline
        self._erased_users = erased_users

    async def filter(self, user_id: str, events: Sequence[Event],
                     groups_before: Mapping[str, int | None] | None = None, *,
                     earliest_stream: int | None = None) -> list[Event]:
        """The events the user may see, in order. They may be of several rooms: what all of them
        need is read in one interaction, and each is judged by its own room's history.

        `groups_before` (event_id -> state group before it, from timeline rows) saves a lookup;
        `earliest_stream`, the lowest stream position among the events, saves reading each one's.
        """
        if not events:
            return []
        member_key = ("m.room.member", user_id)
        events_by_room: dict[str, list[str]] = {}
        for event in events:
            events_by_room.setdefault(event.room_id, []).append(event.event_id)
        group_of, values, histories = await self._timeline.get_visibility_inputs(
            user_id, events_by_room, [HISTORY_VISIBILITY_KEY, member_key], groups_before)
        loaded = await self._events.get_events({eid for entry in values.values() for eid in entry.values()})
        last_joins = {room_id: max((stream for membership, stream in history if membership == "join"), default=None)
                      for room_id, history in histories.items()}
        visible = []
        unjoined: set[str] = set()
        # Consecutive events share their state group: each distinct one is read, and judged for
        # all its events alike where the state alone decides, once.
        befores: dict[tuple[int | None, bool], tuple[StateAtEvent, bool]] = {}
        # Whether the user joined the event's room after it; for none of a room's events when the
        # last join is older than them all (a member reading back through history since their join).
        # State groups are each of one room, so a group's judgement holds for its room alone.
        compared = {room_id: last_join for room_id, last_join in last_joins.items()
                    if last_join is not None and (earliest_stream is None or earliest_stream < last_join)}
        joined_afterwards = False
        for event in events:
            group = group_of.get(event.event_id, NO_STATE)
            if group == NO_STATE:
                continue  # no state known: an outlier, never shown
            if compared:
                last_join = compared.get(event.room_id)
                joined_afterwards = last_join is not None and event.internal_metadata.get("stream_ordering", 0) < last_join
            judged = befores.get((group, joined_afterwards))
            if judged is None:
                entry = values.get(group, {}) if group is not None else {}
                hv_event = loaded.get(entry.get(HISTORY_VISIBILITY_KEY, ""))
                member_event = loaded.get(entry.get(member_key, ""))
                before = StateAtEvent(
                    history_visibility=hv_event.content.get("history_visibility") if hv_event else None,
                    membership=member_event.membership if member_event else None,
                )
                judged = befores[(group, joined_afterwards)] = (
                    before, visible_whatever_the_event(before, joined_afterwards=joined_afterwards))
            before, seen_by_state = judged
            if seen_by_state or is_event_visible(user_id, event, before, joined_afterwards=joined_afterwards):
                visible.append(event)
                if before.membership != "join":
                    unjoined.add(event.event_id)
        return await strip_erased_senders(visible, unjoined, self._erased_users)


class RoomHistory:
    def __init__(self, events: EventStore, timeline: TimelineStore, serializer: ClientEventSerializer,
                 visibility: HistoryVisibilityFilter, global_account_data: GlobalAccountData | None = None, *,
                 backfill: HistoryBackfill | None = None):
        self._events = events
        # None: federation is off; history ends where ours does.
        self._backfill = backfill
        self._timeline = timeline
        self._serializer = serializer
        self._visibility = visibility
        self._global_account_data = global_account_data

    async def _conditions(self, user_id: str, event_filter: EventFilter) -> EventConditions:
        """The filter's conditions, plus hiding the messages of users the reader ignores."""
        conditions = conditions_of(event_filter)
        if self._global_account_data is None:
            return conditions
        content = await self._global_account_data(user_id, IGNORED_USER_LIST) or {}
        ignored = content.get("ignored_users")
        if not isinstance(ignored, dict) or not ignored:
            return conditions
        return dataclasses.replace(conditions, hidden_senders=tuple(sorted(ignored)))

    async def check_can_read(self, user_id: str, room_id: str) -> Bound | None:
        """Whether the user may read the room's history; returns the position they may read up to.

        Members read everything; former members up to their leave (or ban); anyone else only a
        world-readable room.
        """
        membership, member_event_id = await self._events.get_membership(room_id, user_id)
        if membership == "join":
            return None
        if membership in ("leave", "ban") and member_event_id:
            found = await self._timeline.get_position(member_event_id)
            if found is not None:
                return Bound(*found[1])
        state = await self._events.get_current_state_ids(room_id)
        hv_id = state.get(HISTORY_VISIBILITY_KEY)
        hv_event = await self._events.get_event(hv_id) if hv_id else None
        if hv_event is not None and hv_event.content.get("history_visibility") == WORLD_READABLE:
            return None
        raise forbidden(f"User {user_id} is not in room {room_id}")

    async def load_visible(self, user_id: str, rows: Sequence[TimelineRow]) -> list[Event]:
        """The events of timeline rows (of one room or several), in row order, that the user may see."""
        return await self._visible_of(user_id, rows, await self._load(rows))

    async def load_visible_bundled(self, requester: Requester, rows: Sequence[TimelineRow]
                                   ) -> tuple[list[Event], dict[str, dict[str, Any]]]:
        """The events of timeline rows (of one room or several), in row order, that the reader may
        see, and the bundled aggregations of the rows' events (`ClientEventSerializer.bundled`).

        Both are read together: one round trip of latency instead of two (the aggregations of
        hidden events go unused), and none for aggregations when no row has relations."""
        events = await self._load(rows)
        visible, bundled = await asyncio.gather(
            self._visible_of(requester.user_id, rows, events),
            self._serializer.bundled(events, requester, related={r.event_id for r in rows if r.has_relations}))
        return visible, bundled

    async def _load(self, rows: Sequence[TimelineRow]) -> list[Event]:
        loaded = await self._events.get_events([r.event_id for r in rows])
        return [loaded[r.event_id] for r in rows if r.event_id in loaded]

    async def _visible_of(self, user_id: str, rows: Sequence[TimelineRow], events: list[Event]) -> list[Event]:
        groups = None
        if all(r.group_before != NOT_LOOKED_UP for r in rows):
            # Events without state have no entry, which the filter reads as "not visible".
            groups = {r.event_id: r.group_before for r in rows if r.group_before != NO_STATE}
        earliest = min((r.stream_ordering for r in rows), default=None)
        return await self._visibility.filter(user_id, events, groups, earliest_stream=earliest)

    async def _member_state(self, at_event_id: str, senders: set[str]) -> list[Event]:
        """The member events of `senders` in the state at an event (lazy-loading members)."""
        keys = [("m.room.member", s) for s in sorted(senders)]
        state = (await self._timeline.get_state_before_events([at_event_id], keys)).get(at_event_id, {})
        loaded = await self._events.get_events(state.values())
        return [loaded[eid] for eid in sorted(state.values()) if eid in loaded]

    # --- /messages ---------------------------------------------------------------------
    async def messages(self, requester: Requester, room_id: str, *, from_token: str | None,
                       to_token: str | None, direction: str, limit: int,
                       event_filter: EventFilter) -> dict[str, Any]:
        """A page of the room's timeline from a token, in either direction."""
        backwards = direction == "b"
        start = parse_pagination_token(from_token, "from") if from_token else None
        end = parse_pagination_token(to_token, "to") if to_token else None
        from_bound = bound_of(start) if start else None
        to_bound = bound_of(end) if end else None
        limit = max(0, min(limit, MAX_LIMIT))
        # The page a current member without an ignore list reads is fetched together with the
        # checks that say whether it is the right page (on PostgreSQL each read is a round trip);
        # it is only used, and so only shown, once the checks have passed.
        plain = conditions_of(event_filter)
        checked = await asyncio.gather(
            self.check_can_read(requester.user_id, room_id), self._conditions(requester.user_id, event_filter),
            self._timeline.paginate(room_id, backwards=backwards, limit=limit, from_bound=from_bound,
                                    to_bound=to_bound, conditions=plain),
            return_exceptions=True)
        for outcome in checked:
            if isinstance(outcome, BaseException):
                raise outcome
        cap, conditions, rows = checked
        if cap is not None:
            # Former members read no further than their departure.
            if backwards:
                from_bound = cap if from_bound is None else earlier_bound(from_bound, cap)
            else:
                to_bound = cap if to_bound is None else earlier_bound(to_bound, cap)
        if cap is not None or conditions != plain:
            rows = await self._timeline.paginate(room_id, backwards=backwards, limit=limit, from_bound=from_bound,
                                                 to_bound=to_bound, conditions=conditions)
        if (backwards and len(rows) < limit and to_bound is None and self._backfill is not None
                and await self._backfill.backfill(room_id, limit - len(rows))):
            # Paginating past the start of our copy of the room: older events were fetched from a
            # server in the room, so the page is read again.
            rows = await self._timeline.paginate(room_id, backwards=True, limit=limit, from_bound=from_bound,
                                                 to_bound=None, conditions=conditions)
        events, bundled = await self.load_visible_bundled(requester, rows)
        result: dict[str, Any] = {
            "chunk": await self._serializer.serialize(events, requester, bundled=bundled, fragments=True),
            "start": from_token or await self._default_start(rows, backwards),
        }
        # Forwards without a bound, a short page is only the live end for now: later events will
        # follow that `end` (Synapse gives it too). An empty page gives none.
        if rows and (len(rows) >= limit or (not backwards and to_bound is None)):
            last = rows[-1].position
            result["end"] = token_before(last) if backwards else token_after(last)
        if event_filter.lazy_load_members and events:
            newest = events[0] if backwards else events[-1]
            members = await self._member_state(newest.event_id, {e.sender for e in events})
            result["state"] = await self._serializer.serialize(members, requester, bundle=False)
        return result

    async def _default_start(self, rows: Sequence[TimelineRow], backwards: bool) -> str:
        if rows:
            return token_after(rows[0].position) if backwards else token_before(rows[0].position)
        return str(PaginationToken(None, await self._events.current_stream_position()))

    # --- /context ----------------------------------------------------------------------
    async def context(self, requester: Requester, room_id: str, event_id: str, *, limit: int,
                      event_filter: EventFilter) -> dict[str, Any]:
        """The event with the events before and after it, and the room state at the last one."""
        user_id = requester.user_id
        cap = await self.check_can_read(user_id, room_id)
        found = await self._timeline.get_position(event_id)
        if found is None or found[0] != room_id:
            raise not_found("Event not found")
        position = found[1]
        event = await self._events.get_event(event_id)
        visible = await self._visibility.filter(user_id, [event]) if event is not None else []
        if not visible:
            raise not_found("Event not found")
        event = visible[0]
        limit = max(0, min(limit, MAX_LIMIT))
        conditions = await self._conditions(user_id, event_filter)
        before_limit = limit // 2
        before_rows = await self._timeline.paginate(
            room_id, backwards=True, limit=before_limit, from_bound=Bound(position[0], position[1] - 1),
            conditions=conditions)
        after_rows = await self._timeline.paginate(
            room_id, backwards=False, limit=limit - before_limit, from_bound=Bound(*position), to_bound=cap,
            conditions=conditions)
        visible = await self.load_visible(user_id, [*before_rows, *after_rows])
        before_ids = {r.event_id for r in before_rows}
        before = [e for e in visible if e.event_id in before_ids]
        after = [e for e in visible if e.event_id not in before_ids]
        start = token_before(before_rows[-1].position if before_rows else position)
        end = token_after(after_rows[-1].position if after_rows else position)
        last = after[-1] if after else event
        if event_filter.lazy_load_members:
            state_events = await self._member_state(last.event_id, {e.sender for e in [*before, event, *after]})
        else:
            state_ids = await self._events.get_state_after_event(last.event_id)
            loaded = await self._events.get_events(state_ids.values())
            state_events = [loaded[eid] for eid in sorted(state_ids.values()) if eid in loaded]
        serialized = await self._serializer.serialize([event, *before, *after], requester)
        return {
            "event": serialized[0],
            "events_before": serialized[1:1 + len(before)],
            "events_after": serialized[1 + len(before):],
            "start": start,
            "end": end,
            "state": await self._serializer.serialize(state_events, requester, bundle=False),
        }

    # --- /timestamp_to_event --------------------------------------------------------------
    async def timestamp_to_event(self, requester: Requester, room_id: str, ts: int, direction: str,
                                 ) -> dict[str, Any]:
        """The event closest to `ts` in the given direction that the user may see."""
        await self.check_can_read(requester.user_id, room_id)
        found = await self._timeline.closest_event_to_timestamp(room_id, ts, forwards=direction == "f")
        if found is not None:
            event = await self._events.get_event(found[0])
            if event is not None and await self._visibility.filter(requester.user_id, [event]):
                return {"event_id": found[0], "origin_server_ts": found[1]}
        raise not_found(f"No event found {'after' if direction == 'f' else 'before'} {ts}")
