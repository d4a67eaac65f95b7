"""The full-text index of event texts behind /search: SQLite FTS5, or PostgreSQL tsvector + GIN.

Callers pass plain words; each engine turns them into its own query syntax here, so no user
text ever reaches a query parser unescaped. Every word must match, as a prefix, in one text.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage.database import Database, Transaction
from storage.sql import Dialect
from storage.stores.stages import save_stage_position_txn
from storage.stores.timeline import (
    ROW_COLUMNS,
    ROW_JOINS,
    ROW_WIDTH,
    EventConditions,
    TimelineRow,
    condition_sql,
    in_list,
    row_from,
)

_WORD = re.compile(r"\w+", re.UNICODE)
# PostgreSQL's text search configuration; SQLite's table uses the porter tokenizer to match.
TS_CONFIG = "english"


def search_words(term: str) -> list[str]:
    """The words of a search term, lower-cased, in order, without repeats."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(term.lower()):
        seen.setdefault(word, None)
    return list(seen)


def _fts5_query(words: Sequence[str]) -> str:
    # Each word quoted (so FTS5 operators in it are inert) and prefix-matched; juxtaposition is AND.
    return " ".join('"' + w.replace('"', '""') + '"*' for w in words)


def _tsquery(words: Sequence[str]) -> str:
    # Words are \w+ runs, so they carry no tsquery operators.
    return " & ".join(f"{w}:*" for w in words)


# Unindexing an event: SQLite finds its row by rowid (the event's stream position), as FTS5 would
# otherwise read every row to compare an UNINDEXED column. Indexed events always have an `events` row.
_DELETE_EVENT = {
    True: "DELETE FROM event_search WHERE event_id = ?",
    False: "DELETE FROM event_search WHERE rowid IN (SELECT stream_ordering FROM events WHERE event_id = ?)",
}


@dataclass(frozen=True)
class SearchHit:
    row: TimelineRow
    room_id: str
    rank: float
    # False: the event left the timeline (e.g. redacted) since it was indexed; never shown.
    live: bool = True


@dataclass(frozen=True)
class SearchQuery:
    words: tuple[str, ...]
    # The rooms searched: these, or (with `member`) the rooms where `member`'s current membership is
    # one of `memberships`, read in the search's own query, among `room_ids` when not None and never
    # in `not_room_ids`.
    room_ids: tuple[str, ...] | None
    keys: tuple[str, ...]
    conditions: EventConditions
    order_by_rank: bool
    limit: int
    # Paging: rank order skips `offset` hits; recent order continues below `before_stream`.
    offset: int = 0
    before_stream: int | None = None
    member: str | None = None
    memberships: tuple[str, ...] = ()
    not_room_ids: tuple[str, ...] = ()


class SearchStore:
    def __init__(self, db: Database):
        self.db = db

    async def index_batch(self, rows: Sequence[tuple[str, str, str, str]], redacted: Sequence[str], *, stage: str,
                          upto: int) -> None:
        """Index texts, drop redacted events' texts and move the search stage, in one transaction."""

        async def txn_fn(txn: Transaction) -> None:
            await _index_texts_txn(txn, rows)
            await txn.executemany(_DELETE_EVENT[txn.dialect.is_postgres], [(e,) for e in redacted])
            await save_stage_position_txn(txn, stage, upto)

        # Redone from the events after a crash that loses it (the stage position is in the same
        # transaction), so this commit need not wait for the disk.
        await self.db.run_interaction("index_search_batch", txn_fn, durable=False)

    async def remove_event(self, event_id: str) -> None:
        """Drop an event's texts from the index (it was redacted)."""
        await self.db.execute("unindex_event_text", _DELETE_EVENT[self.db.dialect.is_postgres], (event_id,))

    async def search(self, query: SearchQuery) -> tuple[list[SearchHit], int]:
        """A page of matching events, best (or newest) first, and how many match in all.

        The page and the total (an approximate count, as the spec allows) are read side by side
        on PostgreSQL, each in its own read: one round trip of latency instead of two."""
        if not query.words or query.room_ids == () or not query.keys or (query.member is None
                                                                          and query.room_ids is None):
            return [], 0
        count_sql, count_params, page_sql, page_params = _search_sql(self.db.dialect, query)
        if self.db.dialect.is_postgres:
            count, rows = await asyncio.gather(self.db.fetch_value("search_count", count_sql, count_params),
                                               self.db.fetch_all("search_events", page_sql, page_params))
        else:
            async def txn_fn(txn: Transaction) -> tuple[Any, list[Any]]:
                return await txn.fetch_value(count_sql, count_params), await txn.fetch_all(page_sql, page_params)

            # SQLite gains nothing from two reader threads at once: one hop instead of two.
            count, rows = await self.db.run_interaction("search_events", txn_fn, write=False)
        hits: list[SearchHit] = []
        seen: set[str] = set()
        for row in rows:
            timeline_row = row_from(row[:ROW_WIDTH])
            if timeline_row.event_id in seen:
                continue  # an event matching in two of its texts
            seen.add(timeline_row.event_id)
            room_id, rank, live = row[ROW_WIDTH:]
            hits.append(SearchHit(timeline_row, room_id, float(rank or 0.0), bool(live)))
        return hits, int(count or 0)


