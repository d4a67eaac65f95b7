"""Queries /sync needs, shaped for many rooms at once: one round trip per question, not per room.

Per-room "newest N rows" questions are answered with a UNION ALL of small per-room subqueries,
each walking the (room_id, stream_ordering) index backwards from its own upper bound, which both
engines execute as cheap index range scans; a window function over every room's events would
read the whole range first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.database import Database, Row, Transaction
from storage.sql import Dialect
from storage.stores import room_state
from storage.stores.timeline import has_relations_sql

# SQLite refuses compound SELECTs of more than 500 terms; stay well below.
_UNION_CHUNK = 100


@dataclass(frozen=True, slots=True)
class MembershipRow:
    """One of the user's membership events: which room, what membership, where in the stream."""

    room_id: str
    membership: str
    event_id: str
    stream_ordering: int


@dataclass(frozen=True, slots=True)
class TimelineRange:
    """Ask for the newest `limit` events of a room with `after < stream_ordering <= upto`."""

    room_id: str
    after: int | None
    upto: int
    limit: int


@dataclass(frozen=True, slots=True)
class RoomSummaryInputs:
    """room_id -> membership -> count; room_id -> (type, state_key) -> event_id; room_id -> users."""

    member_counts: dict[str, dict[str, int]]
    naming_state: dict[str, dict[tuple[str, str], str]]
    first_members: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class TimelineRow:
    event_id: str
    stream_ordering: int
    # (state group before the event, state group after it); None for an event without state.
    groups_around: tuple[int | None, int] | None = None
    # Whether anything relates to it that is bundled (see timeline.has_relations_sql).
    has_relations: bool = True


# Below every stream position (backfilled events count down from zero).
_NO_LOWER_BOUND = -(2**62)


# The state groups around each row's event `t.event_id` (see `_groups_around`), and whether
# anything relates to it.
_GROUP_COLUMNS = f"sg.state_group, sgc.event_id, sge.prev_state_group, {has_relations_sql('t.event_id')}"
_GROUP_JOINS = (
    " LEFT JOIN event_to_state_groups sg ON sg.event_id = t.event_id"
    " LEFT JOIN state_groups sgc ON sgc.id = sg.state_group"
    " LEFT JOIN state_group_edges sge ON sge.state_group = sg.state_group"
)


def _groups_around(event_id: str, group: int | None, creator: str | None, prev_group: int | None
                   ) -> tuple[int | None, int] | None:
    """(before, after) from an event's group, the event that created that group and its parent:
    an event that changed state created its own group, whose parent holds the state before it; any
    other event shares the group of the state it was sent in."""
    if group is None:
        return None
    if creator == event_id:
        return (None if prev_group is None else int(prev_group)), int(group)
    return int(group), int(group)


