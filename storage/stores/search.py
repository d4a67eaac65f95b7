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


@dataclass(frozen=True)
class SearchHit:
    row: TimelineRow
    room_id: str
    rank: float


@dataclass(frozen=True)
class SearchQuery:
    words: tuple[str, ...]
    room_ids: tuple[str, ...]
    keys: tuple[str, ...]
    conditions: EventConditions
    order_by_rank: bool
    limit: int
    # Paging: rank order skips `offset` hits; recent order continues below `before_stream`.
    offset: int = 0
    before_stream: int | None = None


class SearchStore:
    def __init__(self, db: Database):
        self.db = db

    async def index_batch(self, rows: Sequence[tuple[str, str, str, str]], redacted: Sequence[str], *, stage: str,
                          upto: int) -> None:
        """Index texts, drop redacted events' texts and move the search stage, in one transaction."""

        async def txn_fn(txn: Transaction) -> None:
            await _index_texts_txn(txn, rows)
            await txn.executemany("DELETE FROM event_search WHERE event_id = ?", [(e,) for e in redacted])
            await save_stage_position_txn(txn, stage, upto)

        await self.db.run_interaction("index_search_batch", txn_fn)

    async def remove_event(self, event_id: str) -> None:
        """Drop an event's texts from the index (it was redacted)."""
        await self.db.execute("unindex_event_text", "DELETE FROM event_search WHERE event_id = ?", (event_id,))

    async def search(self, query: SearchQuery) -> tuple[list[SearchHit], int]:
        """A page of matching events, best (or newest) first, and how many match in all.

        The page and the total (an approximate count, as the spec allows) are read side by side,
        each in its own read: on PostgreSQL that is one round trip of latency instead of two."""
        if not query.words or not query.room_ids or not query.keys:
            return [], 0
        count_sql, count_params, page_sql, page_params = _search_sql(self.db.dialect, query)
        count, rows = await asyncio.gather(self.db.fetch_value("search_count", count_sql, count_params),
                                           self.db.fetch_all("search_events", page_sql, page_params))
        hits: list[SearchHit] = []
        seen: set[str] = set()
        for row in rows:
            timeline_row = row_from(row[:6])
            if timeline_row.event_id in seen:
                continue  # an event matching in two of its texts
            seen.add(timeline_row.event_id)
            hits.append(SearchHit(timeline_row, row[6], float(row[7] or 0.0)))
        return hits, int(count or 0)


def _match_sql(dialect: Dialect, query: SearchQuery) -> tuple[str, str, str, list[Any]]:
    """(FROM clause, WHERE clause, rank expression, parameters) for the query's text match."""
    if dialect.is_postgres:
        from_sql = f" CROSS JOIN to_tsquery('{TS_CONFIG}', ?) q"
        return from_sql, " AND event_search.vector @@ q", "ts_rank_cd(event_search.vector, q)", \
            [_tsquery(query.words)]
    # bm25() is better when lower; negate it so that both engines rank higher as better.
    return "", " AND event_search MATCH ?", "-bm25(event_search)", [_fts5_query(query.words)]


def _search_sql(dialect: Dialect, query: SearchQuery) -> tuple[str, list[Any], str, list[Any]]:
    """(count SQL, its parameters, page SQL, its parameters) of a search."""
    match_from, match_where, rank, match_params = _match_sql(dialect, query)
    rooms_clause, rooms_params = in_list(dialect, "event_search.room_id", query.room_ids)
    keys_clause, keys_params = in_list(dialect, "event_search.key", query.keys)
    cond_clause, cond_params, needs_json = condition_sql(dialect, query.conditions)
    from_sql = f" FROM event_search JOIN events e ON e.event_id = event_search.event_id{match_from}"
    if needs_json:
        from_sql += " JOIN event_json j ON j.event_id = e.event_id"
    where = (f" WHERE {rooms_clause} AND {keys_clause} AND e.redacted_by IS NULL AND e.outlier = ?"
             f" AND e.rejected_reason IS NULL{match_where}{cond_clause}")
    # The match parameter sits in FROM on PostgreSQL and in WHERE on SQLite.
    if dialect.is_postgres:
        params = [*match_params, *rooms_params, *keys_params, False, *cond_params]
    else:
        params = [*rooms_params, *keys_params, False, *match_params, *cond_params]
    count_sql = f"SELECT COUNT(DISTINCT e.event_id){from_sql}{where}"
    page_where, page_params = where, list(params)
    if query.order_by_rank:
        order = f"{rank} DESC, e.stream_ordering DESC"
        tail = f" LIMIT {int(query.limit)} OFFSET {int(query.offset)}"
    else:
        order = "e.stream_ordering DESC"
        tail = f" LIMIT {int(query.limit)}"
        if query.before_stream is not None:
            page_where += " AND e.stream_ordering < ?"
            page_params.append(query.before_stream)
    page_sql = f"SELECT {ROW_COLUMNS}, e.room_id, {rank}{from_sql}{ROW_JOINS}{page_where} ORDER BY {order}{tail}"
    return count_sql, params, page_sql, page_params


async def _index_texts_txn(txn: Transaction, rows: Sequence[tuple[str, str, str, str]]) -> None:
    """Index (event_id, room_id, key, text) rows. Each event is indexed once, by the search stage."""
    if not rows:
        return
    if txn.dialect.is_postgres:
        await txn.executemany(
            "INSERT INTO event_search (event_id, room_id, key, vector)"
            f" VALUES (?, ?, ?, to_tsvector('{TS_CONFIG}', ?)) ON CONFLICT DO NOTHING", rows)
    else:
        await txn.executemany(
            "INSERT INTO event_search (value, event_id, room_id, key) VALUES (?, ?, ?, ?)",
            [(text, event_id, room_id, key) for event_id, room_id, key, text in rows])


# --- for other stores' transactions (erasure, purges) ----------------------------------------


async def delete_sender_search_txn(txn: Transaction, user_id: str) -> None:
    """Unindex every event the user sent (an erasure)."""
    await txn.execute("DELETE FROM event_search WHERE event_id IN (SELECT event_id FROM events WHERE sender = ?)",
                      (user_id,))


async def delete_events_search_txn(txn: Transaction, event_ids: Sequence[str]) -> None:
    """Unindex these events (purged, turned into outliers, or pruned)."""
    clause, params = txn.dialect.in_list("event_id", event_ids)
    await txn.execute(f"DELETE FROM event_search WHERE {clause}", params)


async def delete_room_search_txn(txn: Transaction, room_id: str) -> None:
    """Unindex the room's events (the room is being deleted)."""
    await txn.execute("DELETE FROM event_search WHERE room_id = ?", (room_id,))