_TSQUERY = f"to_tsquery('{TS_CONFIG}', ?)"


def _pg_rank(vector: str) -> str:
    """PostgreSQL's rank of a match (higher is better): its cover density, as Synapse ranks."""
    return f"ts_rank_cd({vector}, {_TSQUERY})"


def _match_sql(dialect: Dialect, query: SearchQuery) -> tuple[str, str, str, list[Any]]:
    """(WHERE clause of the text match, rank expression, event_search's stream position column,
    the match's parameters).

    On PostgreSQL the tsquery is written inline (not joined in as a function), so the planner
    sees a constant: it estimates how rare the words are and reads a rare word from the GIN index."""
    if dialect.is_postgres:
        return (f"event_search.vector @@ {_TSQUERY}", _pg_rank("event_search.vector"),
                "event_search.stream_ordering", [_tsquery(query.words)])
    # bm25() is better when lower; negate it so that both engines rank higher as better. SQLite's
    # index is keyed by the event's stream position (its rowid), so FTS5 hands matches out in
    # stream order and `rowid < ?` skips straight to a page.
    return "event_search MATCH ?", "-bm25(event_search)", "event_search.rowid", [_fts5_query(query.words)]


def _rooms_sql(dialect: Dialect, query: SearchQuery) -> tuple[str, list[Any]]:
    """The condition on event_search.room_id (the rooms searched), and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.member is not None:
        # The searcher's rooms, read by the search's own query: one round trip fewer.
        memberships, more = in_list(dialect, "c.membership", query.memberships)
        rooms = ("SELECT c.room_id FROM current_state_events c"
                 f" WHERE c.type = 'm.room.member' AND c.state_key = ? AND {memberships}")
        # PostgreSQL: as an array computed once, not a join, so the rooms cannot drive the plan
        # (read every text of every room, then match each); the text index finds the matches.
        clauses.append(f"event_search.room_id = ANY(ARRAY({rooms}))" if dialect.is_postgres
                       else f"event_search.room_id IN ({rooms})")
        params += [query.member, *more]
    if query.room_ids is not None:
        clause, more = in_list(dialect, "event_search.room_id", query.room_ids)
        clauses.append(clause)
        params += more
    if query.not_room_ids:
        clause, more = in_list(dialect, "event_search.room_id", query.not_room_ids)
        clauses.append(f"NOT {clause}")
        params += more
    return " AND ".join(clauses), params


# Whether an event is still in its room's timeline. Indexing skips rejected events and a redaction,
# purge or turn into an outlier unindexes the event, so a hit almost never fails this; it is checked
# on the page's rows rather than on every match, and a failing row counts as read but is not shown.
_LIVE = "(e.redacted_by IS NULL AND NOT e.outlier AND e.rejected_reason IS NULL)"


def _search_sql(dialect: Dialect, query: SearchQuery) -> tuple[str, list[Any], str, list[Any]]:
    """(count SQL, its parameters, page SQL, its parameters) of a search.

    The page is chosen in a subquery over the index alone, which keeps each text's stream position:
    the text match (PostgreSQL's GIN index, SQLite's FTS5), the rooms, the order and the limit all
    apply there, and `events` with the state-group joins is read for the page's rows only. Only a
    filter on what the index does not hold (types, senders, URLs) joins `events` for every match."""
    match, rank, stream, match_params = _match_sql(dialect, query)
    rooms_clause, rooms_params = _rooms_sql(dialect, query)
    keys_clause, keys_params = in_list(dialect, "event_search.key", query.keys)
    cond_clause, cond_params, needs_json = condition_sql(dialect, query.conditions)
    from_sql = " FROM event_search"
    where = f" WHERE {match} AND {rooms_clause} AND {keys_clause}"
    params = [*match_params, *rooms_params, *keys_params]
    if cond_clause:
        from_sql += " JOIN events e ON e.event_id = event_search.event_id"
        if needs_json:
            from_sql += " JOIN event_json j ON j.event_id = e.event_id"
        where += f" AND {_LIVE}{cond_clause}"
        params += cond_params
    # An event has one indexed text (one key per event type), so rows and events count alike. The
    # count is approximate, as the spec allows: a row that fails _LIVE on its page still counts.
    count_sql = f"SELECT COUNT(*){from_sql}{where}"
    page_where, page_params = where, list(params)
    # The rank expression's parameter (PostgreSQL's) comes first, in the page's SELECT list.
    if dialect.is_postgres:
        page_params = [*match_params, *page_params]
    # The page's columns: the event, its stream position and what the outer query ranks it by.
    ranked, outer_rank = f"{rank} AS rank", "hit.rank"
    if query.order_by_rank:
        order, outer_order = "rank DESC, stream DESC", "hit.rank DESC, hit.stream DESC"
        tail = f" LIMIT {int(query.limit)} OFFSET {int(query.offset)}"
    else:
        order, outer_order = "stream DESC", "hit.stream DESC"
        tail = f" LIMIT {int(query.limit)}"
        if query.before_stream is not None:
            page_where += f" AND {stream} < ?"
            page_params.append(query.before_stream)
        if dialect.is_postgres:
            # Newest first, the rank is only shown: worked out for the page's rows, not for every
            # match (ts_rank_cd of a thousand matches costs more than finding them).
            ranked, outer_rank = "event_search.vector", _pg_rank("hit.vector")
    page = (f"SELECT event_search.event_id, {stream} AS stream, {ranked}{from_sql}{page_where}"
            f" ORDER BY {order}{tail}")
    page_sql = (f"SELECT {ROW_COLUMNS}, e.room_id, {outer_rank}, {_LIVE} FROM ({page}) hit"
                f" JOIN events e ON e.event_id = hit.event_id{ROW_JOINS} ORDER BY {outer_order}")
    return count_sql, params, page_sql, page_params


async def _index_texts_txn(txn: Transaction, rows: Sequence[tuple[str, str, str, str]]) -> None:
    """Index (event_id, room_id, key, text) rows. Each event is indexed once, by the search stage.

    The event's stream position and timestamp are copied from `events` (an event not stored is
    not indexed); on SQLite the stream position is the row's rowid."""
    if not rows:
        return
    if txn.dialect.is_postgres:
        await txn.executemany(
            "INSERT INTO event_search (event_id, room_id, key, vector, stream_ordering, origin_server_ts)"
            f" SELECT e.event_id, ?, ?, to_tsvector('{TS_CONFIG}', ?), e.stream_ordering, e.origin_server_ts"
            " FROM events e WHERE e.event_id = ? ON CONFLICT DO NOTHING",
            [(room_id, key, text, event_id) for event_id, room_id, key, text in rows])
    else:
        # FTS5 has no unique constraints to lean on: an event indexed already keeps its row.
        await txn.executemany(
            "INSERT INTO event_search (rowid, value, event_id, room_id, key, origin_server_ts)"
            " SELECT e.stream_ordering, ?, e.event_id, ?, ?, e.origin_server_ts FROM events e"
            " WHERE e.event_id = ? AND NOT EXISTS (SELECT 1 FROM event_search WHERE rowid = e.stream_ordering)",
            [(text, room_id, key, event_id) for event_id, room_id, key, text in rows])


# --- for other stores' transactions (erasure, purges) ----------------------------------------


async def delete_sender_search_txn(txn: Transaction, user_id: str) -> None:
    """Unindex every event the user sent (an erasure)."""
    column = "event_id" if txn.dialect.is_postgres else "rowid"
    selected = "event_id" if txn.dialect.is_postgres else "stream_ordering"
    await txn.execute(f"DELETE FROM event_search WHERE {column} IN (SELECT {selected} FROM events WHERE sender = ?)",
                      (user_id,))


async def delete_events_search_txn(txn: Transaction, event_ids: Sequence[str]) -> None:
    """Unindex these events (purged, turned into outliers, or pruned)."""
    clause, params = txn.dialect.in_list("event_id", event_ids)
    if txn.dialect.is_postgres:
        await txn.execute(f"DELETE FROM event_search WHERE {clause}", params)
    else:
        await txn.execute(f"DELETE FROM event_search WHERE rowid IN (SELECT stream_ordering FROM events WHERE {clause})",
                          params)


async def delete_room_search_txn(txn: Transaction, room_id: str) -> None:
    """Unindex the room's events (the room is being deleted)."""
    await txn.execute("DELETE FROM event_search WHERE room_id = ?", (room_id,))
