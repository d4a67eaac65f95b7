"""Reading a room's timeline: pages in topological order, neighbours of an event, and the state
that history visibility reads, all in a round trip or two per request.

Positions are (depth, stream_ordering) pairs. A position names the gap just *after* the event
at that pair, so paging backwards from it returns events at or before it and paging forwards
returns events strictly after it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from storage.database import Database, Transaction
from storage.sql import Dialect

StateKey = tuple[str, str]
Position = tuple[int, int]

_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?\Z")


@dataclass(frozen=True)
class EventConditions:
    """Which events a page holds (a RoomEventFilter's database-side part). None means any."""

    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
    contains_url: bool | None = None
    # Senders whose non-state events are hidden (the reader's ignored users).
    hidden_senders: tuple[str, ...] = ()


# Markers for TimelineRow.group_before: the query did not fetch it / the event has no state
# (it is then never shown to clients).
NOT_LOOKED_UP = -1
NO_STATE = -2


class TimelineRow(NamedTuple):
    # A tuple rather than a dataclass: a page builds a thousand of these, and a frozen dataclass
    # costs about five times as much to make.
    event_id: str
    depth: int
    stream_ordering: int
    # The state group holding the state just before the event; None for the create event (empty state).
    group_before: int | None = NOT_LOOKED_UP
    # Whether other events relate to it in a way that is bundled (edits, references, threads):
    # most have none, and a page then asks nothing more about relations.
    has_relations: bool = True

    @property
    def position(self) -> Position:
        return (self.depth, self.stream_ordering)


@dataclass(frozen=True)
class Bound:
    """One end of a page: a topological position, or a stream position only (sync tokens)."""

    depth: int | None
    stream: int


def in_list(dialect: Dialect, column: str, values: Sequence[object]) -> tuple[str, tuple[object, ...]]:
    # Dialect.in_list only accepts bare column names; these queries need qualified ones.
    if not _COLUMN.match(column):
        raise ValueError(f"not a column: {column!r}")
    values = list(values)
    if not values:
        return "1 = 0", ()
    if dialect.is_postgres:
        return f"{column} = ANY(?)", (values,)
    return f"{column} IN ({', '.join('?' * len(values))})", tuple(values)


def _like_pattern(glob: str) -> str:
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _type_clause(patterns: Sequence[str]) -> tuple[str, list[Any]]:
    parts, params = [], []
    for pattern in patterns:
        if "*" in pattern:
            parts.append("e.type LIKE ? ESCAPE '\\'")
            params.append(_like_pattern(pattern))
        else:
            parts.append("e.type = ?")
            params.append(pattern)
    return "(" + " OR ".join(parts) + ")", params


def condition_sql(dialect: Dialect, conditions: EventConditions) -> tuple[str, list[Any], bool]:
    """SQL (ANDed, leading ' AND ') for the conditions, its parameters, and whether it reads event_json j."""
    sql, params = "", []
    if conditions.types is not None:
        if not conditions.types:
            return " AND 1 = 0", [], False
        clause, more = _type_clause(conditions.types)
        sql += " AND " + clause
        params += more
    if conditions.not_types:
        clause, more = _type_clause(conditions.not_types)
        sql += " AND NOT " + clause
        params += more
    if conditions.senders is not None:
        clause, more = in_list(dialect, "e.sender", conditions.senders)
        sql += " AND " + clause
        params += more
    if conditions.not_senders:
        clause, more = in_list(dialect, "e.sender", conditions.not_senders)
        sql += " AND NOT " + clause
        params += more
    if conditions.hidden_senders:
        clause, more = in_list(dialect, "e.sender", conditions.hidden_senders)
        sql += f" AND NOT (e.state_key IS NULL AND {clause})"
        params += more
    needs_json = conditions.contains_url is not None
    if needs_json:
        if dialect.is_postgres:
            has_url = "COALESCE(jsonb_typeof(j.json::jsonb -> 'content' -> 'url'), '') = 'string'"
        else:
            has_url = "COALESCE(json_type(j.json, '$.content.url'), '') = 'text'"
        sql += " AND " + (has_url if conditions.contains_url else f"NOT ({has_url})")
    return sql, params, needs_json


def bound_sql(bound: Bound, op: str) -> tuple[str, list[Any]]:
    if bound.depth is None:
        return f" AND e.stream_ordering {op} ?", [bound.stream]
    return f" AND (e.depth, e.stream_ordering) {op} (?, ?)", [bound.depth, bound.stream]


_TIMELINE = "e.outlier = ? AND e.rejected_reason IS NULL"


def has_relations_sql(event_id_column: str) -> str:
    """Whether other events relate to the event in a way that is bundled (edits, references,
    threads): one probe of the relations index."""
    return (f"EXISTS (SELECT 1 FROM event_relations rel WHERE rel.relates_to_id = {event_id_column}"
            " AND rel.relation_type IN ('m.replace', 'm.reference', 'm.thread'))")


# Timeline rows with the state group before each event, so visibility needs no lookup per event.
# An event that created its group (a state event) sees its parent group, others their own;
# an event without a group has no state (NO_STATE).
ROW_COLUMNS = ("e.event_id, e.depth, e.stream_ordering, CASE WHEN sg.state_group IS NULL THEN "
               f"{NO_STATE} WHEN sgc.event_id = e.event_id THEN sge.prev_state_group ELSE sg.state_group END, "
               + has_relations_sql("e.event_id"))
ROW_WIDTH = 5
ROW_JOINS = (
    " LEFT JOIN event_to_state_groups sg ON sg.event_id = e.event_id"
    " LEFT JOIN state_groups sgc ON sgc.id = sg.state_group"
    " LEFT JOIN state_group_edges sge ON sge.state_group = sg.state_group"
)


def row_from(columns: Sequence[Any]) -> TimelineRow:
    """A TimelineRow from ROW_COLUMNS."""
    return TimelineRow._make(columns)


class TimelineStore:
    def __init__(self, db: Database):
        self.db = db

    async def paginate(self, room_id: str, *, backwards: bool, limit: int, from_bound: Bound | None,
                       to_bound: Bound | None = None, conditions: EventConditions = EventConditions(),
                       ) -> list[TimelineRow]:
        """Up to `limit` events from `from_bound` in the given direction, nearest first."""
        return await self.db.run_interaction("paginate_room", _paginate, room_id, backwards, limit, from_bound,
                                             to_bound, conditions, write=False)

    async def get_position(self, event_id: str) -> tuple[str, Position] | None:
        """(room_id, (depth, stream)) of a timeline event."""
        row = await self.db.fetch_one(
            "timeline_position",
            f"SELECT e.room_id, e.depth, e.stream_ordering FROM events e WHERE e.event_id = ? AND {_TIMELINE}",
            (event_id, False),
        )
        return None if row is None else (row[0], (row[1], row[2]))

    async def closest_event_to_timestamp(self, room_id: str, ts: int, forwards: bool) -> tuple[str, int] | None:
        """(event_id, origin_server_ts) of the first event at or after `ts` (or at or before it)."""
        op, order = (">=", "ASC") if forwards else ("<=", "DESC")
        row = await self.db.fetch_one(
            "closest_event_to_timestamp",
            f"SELECT e.event_id, e.origin_server_ts FROM events e WHERE e.room_id = ? AND e.origin_server_ts {op} ?"
            f" AND {_TIMELINE} ORDER BY e.origin_server_ts {order}, e.stream_ordering {order} LIMIT 1",
            (room_id, ts, False),
        )
        return None if row is None else (row[0], row[1])

    async def get_visibility_inputs(self, user_id: str, events_by_room: Mapping[str, Sequence[str]],
                                    keys: Sequence[StateKey], groups_before: Mapping[str, int | None] | None = None,
                                    ) -> tuple[dict[str, int | None], dict[int, dict[StateKey, str]],
                                               dict[str, list[tuple[str, int]]]]:
        """What history visibility reads, in one interaction: each event's state group before it
        (None: empty state; an event with no entry has no state known), the `keys` entries of
        each of those groups, and the user's (membership, stream_ordering) history in each room
        (room_id -> history, oldest first).

        `events_by_room` is room_id -> the event IDs of that room; they may be of several rooms.
        `groups_before` (from TimelineRow.group_before) saves looking the events' state groups up.
        """

        wanted_keys = list(keys)
        room_ids = list(events_by_room)
        room_of = {event_id: room_id for room_id, event_ids in events_by_room.items() for event_id in event_ids}

        async def txn_fn(txn: Transaction) -> tuple[dict[str, int | None], dict[int, dict[StateKey, str]],
                                                    dict[str, list[tuple[str, int]]]]:
            # The user's membership history does not depend on the state reads: it travels with the
            # first of them (the events' state groups, or the first walk of each room's chain when
            # the groups are known), so the usual page costs one round trip, whatever its rooms.
            statements = [_member_history_statement(txn.dialect, room_ids, user_id)]
            known: dict[str, int | None] = {}
            group_sets: list[set[int]] = []
            if groups_before is None:
                if room_of:
                    statements.append(_groups_before_statement(txn.dialect, list(room_of)))
            else:
                known = {e: groups_before[e] for e in room_of if e in groups_before}
                group_sets = _groups_by_room(known, room_of)
                statements += [_chain_statement(txn.dialect, groups, wanted_keys) for groups in group_sets]
            history_rows, *rest = await txn.fetch_all_batch(statements)
            first_walks = None
            if groups_before is None:
                known = _groups_before_of(rest[0]) if rest else {}
                group_sets = _groups_by_room(known, room_of)
            else:
                first_walks = rest
            values = await _key_values_at_group_sets(txn, group_sets, wanted_keys, first_walks)
            history: dict[str, list[tuple[str, int]]] = {room_id: [] for room_id in room_ids}
            for room_id, membership, stream in history_rows:
                history[room_id].append((membership, stream))
            return known, values, history

        return await self.db.run_interaction("visibility_inputs", txn_fn, write=False)

    async def get_state_before_events(self, event_ids: Sequence[str],
                                      keys: Sequence[StateKey]) -> dict[str, dict[StateKey, str]]:
        """For each event, the `keys` entries of the room state just before it, in one interaction.

        Consecutive events share state groups, so the work is per distinct group, and each
        group chain is walked inside the database rather than one round trip per link.
        """
        return await self.db.run_interaction("state_before_events", _state_before_events, list(event_ids),
                                             list(keys), write=False)


async def _paginate(txn: Transaction, room_id: str, backwards: bool, limit: int, from_bound: Bound | None,
                    to_bound: Bound | None, conditions: EventConditions) -> list[TimelineRow]:
    if limit <= 0:
        return []
    sql = "SELECT e.event_id, e.depth, e.stream_ordering FROM events e"
    where = f" WHERE e.room_id = ? AND {_TIMELINE}"
    params: list[Any] = [room_id, False]
    if from_bound is not None:
        clause, more = bound_sql(from_bound, "<=" if backwards else ">")
        where += clause
        params += more
    if to_bound is not None:
        clause, more = bound_sql(to_bound, ">" if backwards else "<=")
        where += clause
        params += more
    clause, more, needs_json = condition_sql(txn.dialect, conditions)
    if needs_json:
        sql += " JOIN event_json j ON j.event_id = e.event_id"
    where += clause
    params += more
    order = f"e.depth {'DESC' if backwards else 'ASC'}, e.stream_ordering {'DESC' if backwards else 'ASC'}"
    # The page is chosen first and only its rows are joined to their state groups: planned as one
    # query, PostgreSQL with statistics that lag the table (autovacuum off or behind, as after a
    # burst) joined every event of the room before sorting, 26 ms instead of 6 for a page of 1,000
    # from 5,000 (EXPLAIN ANALYZE).
    page = f"{sql}{where} ORDER BY {order} LIMIT {int(limit)}"
    rows = await txn.fetch_all(f"SELECT {ROW_COLUMNS} FROM ({page}) e{ROW_JOINS} ORDER BY {order}", params)
    return list(map(TimelineRow._make, rows))


def _member_history_statement(dialect: Dialect, room_ids: Sequence[str], user_id: str) -> tuple[str, list[Any]]:
    rooms, params = in_list(dialect, "room_id", room_ids)
    return ("SELECT room_id, membership, stream_ordering FROM room_memberships"
            f" WHERE {rooms} AND user_id = ? ORDER BY stream_ordering", [*params, user_id])


def _groups_by_room(known: Mapping[str, int | None], room_of: Mapping[str, str]) -> list[set[int]]:
    """The distinct state groups of the events, a set per room (each room's groups share a chain)."""
    by_room: dict[str, set[int]] = {}
    for event_id, group in known.items():
        if group is not None:
            by_room.setdefault(room_of[event_id], set()).add(group)
    return list(by_room.values())


def _groups_before_statement(dialect: Dialect, event_ids: list[str]) -> tuple[str, tuple[object, ...]]:
    clause, params = in_list(dialect, "s.event_id", event_ids)
    return ("SELECT s.event_id, s.state_group, g.event_id, x.prev_state_group FROM event_to_state_groups s"
            " JOIN state_groups g ON g.id = s.state_group"
            f" LEFT JOIN state_group_edges x ON x.state_group = s.state_group WHERE {clause}", params)


def _groups_before_of(rows: Sequence[Sequence[Any]]) -> dict[str, int | None]:
    """event_id -> the state group before it, from `_groups_before_statement`'s rows."""
    # An event that created its group (a state event) sees its parent group; others see their own.
    return {event_id: prev if creator == event_id else group for event_id, group, creator, prev in rows}


async def _state_before_events(txn: Transaction, event_ids: list[str],
                               keys: list[StateKey]) -> dict[str, dict[StateKey, str]]:
    if not event_ids:
        return {}
    return await _state_at_groups(txn, _groups_before_of(await txn.fetch_all(
        *_groups_before_statement(txn.dialect, event_ids))), keys)


async def _state_at_groups(txn: Transaction, group_before: Mapping[str, int | None],
                           keys: list[StateKey]) -> dict[str, dict[StateKey, str]]:
    values = await _key_values_at_groups(txn, {g for g in group_before.values() if g is not None}, keys)
    return {event_id: (values.get(group, {}) if group is not None else {})
            for event_id, group in group_before.items()}


def _chain_statement(dialect: Dialect, pending: set[int], keys: list[StateKey]) -> tuple[str, list[Any]]:
    """The statement walking the chain of the newest of `pending` groups for the values of `keys`."""
    key_sql = " OR ".join("(s.type = ? AND s.state_key = ?)" for _ in keys) or "1 = 0"
    key_params = [part for key in keys for part in key]
    cast = "CAST(? AS BIGINT)" if dialect.is_postgres else "?"
    wanted, wanted_params = in_list(dialect, "c.sg", sorted(pending))
    # Each link is looked up by the edge table's key (a scalar subquery): planned as a join,
    # PostgreSQL would hash the whole edge table once per link of a long chain. The chain
    # ends with a NULL link, which the final WHERE drops.
    sql = (f"WITH RECURSIVE chain(sg, hop) AS (SELECT {cast}, 0 UNION ALL"
           " SELECT (SELECT x.prev_state_group FROM state_group_edges x WHERE x.state_group = c.sg), c.hop + 1"
           " FROM chain c WHERE c.sg IS NOT NULL)"
           " SELECT c.sg, c.hop, s.type, s.state_key, s.event_id FROM chain c"
           f" LEFT JOIN state_groups_state s ON s.state_group = c.sg AND ({key_sql})"
           f" WHERE s.event_id IS NOT NULL OR {wanted}")
    return sql, [max(pending), *key_params, *wanted_params]


def _resolve_chain(rows: Sequence[Sequence[Any]], pending: set[int],
                   result: dict[int, dict[StateKey, str]]) -> None:
    """Record in `result` the groups of `pending` that one chain walk answered, and drop them from it."""
    hop_of: dict[int, int] = {}
    deltas: list[tuple[int, StateKey, str]] = []
    for sg, hop, event_type, state_key, event_id in rows:
        if sg in pending:
            hop_of[sg] = hop
        if event_id is not None:
            deltas.append((hop, (event_type, state_key), event_id))
    deltas.sort(key=lambda d: d[0])
    for group, hop in hop_of.items():
        # The nearest delta at or above the group's own link wins.
        found: dict[StateKey, str] = {}
        for delta_hop, key, event_id in deltas:
            if delta_hop >= hop and key not in found:
                found[key] = event_id
        result[group] = found
    resolved = set(hop_of) or {max(pending)}
    pending -= resolved
    for group in resolved - set(hop_of):
        result[group] = {}


async def _key_values_at_groups(txn: Transaction, groups: set[int], keys: list[StateKey]
                                ) -> dict[int, dict[StateKey, str]]:
    """The values of `keys` in the full state of each group (of one room)."""
    return await _key_values_at_group_sets(txn, [groups], keys)


async def _key_values_at_group_sets(txn: Transaction, group_sets: Sequence[set[int]], keys: list[StateKey],
                                    first_rows: Sequence[Sequence[Sequence[Any]]] | None = None,
                                    ) -> dict[int, dict[StateKey, str]]:
    """The values of `keys` in the full state of each group of each set (a set per room).

    Walks the chain of the newest unresolved group of each set in one recursive query, the sets'
    walks together in one round trip; the groups of one room's page almost always lie on that
    chain, so this usually runs once. `first_rows` are the rows of the first walk of each set
    (`_chain_statement` of all its groups) when the caller already ran them.
    """
    result: dict[int, dict[StateKey, str]] = {}
    pending = [set(groups) for groups in group_sets if groups]
    if first_rows is not None:
        for groups, rows in zip(pending, first_rows, strict=True):
            _resolve_chain(rows, groups, result)
    while active := [groups for groups in pending if groups]:
        walks = await txn.fetch_all_batch([_chain_statement(txn.dialect, groups, keys) for groups in active])
        for groups, rows in zip(active, walks, strict=True):
            _resolve_chain(rows, groups, result)
    return result