def _chunks(items: Sequence, size: int = _UNION_CHUNK) -> list[Sequence]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class SyncStore:
    def __init__(self, db: Database):
        self.db = db

    async def get_stream_positions(self) -> dict[str, int]:
        """Every stream's current position in one read."""
        rows = await self.db.fetch_all("sync_stream_positions",
                                       "SELECT stream_name, position FROM stream_positions")
        return {name: int(position) for name, position in rows}

    # --- which rooms ---------------------------------------------------------------------
    async def get_memberships_at(self, user_id: str, upto: int) -> dict[str, MembershipRow]:
        """The user's membership in every room they have one in, as of stream position `upto`."""

        async def txn_fn(txn: Transaction) -> dict[str, MembershipRow]:
            rows = await txn.fetch_all(
                "SELECT c.room_id, c.membership, c.event_id, e.stream_ordering FROM current_state_events c"
                " JOIN events e ON e.event_id = c.event_id"
                " WHERE c.type = 'm.room.member' AND c.state_key = ?",
                (user_id,),
            )
            found = {r[0]: MembershipRow(r[0], r[1], r[2], int(r[3])) for r in rows}
            # Current state may already hold a change committed after `upto` was read: step back to
            # the membership the token describes, so the response agrees with its next_batch.
            newer = [room_id for room_id, row in found.items() if row.stream_ordering > upto]
            if newer:
                older = await _latest_memberships(txn, user_id, newer, upto)
                for room_id in newer:
                    if room_id in older:
                        found[room_id] = older[room_id]
                    else:
                        del found[room_id]
            return found

        return await self.db.run_interaction("sync_memberships_at", txn_fn, write=False)

    async def get_memberships_before(self, user_id: str, room_ids: Sequence[str], position: int
                                     ) -> dict[str, MembershipRow]:
        """The user's latest membership event at or before `position` in each of `room_ids`."""
        if not room_ids:
            return {}
        return await self.db.run_interaction("sync_memberships_before", _latest_memberships, user_id,
                                             list(room_ids), position, write=False)

    async def get_membership_changes(self, user_id: str, after: int, upto: int) -> list[MembershipRow]:
        """The user's membership events with `after < stream_ordering <= upto`, oldest first."""
        rows = await self.db.fetch_all(
            "sync_membership_changes",
            "SELECT room_id, membership, event_id, stream_ordering FROM room_memberships"
            " WHERE user_id = ? AND stream_ordering > ? AND stream_ordering <= ? ORDER BY stream_ordering",
            (user_id, after, upto),
        )
        return [MembershipRow(r[0], r[1], r[2], int(r[3])) for r in rows]

    async def get_rooms_with_new_events(self, room_ids: Sequence[str], after: int, upto: int
                                        ) -> dict[str, int]:
        """room_id -> newest stream position, for the rooms among `room_ids` with events in the range."""
        if not room_ids or after >= upto:
            return {}

        async def txn_fn(txn: Transaction) -> dict[str, int]:
            clause, params = txn.dialect.in_list("room_id", list(room_ids))
            rows = await txn.fetch_all(
                "SELECT room_id, MAX(stream_ordering) FROM events"
                f" WHERE {clause} AND stream_ordering > ? AND stream_ordering <= ? AND outlier = ?"
                " GROUP BY room_id",
                (*params, after, upto, False),
            )
            return {r[0]: int(r[1]) for r in rows}

        return await self.db.run_interaction("sync_rooms_with_new_events", txn_fn, write=False)

    async def get_forgotten_rooms(self, user_id: str) -> set[str]:
        rows = await self.db.fetch_all("sync_forgotten_rooms",
                                       "SELECT room_id FROM room_forgotten WHERE user_id = ?", (user_id,))
        return {r[0] for r in rows}

    # --- timelines -------------------------------------------------------------------------
    async def get_first_overflowing_event(self, user_id: str, after: int, upto: int, per_room: int) -> int | None:
        """The lowest stream position in (after, upto] at which one of the rooms the user is joined
        to holds its `per_room + 1`-th event of the range (None: no room holds more than `per_room`)."""
        if per_room < 1 or upto - after <= per_room:
            return None  # positions are unique: the range cannot hold that many events of one room

        async def txn_fn(txn: Transaction) -> int | None:
            value = await txn.fetch_value(
                "SELECT MIN(stream_ordering) FROM (SELECT e.stream_ordering, ROW_NUMBER() OVER"
                " (PARTITION BY e.room_id ORDER BY e.stream_ordering) AS n FROM events e"
                " WHERE e.room_id IN (SELECT c.room_id FROM current_state_events c WHERE c.type = 'm.room.member'"
                " AND c.state_key = ? AND c.membership = 'join')"
                " AND e.stream_ordering > ? AND e.stream_ordering <= ? AND e.outlier = ?) AS ranked WHERE n = ?",
                (user_id, after, upto, False, per_room + 1))
            return None if value is None else int(value)

        return await self.db.run_interaction("sync_first_overflowing_event", txn_fn, write=False)

    async def get_timelines(self, ranges: Sequence[TimelineRange]) -> dict[str, list[TimelineRow]]:
        """For each range, its room's newest `limit` events inside it, returned oldest first, each
        with the state groups around it (as `get_state_groups_around` gives them)."""
        if not ranges:
            return {}

        async def txn_fn(txn: Transaction) -> dict[str, list[TimelineRow]]:
            out: dict[str, list[TimelineRow]] = {r.room_id: [] for r in ranges}
            if txn.dialect.is_postgres:
                # One statement whatever the number of rooms: its text never changes, so the
                # server plans it once per connection (a UNION of N subqueries is planned anew).
                rows = await txn.fetch_all(
                    f"SELECT r.room_id, t.event_id, t.stream_ordering, {_GROUP_COLUMNS}"
                    " FROM unnest(?::text[], ?::bigint[], ?::bigint[], ?::bigint[]) AS r(room_id, upto, after, lim)"
                    " CROSS JOIN LATERAL (SELECT event_id, stream_ordering FROM events"
                    " WHERE room_id = r.room_id AND stream_ordering <= r.upto AND stream_ordering > r.after"
                    " AND outlier = FALSE AND rejected_reason IS NULL ORDER BY stream_ordering DESC LIMIT r.lim) AS t"
                    f"{_GROUP_JOINS}",
                    ([r.room_id for r in ranges], [r.upto for r in ranges],
                     [_NO_LOWER_BOUND if r.after is None else r.after for r in ranges], [r.limit for r in ranges]))
            else:
                rows = []
                for chunk in _chunks(list(ranges)):
                    parts, params = [], []
                    for i, r in enumerate(chunk):
                        lower = "" if r.after is None else " AND stream_ordering > ?"
                        parts.append(
                            f"SELECT * FROM (SELECT room_id, event_id, stream_ordering FROM events"
                            f" WHERE room_id = ? AND stream_ordering <= ?{lower} AND outlier = ?"
                            f" AND rejected_reason IS NULL ORDER BY stream_ordering DESC LIMIT ?) AS t{i}"
                        )
                        lower_params = () if r.after is None else (r.after,)
                        params.extend([r.room_id, r.upto, *lower_params, False, r.limit])
                    rows += await txn.fetch_all(
                        f"SELECT t.room_id, t.event_id, t.stream_ordering, {_GROUP_COLUMNS}"
                        f" FROM ({' UNION ALL '.join(parts)}) AS t{_GROUP_JOINS}", params)
            for room_id, event_id, stream_ordering, group, creator, prev_group, related in rows:
                out[room_id].append(TimelineRow(event_id, int(stream_ordering),
                                                _groups_around(event_id, group, creator, prev_group), bool(related)))
            for room_rows in out.values():
                room_rows.sort(key=lambda row: row.stream_ordering)
            return out

        return await self.db.run_interaction("sync_timelines", txn_fn, write=False, single_statement=True)

    # --- state -------------------------------------------------------------------------------
    async def get_state_groups_at(self, positions: Sequence[tuple[str, int]]) -> dict[str, int]:
        """room_id -> the state group after the room's last event at or before each position."""
        if not positions:
            return {}

        async def txn_fn(txn: Transaction) -> dict[str, int]:
            out: dict[str, int] = {}
            if txn.dialect.is_postgres:
                # One statement of fixed text (planned once per connection), as in get_timelines.
                rows = await txn.fetch_all(
                    "SELECT r.room_id, t.state_group FROM unnest(?::text[], ?::bigint[]) AS r(room_id, upto)"
                    " CROSS JOIN LATERAL (SELECT s.state_group FROM events e"
                    " JOIN event_to_state_groups s ON s.event_id = e.event_id"
                    " WHERE e.room_id = r.room_id AND e.stream_ordering <= r.upto AND e.outlier = FALSE"
                    " ORDER BY e.stream_ordering DESC LIMIT 1) AS t",
                    ([room_id for room_id, _ in positions], [position for _, position in positions]))
                return {room_id: int(group) for room_id, group in rows}
            for chunk in _chunks(list(positions)):
                parts, params = [], []
                for i, (room_id, position) in enumerate(chunk):
                    parts.append(
                        f"SELECT * FROM (SELECT e.room_id, s.state_group FROM events e"
                        f" JOIN event_to_state_groups s ON s.event_id = e.event_id"
                        f" WHERE e.room_id = ? AND e.stream_ordering <= ? AND e.outlier = ?"
                        f" ORDER BY e.stream_ordering DESC LIMIT 1) AS t{i}"
                    )
                    params.extend([room_id, position, False])
                for room_id, group in await txn.fetch_all(" UNION ALL ".join(parts), params):
                    out[room_id] = int(group)
            return out

        return await self.db.run_interaction("sync_state_groups_at", txn_fn, write=False, single_statement=True)

    async def get_state_groups_around(self, event_ids: Sequence[str]) -> dict[str, tuple[int | None, int]]:
        """event_id -> (state group before it, state group after it).

        An event that changed state created its own group, whose parent holds the state before it;
        any other event shares the group of the state it was sent in.
        """
        if not event_ids:
            return {}

        async def txn_fn(txn: Transaction) -> dict[str, tuple[int | None, int]]:
            clause, params = _qualified_in_list(txn.dialect, "s", "event_id", list(event_ids))
            rows = await txn.fetch_all(
                "SELECT s.event_id, s.state_group, g.event_id, e.prev_state_group"
                " FROM event_to_state_groups s"
                " JOIN state_groups g ON g.id = s.state_group"
                " LEFT JOIN state_group_edges e ON e.state_group = s.state_group"
                f" WHERE {clause}",
                params,
            )
            out: dict[str, tuple[int | None, int]] = {}
            for event_id, group, creator, prev_group in rows:
                around = _groups_around(event_id, group, creator, prev_group)
                if around is not None:
                    out[event_id] = around
            return out

        return await self.db.run_interaction("sync_state_groups_around", txn_fn, write=False)

    # --- summaries -----------------------------------------------------------------------------
    async def get_member_counts(self, room_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """room_id -> membership -> number of users with it, from current state."""
        if not room_ids:
            return {}
        counts = await self.db.run_interaction("sync_member_counts", room_state.member_counts, room_ids,
                                               write=False, single_statement=True)
        return {room_id: counts.get(room_id, {}) for room_id in room_ids}

    async def get_first_members(self, room_ids: Sequence[str], memberships: Sequence[str], limit: int
                                ) -> dict[str, list[str]]:
        """room_id -> up to `limit` users with one of `memberships`, in the order their member events came."""
        if not room_ids:
            return {}

        async def txn_fn(txn: Transaction) -> dict[str, list[str]]:
            rows = await txn.fetch_all_batch(_first_members_statements(txn.dialect, room_ids, memberships, limit))
            return _first_members_from(room_ids, rows)

        return await self.db.run_interaction("sync_first_members", txn_fn, write=False)

    async def get_room_summaries(self, room_ids: Sequence[str], naming_types: Sequence[str],
                                 memberships: Sequence[str], limit: int) -> RoomSummaryInputs:
        """What room summaries are made of, for each room: member counts, the current state of
        `naming_types`, and `get_first_members(memberships, limit)`; in one round trip."""
        if not room_ids:
            return RoomSummaryInputs({}, {}, {})

        async def txn_fn(txn: Transaction) -> RoomSummaryInputs:
            first = _first_members_statements(txn.dialect, room_ids, memberships, limit)
            counts, naming, *members = await txn.fetch_all_batch([
                room_state.member_counts_statement(txn.dialect, room_ids),
                room_state.state_event_ids_of_types_statement(txn.dialect, room_ids, naming_types),
                *first])
            counted = room_state.member_counts_from(counts)
            named = room_state.state_event_ids_from(naming)
            return RoomSummaryInputs({room_id: counted.get(room_id, {}) for room_id in room_ids},
                                     {room_id: named.get(room_id, {}) for room_id in room_ids},
                                     _first_members_from(room_ids, members))

        return await self.db.run_interaction("sync_room_summaries", txn_fn, write=False)

    async def get_current_state_event_ids(self, room_ids: Sequence[str], types: Sequence[str]
                                          ) -> dict[str, dict[tuple[str, str], str]]:
        """room_id -> (type, state_key) -> event_id of the current state events of the given types."""
        if not room_ids:
            return {}
        state = await self.db.run_interaction("sync_current_state_of_types", room_state.state_event_ids_of_types,
                                              room_ids, types, write=False)
        return {room_id: state.get(room_id, {}) for room_id in room_ids}


def _first_members_statements(dialect: Dialect, room_ids: Sequence[str], memberships: Sequence[str], limit: int
                              ) -> list[room_state.Statement]:
    if dialect.is_postgres:
        # One statement of fixed text (planned once per connection), as in get_timelines.
        return [(
            "SELECT r.room_id, t.state_key, t.stream_ordering FROM unnest(?::text[]) AS r(room_id)"
            " CROSS JOIN LATERAL (SELECT c.state_key, e.stream_ordering FROM current_state_events c"
            " JOIN events e ON e.event_id = c.event_id WHERE c.room_id = r.room_id AND c.type = 'm.room.member'"
            " AND c.membership = ANY(?) ORDER BY e.stream_ordering LIMIT ?) AS t",
            (list(room_ids), list(memberships), limit))]
    clause, clause_params = _qualified_in_list(dialect, "c", "membership", list(memberships))
    statements = []
    for chunk in _chunks(list(room_ids)):
        parts, params = [], []
        for i, room_id in enumerate(chunk):
            parts.append(
                f"SELECT * FROM (SELECT c.room_id, c.state_key, e.stream_ordering"
                f" FROM current_state_events c"
                f" JOIN events e ON e.event_id = c.event_id"
                f" WHERE c.room_id = ? AND c.type = 'm.room.member' AND {clause}"
                f" ORDER BY e.stream_ordering LIMIT ?) AS t{i}"
            )
            params.extend([room_id, *clause_params, limit])
        statements.append((" UNION ALL ".join(parts), tuple(params)))
    return statements


def _first_members_from(room_ids: Sequence[str], results: Sequence[Sequence[Row]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {room_id: [] for room_id in room_ids}
    for room_id, user_id, _ in sorted((row for rows in results for row in rows), key=lambda r: r[2]):
        out[room_id].append(user_id)
    return out


def _qualified_in_list(dialect: Dialect, table: str, column: str, values: list) -> tuple[str, tuple]:
    """`in_list` for a column of an aliased table in a join."""
    clause, params = dialect.in_list(column, values)
    if clause.startswith(column):
        clause = f"{table}.{clause}"
    return clause, params


async def _latest_memberships(txn: Transaction, user_id: str, room_ids: list[str], position: int
                              ) -> dict[str, MembershipRow]:
    out: dict[str, MembershipRow] = {}
    for chunk in _chunks(room_ids):
        parts, params = [], []
        for i, room_id in enumerate(chunk):
            parts.append(
                f"SELECT * FROM (SELECT room_id, membership, event_id, stream_ordering FROM room_memberships"
                f" WHERE room_id = ? AND user_id = ? AND stream_ordering <= ?"
                f" ORDER BY stream_ordering DESC LIMIT 1) AS t{i}"
            )
            params.extend([room_id, user_id, position])
        rows = await txn.fetch_all(" UNION ALL ".join(parts), params)
        for room_id, membership, event_id, stream_ordering in rows:
            out[room_id] = MembershipRow(room_id, membership, event_id, int(stream_ordering))
    return out
