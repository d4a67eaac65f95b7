"""Reading timelines for sync: each room's newest events that pass the filter, the ignore list and
history visibility, fetched for many rooms per query and refetched further back only for rooms
where events dropped out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from homeserver.events.event import Event
from homeserver.events.sync_filter import SyncFilter
from homeserver.rooms.erasure import ErasedUsers, strip_erased_senders
from homeserver.state.visibility import HISTORY_VISIBILITY_KEY, StateAtEvent, is_event_visible
from homeserver.sync.room_list import JOIN, RoomSyncEntry
from storage.stores.events import EventStore
from storage.stores.sync import SyncStore, TimelineRange

# Refetch rounds when filters or visibility drop events from a timeline page; past this the page is
# returned short and marked limited (the client paginates with prev_batch).
MAX_TIMELINE_ROUNDS = 4
MAX_FETCH = 1000


def event_position(event: Event) -> int:
    return int(event.internal_metadata.get("stream_ordering", 0))


@dataclass
class Timeline:
    events: list[Event] = field(default_factory=list)
    limited: bool = False
    # State events in the range read that history visibility hid from the user (e.g. members who
    # joined while the user was away): their effect belongs in the `state` section.
    hidden_state: list[Event] = field(default_factory=list)
    # event_id -> (state group before, state group after) of the events read for this timeline
    # (those without state are left out).
    groups_around: dict[str, tuple[int | None, int]] = field(default_factory=dict)
    # The events read for this timeline that other events relate to (bundled aggregations).
    related: set[str] = field(default_factory=set)


class TimelineReader:
    def __init__(self, events: EventStore, store: SyncStore, erased_users: ErasedUsers | None = None):
        self._events = events
        self._store = store
        self._erased_users = erased_users

    async def read(self, entries: Sequence[RoomSyncEntry], user_id: str, sync_filter: SyncFilter,
                   ignored: frozenset[str]) -> dict[str, Timeline]:
        """Each room's newest visible, filter-passing events, refetching further back when some drop out."""
        limit = sync_filter.timeline_limit
        out = {e.room_id: Timeline() for e in entries}
        if limit <= 0 or sync_filter.timeline.is_empty_set:
            for timeline in out.values():
                timeline.limited = True
            return out
        by_room = {e.room_id: e for e in entries}
        pending = {e.room_id: TimelineRange(e.room_id, e.timeline_after, e.upto, limit + 1) for e in entries}
        for round_number in range(MAX_TIMELINE_ROUNDS):
            if not pending:
                break
            rows = await self._store.get_timelines(list(pending.values()))
            for room_id, room_rows in rows.items():
                out[room_id].groups_around.update(
                    (r.event_id, r.groups_around) for r in room_rows if r.groups_around is not None)
                out[room_id].related.update(r.event_id for r in room_rows if r.has_relations)
            loaded = await self._events.get_events(
                [r.event_id for room_rows in rows.values() for r in room_rows])
            next_pending: dict[str, TimelineRange] = {}
            kept_by_room: dict[str, list[Event]] = {}
            for room_id in pending:
                candidates = [loaded[r.event_id] for r in rows.get(room_id, []) if r.event_id in loaded]
                kept_by_room[room_id] = [
                    e for e in candidates
                    if sync_filter.timeline.matches(e.type, e.sender, e.content, room_id=room_id)
                    and (e.sender not in ignored or e.is_state() or e.sender == user_id)]
            # History visibility of every room's page at once: a few queries, not a few per room.
            visible_by_room = await self._visible(user_id, [(by_room[r], kept) for r, kept in kept_by_room.items()],
                                                  out)
            for room_id, asked in pending.items():
                room_rows = rows.get(room_id, [])
                kept = kept_by_room[room_id]
                visible = visible_by_room[room_id]
                timeline = out[room_id]
                if len(visible) < len(kept):
                    shown = {e.event_id for e in visible}
                    timeline.hidden_state[:0] = [e for e in kept if e.is_state() and e.event_id not in shown]
                kept = visible
                timeline.events = kept + timeline.events
                exhausted = len(room_rows) < asked.limit
                if len(timeline.events) > limit:
                    timeline.events = timeline.events[-limit:]
                    timeline.limited = True
                elif exhausted:
                    timeline.limited = False
                elif round_number == MAX_TIMELINE_ROUNDS - 1:
                    timeline.limited = True
                else:
                    # Exactly `limit` kept so far is not yet limited: only an older kept event
                    # would make it so, and the next round looks for one.
                    upto = room_rows[0].stream_ordering - 1
                    next_pending[room_id] = TimelineRange(room_id, asked.after, upto,
                                                          min(asked.limit * 2, MAX_FETCH))
            pending = next_pending
        return out

    async def _visible(self, user_id: str, pages: Sequence[tuple[RoomSyncEntry, list[Event]]],
                       timelines: dict[str, Timeline]) -> dict[str, list[Event]]:
        """History visibility for each room's timeline page (room_id -> the visible events), with a
        fast path for rooms the user was a member of throughout; the others are checked together."""
        out: dict[str, list[Event]] = {}
        slow: list[tuple[RoomSyncEntry, list[Event]]] = []
        for entry, events in pages:
            membership = entry.membership
            if not events or (membership.membership == "join"
                              and membership.stream_ordering < event_position(events[0])):
                # Joined since before the page and still joined: every event in it was sent while joined.
                out[entry.room_id] = events
            elif entry.never_joined:
                # A room the user only saw from outside (rejected invite, ban): their own membership only.
                out[entry.room_id] = [e for e in events if e.type == "m.room.member" and e.state_key == user_id]
            else:
                slow.append((entry, events))
        if not slow:
            return out
        # The timeline rows came with their state groups; an event without any has no state.
        groups = {e.event_id: timelines[entry.room_id].groups_around[e.event_id] for entry, events in slow
                  for e in events if e.event_id in timelines[entry.room_id].groups_around}
        states = await self._events.get_state_for_groups(
            {before for before, _ in groups.values() if before is not None})
        wanted = set()
        for state in states.values():
            for key in (HISTORY_VISIBILITY_KEY, ("m.room.member", user_id)):
                if key in state:
                    wanted.add(state[key])
        loaded = await self._events.get_events(wanted)
        unjoined: set[str] = set()
        for entry, events in slow:
            joined_afterwards = entry.section == JOIN
            visible = []
            for event in events:
                before = groups.get(event.event_id, (None, 0))[0]
                state = states.get(before, {}) if before is not None else {}
                hv = loaded.get(state.get(HISTORY_VISIBILITY_KEY, ""))
                member = loaded.get(state.get(("m.room.member", user_id), ""))
                at_event = StateAtEvent(
                    history_visibility=hv.content.get("history_visibility") if hv is not None else None,
                    membership=member.membership if member is not None else None,
                )
                if is_event_visible(user_id, event, at_event, joined_afterwards=joined_afterwards):
                    visible.append(event)
                    if at_event.membership != "join":
                        unjoined.add(event.event_id)
            out[entry.room_id] = visible
        # One look-up of erased senders for all rooms; each room's page is then pruned on its own.
        everything = [e for entry, _ in slow for e in out[entry.room_id]]
        stripped = iter(await strip_erased_senders(everything, unjoined, self._erased_users))
        for entry, _ in slow:
            out[entry.room_id] = [next(stripped) for _ in out[entry.room_id]]
        return out
