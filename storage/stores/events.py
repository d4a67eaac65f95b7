"""Room events, the DAG, state groups and memberships; current state is written and read through
storage/stores/room_state.py, which owns `current_state_events`.

Events are immutable once stored, so they are cached by ID; the only thing that
changes about a stored event is whether a redaction applies to it (`redacted_by`),
which the cache entry carries and `mark_redacted` updates.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from homeserver.events.event import Event
from homeserver.events.relations import relation_of
from homeserver.events.room_versions import get_room_version
from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction
from storage.stores import relations, room_state
from storage.stores.event_cache import EventCache
from storage.streams import EVENTS, EVENTS_BACKFILL, allocate_stream_positions, get_stream_position

StateKey = tuple[str, str]
StateMap = dict[StateKey, str]

# Events kept in memory by ID (storage/stores/event_cache.py): the newest 5,000 as objects (a
# message event is about 2.9 KiB so), the 10,000 before them as their JSON (about 0.75 KiB each):
# at most about 22 MiB for the recent history of a small community server, where 10,000 decoded
# events were about 28 MiB. Older events are read back from the database when asked for. With
# 1,000 decoded, a /messages page of 1,000 events took 42 ms instead of 20-25 (decoding the JSON
# tier) for 2 MiB less peak RSS in bench/messaging.py: the page is what users wait for.
EVENT_CACHE_HOT = 5_000
EVENT_CACHE_WARM = 10_000
# Full state maps of state groups kept in memory: at most this many groups, and at most this many
# (type, state_key) entries over all of them (about 36 bytes each as dict slots; the keys and event
# IDs are shared), so that rooms of thousands of members cannot make the count bound 100s of MiB.
GROUP_CACHE_SIZE = 2000
GROUP_CACHE_ENTRIES = 250_000


@dataclass
class PersistContext:
    """Everything decided about an event before it is written in one transaction."""

    # The state group holding the state *after* this event.
    state_group: int | None
    # When the event creates a new state group: its parent and the delta from it.
    new_group_prev: int | None = None
    new_group_delta: StateMap | None = None
    # Changes to the room's current state (None: unchanged).
    current_state_delta: StateMap | None = None
    # Forward extremities this event replaces.
    replaces_extremities: Sequence[str] = ()
    # (user_id, device_id, txn_id) of the client request that sent it, for idempotency.
    txn: tuple[str, str, str] | None = None
    received_ts: int = 0
    # Membership of each m.room.member event in `current_state_delta`, by event ID.
    memberships: dict[str, str | None] = field(default_factory=dict)
    # Whether this redaction event applies to its target (decided against the state before it).
    applies_redaction: bool = False
    # The full state before the event when no state group holds it yet (a join over federation: the
    # state the resident server sent). Written as a group of its own, the parent of the event's new
    # group (`new_group_prev` is then ignored).
    state_before: StateMap | None = None
    # `current_state_delta` is the room's whole current state: rows it lacks are removed (a join over
    # federation replaces whatever this server knew of the room before).
    current_state_is_full: bool = False
    # History fetched from another server (/backfill), older than what we had: shown by /messages
    # (it has a state group) but given a position on the backwards-counting `events_backfill` stream,
    # so no sync token ever covers it; never an extremity, never current state. Persist newest first.
    backfilled: bool = False
    # Filled in by persist: the stream ordering given to the event.
    stream_ordering: int = 0
    # An event whose place in the room's DAG is not (yet) known: an auth event fetched for another
    # event, an invite of a local user into a remote room. Stored with `events.outlier` TRUE: never
    # a forward extremity, never in client timelines, changes no current state and records no
    # membership (except as `out_of_band_membership` says); still readable by event ID.
    outlier: bool = False
    # For an outlier m.room.member event of a local user in a room this server is not in (an invite
    # received over federation, a knock, the rejection of such an invite): it becomes the user's
    # current membership of the room (current_state_events and room_memberships), so /sync lists it.
    out_of_band_membership: bool = False
    # Received over federation, authorised by the state before it but not by current state: kept
    # with its state group, but never an extremity, never current state, never shown to clients
    # (stored with `outlier` TRUE as well) and never a prev_event of a new local event.
    soft_failed: bool = False
    # The event is held as an outlier (an auth event fetched for another, the state of a room we
    # joined) and has now arrived with its place in the DAG (/send, get_missing_events): its
    # outlier rows are replaced by this persist.
    replaces_outlier: bool = False


class EventStore:
    def __init__(self, db: Database, hot_events: int = EVENT_CACHE_HOT, warm_events: int = EVENT_CACHE_WARM):
        self.db = db
        self._cache = EventCache(hot_events, warm_events)
        # State groups never change once written, so their full state is cached.
        self._group_cache: OrderedDict[int, StateMap] = OrderedDict()
        self._group_entries = 0  # len() of every map in _group_cache, summed
        self._room_versions: dict[str, str] = {}
        # Hits and misses of the two caches, read by the metrics collector.
        self._event_hits = self._event_misses = self._group_hits = self._group_misses = 0

    def drop_cached(self, event_ids: Iterable[str], room_id: str | None = None) -> None:
        """Forget cached events (and the room's version) after an admin purge deleted them."""
        for event_id in event_ids:
            self._cache.pop(event_id)
        if room_id is not None:
            self._room_versions.pop(room_id, None)

    def forget_state_groups(self) -> None:
        """Drop the cached state of every group, after a partial-state room's groups gained the full
        state (storage/stores/partial_state.py: the only writer that adds to an existing group)."""
        self._group_cache.clear()
        self._group_entries = 0

    def _cache_group(self, group: int, state: StateMap) -> StateMap:
        """Keep `state` as the group's full state (the newest entry); returns it."""
        old = self._group_cache.pop(group, None)
        if old is not None:
            self._group_entries -= len(old)
        self._group_cache[group] = state
        self._group_entries += len(state)
        return state

    def _trim_groups(self) -> None:
        """Drop the least recently used groups past either bound; the newest always stays."""
        while len(self._group_cache) > 1 and (len(self._group_cache) > GROUP_CACHE_SIZE
                                              or self._group_entries > GROUP_CACHE_ENTRIES):
            self._group_entries -= len(self._group_cache.popitem(last=False)[1])

    def cache_stats(self) -> dict[str, tuple[int, int, int]]:
        """(entries, hits, misses) of each in-memory cache, for metrics."""
        return {"events": (len(self._cache), self._event_hits, self._event_misses),
                "state_groups": (len(self._group_cache), self._group_hits, self._group_misses)}

    # --- rooms -----------------------------------------------------------------
    async def store_room(self, room_id: str, room_version: str, creator: str, created_ts: int,
                         is_public: bool = False) -> None:
        await self.db.simple_insert("rooms", {"room_id": room_id, "room_version": room_version, "creator": creator,
                                              "created_ts": created_ts, "is_public": is_public})
        self._room_versions[room_id] = room_version

    async def ensure_room(self, room_id: str, room_version: str, creator: str | None, created_ts: int) -> None:
        """Record a room first seen over federation (a remote invite, a join); no-op when known."""
        if await self.get_room_version_id(room_id) is not None:
            return
        await self.db.execute(
            "ensure_room", "INSERT INTO rooms (room_id, room_version, creator, created_ts, is_public)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id) DO NOTHING",
            (room_id, room_version, creator, created_ts, False))
        self._room_versions.pop(room_id, None)

    async def get_room_version_id(self, room_id: str) -> str | None:
        cached = self._room_versions.get(room_id)
        if cached is not None:
            return cached
        version = await self.db.fetch_value("get_room_version", "SELECT room_version FROM rooms WHERE room_id = ?",
                                            (room_id,))
        if version is not None:
            self._room_versions[room_id] = version
        return version

    # --- reading events ----------------------------------------------------------
    async def get_events(self, event_ids: Iterable[str]) -> dict[str, Event]:
        """The stored events among `event_ids`, keyed by ID (missing ones are left out)."""
        found: dict[str, Event] = {}
        missing: list[str] = []
        for event_id in event_ids:
            event = self._cache.get(event_id)
            if event is not None:
                found[event_id] = event
            elif event_id not in found:
                missing.append(event_id)
        self._event_hits += len(found)
        self._event_misses += len(missing)
        if missing:
            loaded = await self.db.run_interaction("get_events", _load_events, missing, write=False)
            for event in loaded:
                self._remember(event)
                found[event.event_id] = event
        return found

    async def have_events(self, event_ids: Iterable[str]) -> set[str]:
        """The IDs among `event_ids` of events we hold (rejected and outliers included)."""
        wanted = [e for e in dict.fromkeys(event_ids)]
        found = {e for e in wanted if e in self._cache}
        missing = [e for e in wanted if e not in found]
        if missing:

            async def txn_fn(txn: Transaction) -> set[str]:
                clause, params = txn.dialect.in_list("event_id", missing)
                rows = await txn.fetch_all(f"SELECT event_id FROM events WHERE {clause}", params)
                return {r[0] for r in rows}

            found |= await self.db.run_interaction("have_events", txn_fn, write=False)
        return found

    async def get_event(self, event_id: str) -> Event | None:
        return (await self.get_events([event_id])).get(event_id)

    def _remember(self, event: Event) -> None:
        self._cache.put(event)

    async def get_forward_extremities(self, room_id: str) -> list[str]:
        rows = await self.db.fetch_all("get_forward_extremities",
                                       "SELECT event_id FROM event_forward_extremities WHERE room_id = ?", (room_id,))
        return [r[0] for r in rows]

    async def delete_forward_extremities(self, room_id: str, keep: str) -> int:
        """Drop every forward extremity of the room but `keep`; the number dropped."""
        async def txn_fn(txn: Transaction) -> int:
            rows = await txn.fetch_all(
                "DELETE FROM event_forward_extremities WHERE room_id = ? AND event_id <> ? RETURNING event_id",
                (room_id, keep))
            return len(rows)

        return await self.db.run_interaction("delete_forward_extremities", txn_fn)

    async def get_backward_extremities(self, room_id: str, limit: int = 20) -> dict[str, int | None]:
        """The room's history gaps: prev events we do not hold in the timeline (missing, or only as
        outliers), each with the state group before the oldest timeline event naming it.

        Only the gaps at the bottom of the history (lowest depth first) are returned, `limit` at most.
        """

        async def txn_fn(txn: Transaction) -> dict[str, int | None]:
            rows = await txn.fetch_all(
                "SELECT g.prev_event_id, MIN(c.depth), MIN(g.event_id) FROM event_edges g"
                " JOIN events c ON c.event_id = g.event_id AND c.outlier = ? AND c.rejected_reason IS NULL"
                " LEFT JOIN events p ON p.event_id = g.prev_event_id"
                " WHERE g.room_id = ? AND (p.event_id IS NULL OR p.outlier = ?)"
                " GROUP BY g.prev_event_id ORDER BY MIN(c.depth) LIMIT ?",
                (False, room_id, True, limit))
            out: dict[str, int | None] = {}
            for prev_id, _, child_id in rows:
                row = await txn.fetch_one(
                    "SELECT s.state_group, g.event_id, e.prev_state_group FROM event_to_state_groups s"
                    " JOIN state_groups g ON g.id = s.state_group"
                    " LEFT JOIN state_group_edges e ON e.state_group = s.state_group WHERE s.event_id = ?",
                    (child_id,))
                if row is None:
                    out[prev_id] = None
                else:
                    group, creator, prev_group = row
                    out[prev_id] = (int(prev_group) if prev_group is not None else None) if creator == child_id \
                        else int(group)
            return out

        return await self.db.run_interaction("get_backward_extremities", txn_fn, write=False)

    async def promote_outliers_to_history(self, items: Sequence[tuple[str, int]]) -> int:
        """Outliers that backfill found in the room's history (e.g. the state events before our join):
        each (event ID, state group before it) becomes a timeline event on the backwards
        `events_backfill` stream, in the order given (newest first). Returns how many changed."""
        if not items:
            return 0

        async def txn_fn(txn: Transaction) -> int:
            positions = await allocate_stream_positions(txn, EVENTS_BACKFILL, len(items), backwards=True)
            changed = 0
            for (event_id, group), position in zip(items, positions, strict=True):
                row = await txn.fetch_one("SELECT outlier, soft_failed FROM events WHERE event_id = ?", (event_id,))
                if row is None or not row[0] or row[1]:
                    continue  # gone, already in the timeline, or soft-failed (never shown)
                await txn.execute("UPDATE events SET outlier = ?, stream_ordering = ? WHERE event_id = ?",
                                  (False, position, event_id))
                await txn.execute("INSERT INTO event_to_state_groups (event_id, state_group) VALUES (?, ?)"
                                  " ON CONFLICT (event_id) DO NOTHING", (event_id, group))
                changed += 1
            return changed

        changed = await self.db.run_interaction("promote_outliers_to_history", txn_fn, isolation="read_committed")
        self.forget_cached_events(event_id for event_id, _ in items)
        return changed

    async def get_event_id_for_txn(self, user_id: str, device_id: str, txn_id: str) -> str | None:
        return await self.db.fetch_value(
            "get_event_id_for_txn",
            "SELECT event_id FROM event_txn_ids WHERE user_id = ? AND device_id = ? AND txn_id = ?",
            (user_id, device_id, txn_id),
        )

    async def get_event_ids_between(self, after: int, upto: int, limit: int) -> list[tuple[int, str]]:
        """(stream ordering, event ID) of events with after < ordering <= upto, oldest first."""
        rows = await self.db.fetch_all(
            "get_event_ids_between",
            "SELECT stream_ordering, event_id FROM events WHERE stream_ordering > ? AND stream_ordering <= ?"
            " ORDER BY stream_ordering LIMIT ?", (after, upto, limit))
        return [(int(r[0]), r[1]) for r in rows]

    async def current_stream_position(self) -> int:
        return await self.db.run_interaction("events_position", get_stream_position, EVENTS, write=False)

    # --- state ---------------------------------------------------------------------
    async def get_state_group_for_event(self, event_id: str) -> int | None:
        return await self.db.fetch_value("get_state_group_for_event",
                                         "SELECT state_group FROM event_to_state_groups WHERE event_id = ?",
                                         (event_id,))

    async def get_state_groups_for_events(self, event_ids: Sequence[str]) -> dict[str, int]:
        if not event_ids:
            return {}

        async def txn_fn(txn: Transaction) -> dict[str, int]:
            clause, params = txn.dialect.in_list("event_id", list(event_ids))
            rows = await txn.fetch_all(f"SELECT event_id, state_group FROM event_to_state_groups WHERE {clause}",
                                       params)
            return {r[0]: r[1] for r in rows}

        return await self.db.run_interaction("get_state_groups_for_events", txn_fn, write=False)

    async def get_state_for_group(self, group: int) -> StateMap:
        """The full state of a state group (type, state_key) -> event_id. Do not mutate the result."""
        cached = self._group_cache.get(group)
        if cached is not None:
            self._group_hits += 1
            self._group_cache.move_to_end(group)
            return cached
        self._group_misses += 1
        # Walk back to the nearest cached ancestor, then apply deltas forwards.
        chain: list[int] = []
        base: StateMap = {}
        cursor: int | None = group
        while cursor is not None:
            cached = self._group_cache.get(cursor)
            if cached is not None:
                base = cached
                break
            chain.append(cursor)
            cursor = await self.db.fetch_value("state_group_prev",
                                               "SELECT prev_state_group FROM state_group_edges WHERE state_group = ?",
                                               (cursor,))
        deltas = await self.db.run_interaction("state_group_deltas", _load_group_deltas, chain, write=False)
        state = dict(base)
        for g in reversed(chain):
            state.update(deltas.get(g, {}))
            self._cache_group(g, dict(state))
        self._trim_groups()
        return self._group_cache[group]

    async def get_state_for_groups(self, groups: Iterable[int]) -> dict[int, StateMap]:
        """`get_state_for_group` for many groups in one transaction: the chains of all groups not
        cached are walked together, one query per step back, and their deltas read in one query."""
        out: dict[int, StateMap] = {}
        missing = []
        for group in dict.fromkeys(groups):
            cached = self._group_cache.get(group)
            if cached is not None:
                self._group_hits += 1
                self._group_cache.move_to_end(group)
                out[group] = cached
            else:
                missing.append(group)
        if not missing:
            return out
        self._group_misses += len(missing)
        known = dict(self._group_cache)

        async def txn_fn(txn: Transaction) -> tuple[dict[int, int | None], dict[int, StateMap]]:
            prev: dict[int, int | None] = {}
            frontier = missing
            while frontier:
                clause, params = txn.dialect.in_list("state_group", frontier)
                found = dict(await txn.fetch_all(
                    f"SELECT state_group, prev_state_group FROM state_group_edges WHERE {clause}", params))
                step: dict[int, None] = {}
                for group in frontier:
                    parent = found.get(group)
                    prev[group] = None if parent is None else int(parent)
                    if parent is not None and parent not in prev and parent not in known:
                        step[int(parent)] = None
                frontier = list(step)
            return prev, await _load_group_deltas(txn, list(prev))

        prev, deltas = await self.db.run_interaction("state_groups_batch", txn_fn, write=False)
        for group in missing:
            chain = []
            cursor: int | None = group
            while cursor is not None and cursor not in known:
                chain.append(cursor)
                cursor = prev.get(cursor)
            state = dict(known[cursor]) if cursor is not None else {}
            for g in reversed(chain):
                state.update(deltas.get(g, {}))
                known[g] = self._cache_group(g, dict(state))
            out[group] = known[group]
        self._trim_groups()
        return out

    async def store_state_group(self, room_id: str, state: StateMap, prev_group: int | None = None) -> int:
        """A new state group holding `state` (a delta from `prev_group` when given); returns its ID.

        For state worked out apart from any one event (resolved, or fetched from another server):
        the group names no creating event, so an event given it as its group has it as the state
        before it, as for any event that does not change state.
        """
        base = await self.get_state_for_group(prev_group) if prev_group is not None else {}
        if any(k not in state for k in base):
            prev_group, base = None, {}
        delta = {k: v for k, v in state.items() if base.get(k) != v}
        group = await self.db.run_interaction("store_state_group", create_state_group, room_id, "", prev_group,
                                              delta)
        self._cache_group(group, dict(state))
        self._trim_groups()
        return group

    async def get_state_after_event(self, event_id: str) -> StateMap:
        group = await self.get_state_group_for_event(event_id)
        if group is None:
            return {}
        return await self.get_state_for_group(group)

    async def get_state_before_event(self, event_id: str) -> StateMap:
        """State before the event: its group's parent when the event made the group, else its group."""
        row = await self.db.fetch_one(
            "state_group_before",
            "SELECT s.state_group, g.event_id, e.prev_state_group FROM event_to_state_groups s"
            " JOIN state_groups g ON g.id = s.state_group"
            " LEFT JOIN state_group_edges e ON e.state_group = s.state_group WHERE s.event_id = ?",
            (event_id,),
        )
        if row is None:
            return {}
        group, creator_event, prev_group = row
        if creator_event == event_id:
            return await self.get_state_for_group(prev_group) if prev_group is not None else {}
        return await self.get_state_for_group(group)

    async def get_current_state_ids(self, room_id: str) -> StateMap:
        return await self.db.run_interaction("get_current_state", room_state.current_state_ids, room_id,
                                             write=False)

    async def get_current_state_event_id(self, room_id: str, event_type: str, state_key: str) -> str | None:
        return await self.db.run_interaction("get_current_state_event", room_state.current_state_event_id,
                                             room_id, event_type, state_key, write=False)

    async def get_last_event_before(self, room_id: str, stream_position: int) -> str | None:
        """The room's last event at or before a stream position."""
        return await self.db.fetch_value(
            "last_event_before",
            "SELECT event_id FROM events WHERE room_id = ? AND stream_ordering <= ? AND outlier = ?"
            " ORDER BY stream_ordering DESC LIMIT 1",
            (room_id, stream_position, False),
        )

    # --- memberships -----------------------------------------------------------------
    async def get_rooms_for_user(self, user_id: str, memberships: Sequence[str] = ("join",)) -> dict[str, str]:
        """room_id -> membership for the user's current memberships among `memberships`."""
        return await self.db.run_interaction("get_rooms_for_user", room_state.rooms_for_user, user_id,
                                             memberships, write=False)

    async def get_membership(self, room_id: str, user_id: str) -> tuple[str | None, str | None]:
        """(membership, event_id) of the user's current member event in the room."""
        return await self.db.run_interaction("get_membership", room_state.membership, room_id, user_id, write=False)

    async def get_members(self, room_id: str, memberships: Sequence[str] = ("join",)) -> list[str]:
        return await self.db.run_interaction("get_members", room_state.members, room_id, memberships, write=False)

    async def forget_room(self, user_id: str, room_id: str) -> None:
        await self.db.simple_upsert("room_forgotten", {"user_id": user_id, "room_id": room_id}, {})

    async def is_forgotten(self, user_id: str, room_id: str) -> bool:
        return bool(await self.db.fetch_value(
            "is_forgotten", "SELECT 1 FROM room_forgotten WHERE user_id = ? AND room_id = ?", (user_id, room_id)))

    # --- writing ---------------------------------------------------------------------
    async def persist_events(self, batch: Sequence[tuple[Event, PersistContext]]) -> list[int]:
        """Write events and everything derived from them in one transaction, in order.

        Returns their stream orderings. The batch may span rooms; events of one room must come in
        the order they were built, each after the events it builds on.
        """
        if not batch:
            return []
        positions = await self.db.run_interaction("persist_events", _persist_events, batch,
                                                  isolation="read_committed")
        for (event, context), stream_ordering in zip(batch, positions, strict=True):
            context.stream_ordering = stream_ordering
            event.internal_metadata["stream_ordering"] = stream_ordering
            # Kept on the cached event for the stages that follow the stream (not stored).
            event.internal_metadata["state_group"] = context.state_group
            if context.outlier or context.soft_failed:
                event.internal_metadata["outlier"] = True
            if context.soft_failed:
                event.internal_metadata["soft_failed"] = True
            self._remember(event)
            if context.applies_redaction and event.redacts is not None:
                self._forget(event.redacts)
            if context.new_group_delta is not None and context.state_group is not None:
                parent = self._group_cache.get(context.new_group_prev) if context.new_group_prev is not None else {}
                if context.state_before is not None:
                    parent = context.state_before
                if parent is not None:
                    self._cache_group(context.state_group, {**parent, **context.new_group_delta})
        self._trim_groups()
        return positions

    async def persist_event(self, event: Event, context: PersistContext) -> int:
        """Write one event in its own transaction; returns its stream ordering."""
        return (await self.persist_events([(event, context)]))[0]

    async def censor_redacted_events(self, redacted_before_ts: int) -> int:
        """Prune the stored JSON of events whose redaction is older than the cutoff; returns the count."""
        from homeserver.events.redaction import redact

        async def txn_fn(txn: Transaction) -> int:
            rows = await txn.fetch_all(
                "SELECT r.event_id, r.redacts, j.json, rm.room_version FROM redactions r"
                " JOIN events e ON e.event_id = r.redacts AND e.redacted_by = r.event_id"
                " JOIN event_json j ON j.event_id = r.redacts JOIN rooms rm ON rm.room_id = e.room_id"
                " WHERE r.have_censored = ? AND r.received_ts < ? LIMIT 500",
                (False, redacted_before_ts),
            )
            for redaction_id, target_id, raw, version in rows:
                pruned = redact(decode(raw), get_room_version(version))
                await txn.execute("UPDATE event_json SET json = ? WHERE event_id = ?", (encode_str(pruned), target_id))
                await txn.execute("UPDATE redactions SET have_censored = ? WHERE event_id = ?", (True, redaction_id))
            return len(rows)

        count = await self.db.run_interaction("censor_redacted_events", txn_fn)
        if count:
            self._cache.clear()
        return count

    def forget_cached_events(self, event_ids: Iterable[str]) -> None:
        """Drop events from the cache after their stored JSON was rewritten (erasure)."""
        for event_id in event_ids:
            self._cache.pop(event_id)

    async def mark_redacted(self, event_id: str, redaction_id: str) -> None:
        await self.db.simple_update("events", {"event_id": event_id}, {"redacted_by": redaction_id})
        self._forget(event_id)

    def _forget(self, event_id: str) -> None:
        self._cache.pop(event_id)


# --- transaction functions -------------------------------------------------------------


async def _load_events(txn: Transaction, event_ids: list[str]) -> list[Event]:
    clause, params = txn.dialect.in_list("event_id", event_ids)
    rows = await txn.fetch_all(
        "SELECT event_id, event_json.json, rooms.room_version, events.rejected_reason, events.stream_ordering,"
        " events.redacted_by, events.outlier, event_json.internal_metadata, events.soft_failed"
        " FROM events JOIN event_json USING (event_id) JOIN rooms ON rooms.room_id = events.room_id"
        f" WHERE {clause}",
        params,
    )
    events = []
    for event_id, raw, version, rejected, stream_ordering, redacted_by, outlier, metadata, soft_failed in rows:
        event = Event(decode(raw), get_room_version(version), event_id=event_id, rejected_reason=rejected)
        event.internal_metadata.update(decode(metadata) if metadata else {})
        event.internal_metadata["stream_ordering"] = stream_ordering
        event.internal_metadata["outlier"] = bool(outlier)
        if soft_failed:
            event.internal_metadata["soft_failed"] = True
        if redacted_by:
            event.internal_metadata["redacted_by"] = redacted_by
        events.append(event)
    return events


async def _load_group_deltas(txn: Transaction, groups: list[int]) -> dict[int, StateMap]:
    if not groups:
        return {}
    clause, params = txn.dialect.in_list("state_group", groups)
    rows = await txn.fetch_all(f"SELECT state_group, type, state_key, event_id FROM state_groups_state WHERE {clause}",
                               params)
    deltas: dict[int, StateMap] = {}
    for group, event_type, state_key, event_id in rows:
        deltas.setdefault(group, {})[(event_type, state_key)] = event_id
    return deltas


async def create_state_group(txn: Transaction, room_id: str, event_id: str, prev_group: int | None,
                             delta: Mapping[StateKey, str]) -> int:
    group = int(await txn.fetch_value("INSERT INTO state_groups (room_id, event_id) VALUES (?, ?) RETURNING id",
                                      (room_id, event_id)))
    if prev_group is not None:
        await txn.execute("INSERT INTO state_group_edges (state_group, prev_state_group) VALUES (?, ?)",
                          (group, prev_group))
    await txn.executemany(
        "INSERT INTO state_groups_state (state_group, room_id, type, state_key, event_id) VALUES (?, ?, ?, ?, ?)",
        [(group, room_id, t, sk, eid) for (t, sk), eid in delta.items()],
    )
    return group


async def add_missing_group_state(txn: Transaction, group: int, room_id: str, state: Mapping[StateKey, str]) -> None:
    """Add to a root state group's delta the keys of `state` it lacks (a partial-state room completed)."""
    held = await txn.fetch_all("SELECT type, state_key FROM state_groups_state WHERE state_group = ?", (group,))
    have = {(t, sk) for t, sk in held}
    await txn.executemany(
        "INSERT INTO state_groups_state (state_group, room_id, type, state_key, event_id) VALUES (?, ?, ?, ?, ?)",
        [(group, room_id, t, sk, eid) for (t, sk), eid in sorted(state.items()) if (t, sk) not in have])


async def delete_state_group_links_txn(txn: Transaction, event_ids: Sequence[str]) -> None:
    """Forget which state group each of these events has (the events are being purged)."""
    clause, params = txn.dialect.in_list("event_id", list(event_ids))
    await txn.execute(f"DELETE FROM event_to_state_groups WHERE {clause}", params)


async def delete_room_state_group_links_txn(txn: Transaction, room_id: str) -> None:
    """`delete_state_group_links_txn` for every event of the room (the room is being deleted)."""
    await txn.execute(
        "DELETE FROM event_to_state_groups WHERE event_id IN (SELECT event_id FROM events WHERE room_id = ?)",
        (room_id,))


async def delete_user_txn_ids_txn(txn: Transaction, user_id: str) -> None:
    """Forget the transaction IDs of the user's requests (erasure)."""
    await txn.execute("DELETE FROM event_txn_ids WHERE user_id = ?", (user_id,))


async def delete_txn_ids_txn(txn: Transaction, event_ids: Sequence[str]) -> None:
    """Forget the transaction IDs that sent these events (the events are being purged)."""
    clause, params = txn.dialect.in_list("event_id", list(event_ids))
    await txn.execute(f"DELETE FROM event_txn_ids WHERE {clause}", params)


async def delete_room_txn_ids_txn(txn: Transaction, room_id: str) -> None:
    """Forget the transaction IDs of the room's events (the room is being deleted)."""
    await txn.execute("DELETE FROM event_txn_ids WHERE room_id = ?", (room_id,))


# --- erasure and purges (deactivation.py, user_events.py and purge.py call these) -----------


async def erase_member_profiles_txn(txn: Transaction, user_id: str) -> None:
    """Forget the display name and avatar the user's memberships recorded (an erasure)."""
    await txn.execute("UPDATE room_memberships SET display_name = NULL, avatar_url = NULL WHERE user_id = ?",
                      (user_id,))


async def set_event_json_txn(txn: Transaction, event_id: str, json_text: str) -> None:
    """Replace an event's stored JSON (by its redacted form, in an erasure)."""
    await txn.execute("UPDATE event_json SET json = ? WHERE event_id = ?", (json_text, event_id))


async def mark_redaction_censored_txn(txn: Transaction, redaction_id: str) -> None:
    """Record that the event this redaction redacts is stored in pruned form."""
    await txn.execute("UPDATE redactions SET have_censored = ? WHERE event_id = ?", (True, redaction_id))


async def delete_events_txn(txn: Transaction, room_id: str, event_ids: Sequence[str]) -> int:
    """Delete these events of the room with their JSON, auth and DAG edges, the redactions they are
    and those of them, their memberships and extremity rows. Kept events whose prev_events go get
    those as backward extremities. Returns how many events were deleted."""
    clause, params = txn.dialect.in_list("event_id", event_ids)
    edges_clause, edge_params = txn.dialect.in_list("prev_event_id", event_ids)
    missing = await txn.fetch_all(
        f"SELECT DISTINCT prev_event_id FROM event_edges WHERE {edges_clause} AND NOT ({clause})",
        (*edge_params, *params))
    await txn.execute(f"DELETE FROM event_json WHERE {clause}", params)
    await txn.execute(f"DELETE FROM event_auth WHERE {clause}", params)
    await txn.execute(f"DELETE FROM redactions WHERE {clause}", params)
    await txn.execute(f"DELETE FROM room_memberships WHERE {clause}", params)
    await txn.execute(f"DELETE FROM event_forward_extremities WHERE {clause}", params)
    await txn.execute(f"DELETE FROM event_backward_extremities WHERE {clause}", params)
    redacts_clause, redacts_params = txn.dialect.in_list("redacts", event_ids)
    await txn.execute(f"DELETE FROM redactions WHERE {redacts_clause}", redacts_params)
    await txn.execute(f"DELETE FROM event_edges WHERE {clause}", params)
    await txn.execute(f"DELETE FROM events WHERE {clause}", params)
    deleted = txn.rowcount
    for (prev_event_id,) in missing:
        await txn.execute(
            "INSERT INTO event_backward_extremities (room_id, event_id) VALUES (?, ?)"
            " ON CONFLICT (room_id, event_id) DO NOTHING", (room_id, prev_event_id))
    return deleted


async def mark_outliers_txn(txn: Transaction, event_ids: Sequence[str]) -> None:
    """Turn these events into outliers (state kept by a history purge)."""
    clause, params = txn.dialect.in_list("event_id", event_ids)
    await txn.execute(f"UPDATE events SET outlier = ? WHERE {clause}", (True, *params))


async def delete_state_groups_txn(txn: Transaction, groups: Sequence[int]) -> None:
    """Delete these state groups, their deltas and their edges (nothing refers to them any more)."""
    clause, params = txn.dialect.in_list("state_group", groups)
    await txn.execute(f"DELETE FROM state_groups_state WHERE {clause}", params)
    await txn.execute(f"DELETE FROM state_group_edges WHERE {clause}", params)
    clause, params = txn.dialect.in_list("id", groups)
    await txn.execute(f"DELETE FROM state_groups WHERE {clause}", params)


async def delete_room_state_groups_txn(txn: Transaction, room_id: str) -> None:
    """The room's state groups and their edges (the room is being deleted; `delete_room_events_txn`
    drops the groups' deltas)."""
    await txn.execute(
        "DELETE FROM state_group_edges WHERE state_group IN (SELECT id FROM state_groups WHERE room_id = ?)",
        (room_id,))
    await txn.execute("DELETE FROM state_groups WHERE room_id = ?", (room_id,))


async def delete_room_events_txn(txn: Transaction, room_id: str) -> None:
    """Every event of the room with its JSON, DAG edges, auth, extremities, state deltas,
    memberships, forgotten marks and redactions (the room is being deleted)."""
    for_room = (room_id,)
    await txn.execute("DELETE FROM redactions WHERE event_id IN (SELECT event_id FROM events WHERE room_id = ?)",
                      for_room)
    await txn.execute("DELETE FROM events WHERE room_id = ?", for_room)
    await txn.execute("DELETE FROM event_json WHERE room_id = ?", for_room)
    await txn.execute("DELETE FROM event_edges WHERE room_id = ?", for_room)
    await txn.execute("DELETE FROM event_auth WHERE room_id = ?", for_room)
    await txn.execute("DELETE FROM event_forward_extremities WHERE room_id = ?", for_room)
    await txn.execute("DELETE FROM event_backward_extremities WHERE room_id = ?", for_room)
    await txn.execute("DELETE FROM state_groups_state WHERE room_id = ?", for_room)
    await txn.execute("DELETE FROM room_memberships WHERE room_id = ?", for_room)
    await txn.execute("DELETE FROM room_forgotten WHERE room_id = ?", for_room)


async def delete_room_row_txn(txn: Transaction, room_id: str) -> None:
    """The room's own row, last of a room deletion."""
    await txn.execute("DELETE FROM rooms WHERE room_id = ?", (room_id,))


async def set_room_public_txn(txn: Transaction, room_id: str, public: bool) -> int:
    """Publish the room in (or remove it from) the server's room directory."""
    return await txn.update("rooms", {"room_id": room_id}, {"is_public": public})


async def add_state_membership_rows(txn: Transaction, room_id: str, event_ids: Iterable[str]) -> None:
    """`room_memberships` rows for the member events among `event_ids` (a room's state) that have
    none: the state a room joined over federation comes with is stored as outliers, which record no
    membership; once it is the room's state (a full join, a partial-state room completed), its
    members are members like any other (admin queries of a remote user's rooms, the user directory)."""
    wanted = sorted(set(event_ids))
    for start in range(0, len(wanted), 500):
        clause, params = txn.dialect.in_list("event_id", wanted[start:start + 500])
        rows = await txn.fetch_all(
            "SELECT e.event_id, e.state_key, e.sender, e.stream_ordering, j.json FROM events e"
            " JOIN event_json j ON j.event_id = e.event_id"
            f" WHERE e.{clause} AND e.type = 'm.room.member' AND e.room_id = ? AND e.rejected_reason IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM room_memberships m WHERE m.event_id = e.event_id)",
            (*params, room_id))
        membership_rows = []
        for event_id, state_key, sender, stream_ordering, json in rows:
            content = decode(json).get("content")
            content = content if isinstance(content, dict) else {}
            membership = content.get("membership")
            if not isinstance(membership, str) or state_key is None:
                continue
            displayname = content.get("displayname") if isinstance(content.get("displayname"), str) else None
            avatar_url = content.get("avatar_url") if isinstance(content.get("avatar_url"), str) else None
            membership_rows.append((event_id, state_key, sender, room_id, membership, displayname, avatar_url,
                                    int(stream_ordering)))
        await txn.executemany(
            "INSERT INTO room_memberships (event_id, user_id, sender, room_id, membership, display_name, avatar_url,"
            " stream_ordering) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING", membership_rows)


async def _persist_events(txn: Transaction, batch: Sequence[tuple[Event, PersistContext]]) -> list[int]:
    """Write a batch of events in order, each table with one statement where the order allows it."""
    positions = [0] * len(batch)
    live = [i for i, (_, ctx) in enumerate(batch) if not ctx.backfilled]
    history = [i for i, (_, ctx) in enumerate(batch) if ctx.backfilled]
    if live:
        for i, position in zip(live, await allocate_stream_positions(txn, EVENTS, len(live)), strict=True):
            positions[i] = position
    if history:
        allocated = await allocate_stream_positions(txn, EVENTS_BACKFILL, len(history), backwards=True)
        for i, position in zip(history, allocated, strict=True):
            positions[i] = position
    event_rows, json_rows, edge_rows, auth_rows, group_rows, membership_rows = [], [], [], [], [], []
    forgotten, redaction_rows, applied_redactions, relation_rows, txn_rows = [], [], [], [], []
    # Forward extremities: the net effect of the batch, so an event that a later one in the same
    # batch builds on is never inserted only to be deleted again.
    added_extremities: dict[str, set[str]] = {}
    removed_extremities: dict[str, set[str]] = {}
    current_state: dict[tuple[str, str, str], tuple[str, str | None]] = {}
    full_state_rooms: set[str] = set()
    replaced = [(event.event_id,) for event, ctx in batch if ctx.replaces_outlier]
    if replaced:
        for table in ("event_json", "event_edges", "event_auth"):
            await txn.executemany(f"DELETE FROM {table} WHERE event_id = ?", replaced)
        await txn.executemany("DELETE FROM events WHERE event_id = ? AND outlier = ?",
                              [(event_id, True) for (event_id,) in replaced])
    for (event, ctx), stream_ordering in zip(batch, positions, strict=True):
        room_id = event.room_id
        accepted = event.rejected_reason is None
        # Outliers and soft-failed events are stored but take no part in the room's live DAG.
        in_dag = not ctx.outlier and not ctx.soft_failed
        event_rows.append((event.event_id, room_id, event.type, event.state_key, event.sender, stream_ordering,
                           event.depth, event.origin_server_ts, ctx.received_ts, not in_dag, event.rejected_reason,
                           ctx.soft_failed))
        metadata = {k: v for k, v in event.internal_metadata.items() if k in _STORED_METADATA}
        json_rows.append((event.event_id, room_id, 3, encode_str(metadata), encode_str(dict(event.pdu))))
        edge_rows.extend((event.event_id, prev, room_id) for prev in event.prev_event_ids)
        auth_rows.extend((event.event_id, auth, room_id) for auth in event.auth_event_ids)
        if ctx.state_before is not None:
            ctx.new_group_prev = await create_state_group(txn, room_id, event.event_id, None, ctx.state_before)
        if ctx.new_group_delta is not None:
            ctx.state_group = await create_state_group(txn, room_id, event.event_id, ctx.new_group_prev,
                                                       ctx.new_group_delta)
        if ctx.state_group is not None:
            group_rows.append((event.event_id, ctx.state_group))
        if accepted and in_dag and not ctx.backfilled:
            added = added_extremities.setdefault(room_id, set())
            removed = removed_extremities.setdefault(room_id, set())
            for extremity in ctx.replaces_extremities:
                if extremity in added:
                    added.discard(extremity)
                else:
                    removed.add(extremity)
            added.add(event.event_id)
        state_delta = ctx.current_state_delta if in_dag and not ctx.backfilled else None
        if ctx.current_state_is_full and state_delta is not None:
            full_state_rooms.add(room_id)
            current_state = {k: v for k, v in current_state.items() if k[0] != room_id}
        out_of_band = ctx.outlier and ctx.out_of_band_membership and event.type == "m.room.member" and accepted
        if out_of_band:
            state_delta = {event.state_tuple(): event.event_id}
            ctx.memberships = {**ctx.memberships, event.event_id: event.membership}
        for (event_type, state_key), state_event_id in (state_delta or {}).items():
            membership = ctx.memberships.get(state_event_id) if event_type == "m.room.member" else None
            current_state[(room_id, event_type, state_key)] = (state_event_id, membership)
        if event.type == "m.room.member" and accepted and (in_dag or out_of_band):
            content = event.content
            displayname = content.get("displayname") if isinstance(content.get("displayname"), str) else None
            avatar_url = content.get("avatar_url") if isinstance(content.get("avatar_url"), str) else None
            membership_rows.append((event.event_id, event.state_key, event.sender, room_id, content.get("membership"),
                                    displayname, avatar_url, stream_ordering))
            if content.get("membership") == "join":
                forgotten.append((event.state_key, room_id))
        if event.redacts is not None and accepted and in_dag:
            redaction_rows.append((event.event_id, event.redacts, ctx.received_ts))
            if ctx.applies_redaction:
                applied_redactions.append((event.event_id, event.redacts))
        if accepted and in_dag:
            relation = relation_of(event.content)
            if relation is not None:
                rel_type, parent, key = relation
                relation_rows.append((event.event_id, room_id, parent, rel_type, key))
        if ctx.txn is not None:
            user_id, device_id, txn_id = ctx.txn
            txn_rows.append((user_id, device_id, txn_id, room_id, event.event_id, ctx.received_ts))
    await txn.executemany(
        "INSERT INTO events (event_id, room_id, type, state_key, sender, stream_ordering, depth, origin_server_ts,"
        " received_ts, outlier, rejected_reason, soft_failed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        event_rows)
    await txn.executemany(
        "INSERT INTO event_json (event_id, room_id, format_version, internal_metadata, json) VALUES (?, ?, ?, ?, ?)",
        json_rows)
    await txn.executemany("INSERT INTO event_edges (event_id, prev_event_id, room_id) VALUES (?, ?, ?)", edge_rows)
    await txn.executemany("INSERT INTO event_auth (event_id, auth_id, room_id) VALUES (?, ?, ?)", auth_rows)
    await txn.executemany("INSERT INTO event_to_state_groups (event_id, state_group) VALUES (?, ?)", group_rows)
    await txn.executemany("DELETE FROM event_forward_extremities WHERE room_id = ? AND event_id = ?",
                          [(room, e) for room, ids in removed_extremities.items() for e in sorted(ids)])
    await txn.executemany("INSERT INTO event_forward_extremities (room_id, event_id) VALUES (?, ?)",
                          [(room, e) for room, ids in added_extremities.items() for e in sorted(ids)])
    await room_state.write_current_state(txn, current_state, sorted(full_state_rooms))
    await txn.executemany(
        "INSERT INTO room_memberships (event_id, user_id, sender, room_id, membership, display_name, avatar_url,"
        " stream_ordering) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", membership_rows)
    for room_id in sorted(full_state_rooms):
        await add_state_membership_rows(txn, room_id, [eid for (room, t, _), (eid, _) in current_state.items()
                                                       if room == room_id and t == "m.room.member"])
    await txn.executemany("DELETE FROM room_forgotten WHERE user_id = ? AND room_id = ?", forgotten)
    await txn.executemany("INSERT INTO redactions (event_id, redacts, received_ts) VALUES (?, ?, ?)"
                          " ON CONFLICT (event_id) DO NOTHING", redaction_rows)
    await txn.executemany("UPDATE events SET redacted_by = ? WHERE event_id = ?", applied_redactions)
    await relations.add_relations_txn(txn, relation_rows)
    await txn.executemany(
        "INSERT INTO event_txn_ids (user_id, device_id, txn_id, room_id, event_id, inserted_ts)"
        " VALUES (?, ?, ?, ?, ?, ?)", txn_rows)
    return positions


# Internal metadata kept with the event: what the client API needs to render it later.
_STORED_METADATA = ("txn_id", "device_id", "token_id", "replaces_state", "invite_room_state",
                    "send_on_behalf_of")
