"""Relations between events (`m.relates_to`): children of an event, aggregations, thread lists.

Redacted relation events are left out by every query (joined against `events.redacted_by`),
so a redaction removes an edit, reaction or thread reply from what clients see without
touching this table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from storage.database import Database, Transaction
from storage.stores.timeline import ROW_COLUMNS, ROW_JOINS, Bound, TimelineRow, bound_sql, in_list, row_from

THREAD = "m.thread"
_LIVE = "e.redacted_by IS NULL AND e.rejected_reason IS NULL"


@dataclass(frozen=True)
class ChildRelation:
    relates_to_id: str
    relation_type: str
    event_id: str
    sender: str
    origin_server_ts: int
    stream_ordering: int


@dataclass(frozen=True)
class ThreadSummary:
    count: int
    latest_event_id: str
    user_participated: bool


@dataclass
class Aggregations:
    """Relations of a batch of parent events that are bundled into `unsigned`."""

    children: list[ChildRelation] = field(default_factory=list)  # m.replace and m.reference
    threads: dict[str, ThreadSummary] = field(default_factory=dict)


class RelationStore:
    def __init__(self, db: Database):
        self.db = db

    async def get_children(self, room_id: str, parent_id: str, *, relation_type: str | None, event_type: str | None,
                           backwards: bool, limit: int, from_bound: Bound | None, to_bound: Bound | None,
                           max_hops: int = 1) -> list[TimelineRow]:
        """Events relating to `parent_id` (up to `max_hops` relations away), in topological order."""

        async def txn_fn(txn: Transaction) -> list[TimelineRow]:
            params: list[Any] = [parent_id, max_hops, room_id]
            sql = (
                "WITH RECURSIVE related(event_id, hops) AS ("
                " SELECT event_id, 1 FROM event_relations WHERE relates_to_id = ?"
                " UNION SELECT r.event_id, x.hops + 1 FROM event_relations r"
                " JOIN related x ON r.relates_to_id = x.event_id WHERE x.hops < ?)"
                f" SELECT DISTINCT {ROW_COLUMNS} FROM related x"
                f" JOIN event_relations r ON r.event_id = x.event_id JOIN events e ON e.event_id = x.event_id{ROW_JOINS}"
                f" WHERE e.room_id = ? AND {_LIVE}"
            )
            if relation_type is not None:
                sql += " AND r.relation_type = ?"
                params.append(relation_type)
            if event_type is not None:
                sql += " AND e.type = ?"
                params.append(event_type)
            if from_bound is not None:
                clause, more = bound_sql(from_bound, "<=" if backwards else ">")
                sql += clause
                params += more
            if to_bound is not None:
                clause, more = bound_sql(to_bound, ">" if backwards else "<=")
                sql += clause
                params += more
            order = "DESC" if backwards else "ASC"
            rows = await txn.fetch_all(
                f"{sql} ORDER BY e.depth {order}, e.stream_ordering {order} LIMIT {int(limit)}", params)
            return [row_from(row) for row in rows]

        if limit <= 0:
            return []
        return await self.db.run_interaction("relation_children", txn_fn, write=False)

    async def get_aggregations(self, parent_ids: Sequence[str], user_id: str | None) -> Aggregations:
        """Edits, references and thread summaries of the parents, in one interaction."""

        async def txn_fn(txn: Transaction) -> Aggregations:
            result = Aggregations()
            # Most events have no relations: one narrow probe over the index decides which
            # parents need the joins below, so a page of plain messages costs one statement.
            clause, params = in_list(txn.dialect, "relates_to_id", parent_ids)
            probe = await txn.fetch_all(
                "SELECT DISTINCT relates_to_id, relation_type FROM event_relations"
                f" WHERE {clause} AND relation_type IN ('m.replace', 'm.reference', 'm.thread')",
                params,
            )
            children_of = sorted({p for p, t in probe if t != THREAD})
            threads_of = sorted({p for p, t in probe if t == THREAD})
            if children_of:
                parents, params = in_list(txn.dialect, "r.relates_to_id", children_of)
                rows = await txn.fetch_all(
                    "SELECT r.relates_to_id, r.relation_type, e.event_id, e.sender, e.origin_server_ts,"
                    " e.stream_ordering FROM event_relations r JOIN events e ON e.event_id = r.event_id"
                    f" WHERE {parents} AND r.relation_type IN ('m.replace', 'm.reference') AND {_LIVE}"
                    " ORDER BY e.stream_ordering",
                    params,
                )
                result.children = [ChildRelation(*row) for row in rows]
            if threads_of:
                parents, params = in_list(txn.dialect, "r.relates_to_id", threads_of)
                threads = await txn.fetch_all(
                    "SELECT r.relates_to_id, COUNT(*), MAX(e.stream_ordering),"
                    " MAX(CASE WHEN e.sender = ? THEN 1 ELSE 0 END)"
                    " FROM event_relations r JOIN events e ON e.event_id = r.event_id"
                    f" WHERE {parents} AND r.relation_type = ? AND {_LIVE} GROUP BY r.relates_to_id",
                    (user_id or "", *params, THREAD),
                )
                if threads:
                    latest, latest_params = in_list(txn.dialect, "stream_ordering", [t[2] for t in threads])
                    ids = dict(await txn.fetch_all(f"SELECT stream_ordering, event_id FROM events WHERE {latest}",
                                                   latest_params))
                    for parent, count, max_stream, participated in threads:
                        if max_stream in ids:
                            result.threads[parent] = ThreadSummary(int(count), ids[max_stream],
                                                                   bool(participated))
            return result

        if not parent_ids:
            return Aggregations()
        return await self.db.run_interaction("relation_aggregations", txn_fn, write=False)

    async def list_threads(self, room_id: str, *, participant: str | None, before_stream: int | None,
                           limit: int) -> list[tuple[str, int]]:
        """(root event_id, stream of its latest reply) of the room's threads, most recently active first.

        With `participant`, only threads that user started or replied in.
        """
        params: list[Any] = [room_id, THREAD]
        having = []
        if before_stream is not None:
            having.append("MAX(e.stream_ordering) < ?")
            params.append(before_stream)
        if participant is not None:
            having.append("(MAX(CASE WHEN e.sender = ? THEN 1 ELSE 0 END) = 1 OR r.relates_to_id IN"
                          " (SELECT event_id FROM events WHERE room_id = ? AND sender = ?))")
            params += [participant, room_id, participant]
        sql = (
            "SELECT r.relates_to_id, MAX(e.stream_ordering) FROM event_relations r"
            f" JOIN events e ON e.event_id = r.event_id WHERE r.room_id = ? AND r.relation_type = ? AND {_LIVE}"
            " GROUP BY r.relates_to_id"
        )
        if having:
            sql += " HAVING " + " AND ".join(having)
        sql += f" ORDER BY MAX(e.stream_ordering) DESC LIMIT {int(limit)}"
        rows = await self.db.fetch_all("list_threads", sql, params)
        return [(r[0], r[1]) for r in rows]


async def add_relations_txn(txn: Transaction, rows: Sequence[tuple[str, str, str, str, str | None]]) -> None:
    """Record relations (event_id, room_id, relates_to_id, relation_type, aggregation_key) inside the
    caller's transaction (the events' own, when persisting)."""
    await txn.executemany(
        "INSERT INTO event_relations (event_id, room_id, relates_to_id, relation_type, aggregation_key)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING", rows)


async def delete_event_relations_txn(txn: Transaction, event_ids: Sequence[str]) -> None:
    """Relations of these events and relations pointing at them (the events are being purged)."""
    clause, params = txn.dialect.in_list("event_id", event_ids)
    await txn.execute(f"DELETE FROM event_relations WHERE {clause}", params)
    parent_clause, parent_params = txn.dialect.in_list("relates_to_id", event_ids)
    await txn.execute(f"DELETE FROM event_relations WHERE {parent_clause}", parent_params)


async def delete_room_relations_txn(txn: Transaction, room_id: str) -> None:
    """Every relation in the room (the room is being deleted)."""
    await txn.execute("DELETE FROM event_relations WHERE room_id = ?", (room_id,))
