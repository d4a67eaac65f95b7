"""Queries simplified sliding sync needs beyond those of /sync: the room list's sort key and the
connections' stored state (`sliding_sync_connection_positions`, `sliding_sync_connection_rooms`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from storage.database import Database, Transaction

T = TypeVar("T")

# SQLite refuses compound SELECTs of more than 500 terms; stay well below.
_UNION_CHUNK = 100
# Rows per multi-row INSERT: 11 columns x 200 rows stays far below SQLite's 32,766 parameters.
_INSERT_CHUNK = 200


def _rows_of(width: int, count: int) -> str:
    """`(?, ?), (?, ?)`: the VALUES of a `count`-row INSERT of `width` columns."""
    row = f"({', '.join('?' * width)})"
    return ", ".join([row] * count)


_ROOM_UPSERT = (
    "INSERT INTO sliding_sync_connection_rooms"
    " (user_id, device_id, conn_id, room_id, gen, upto, membership, config, members, seen, live) {rows}"
    " ON CONFLICT (user_id, device_id, conn_id, room_id, gen) DO UPDATE SET upto = excluded.upto,"
    " membership = excluded.membership, config = excluded.config, members = excluded.members,"
    " seen = excluded.seen, live = excluded.live")


def _insert_rooms(postgres: bool, conn: tuple[str, str, str], rows: Sequence[RoomRow]
                  ) -> list[tuple[str, Sequence[object]]]:
    """Statements upserting a connection's room rows (no two with the same room and generation).

    PostgreSQL gets one column array per field (one short statement whatever the row count: psycopg
    parses a statement with hundreds of parameters in Python each time); SQLite multi-row VALUES.
    """
    if not rows:
        return []
    if postgres:
        columns = list(zip(*((r.room_id, r.gen, r.upto, r.membership, r.config, r.members, r.seen, r.live)
                             for r in rows), strict=True))
        return [(_ROOM_UPSERT.format(rows=(
            "SELECT ?::text, ?::text, ?::text, r.* FROM unnest(?::text[], ?::bigint[], ?::bigint[], ?::text[],"
            " ?::text[], ?::text[], ?::text[], ?::boolean[]) AS r")), (*conn, *(list(c) for c in columns)))]
    return [(_ROOM_UPSERT.format(rows=f"VALUES {_rows_of(11, len(chunk))}"),
             [v for r in chunk for v in (*conn, r.room_id, r.gen, r.upto, r.membership, r.config, r.members, r.seen,
                                         r.live)])
            for chunk in _chunks(rows, _INSERT_CHUNK)]


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


@dataclass(frozen=True, slots=True)
class RoomRow:
    """One stored per-room row of a connection; `membership` None says the room is absent."""

    room_id: str
    gen: int
    upto: int
    membership: str | None
    config: str
    members: str
    seen: str | None
    # The room was in view at the row's position and had up to it: `upto` and `seen` are the
    # reading position's own (stored as 0 and NULL).
    live: bool = False


@dataclass(frozen=True, slots=True)
class StoredPosition:
    """One position of a connection as stored: the response's stream token, the JSON of its list
    counts, its generation and the room rows at or below it."""

    token: str
    counts: str
    gen: int
    rooms: list[RoomRow]


@dataclass(frozen=True, slots=True)
class NewPosition:
    pos: str
    gen: int
    token: str
    counts: str


class SlidingSyncStore:
    def __init__(self, db: Database):
        self.db = db

    async def get_latest_of_types(self, room_ids: Sequence[str], types: Sequence[str], upto: int
                                  ) -> dict[str, int]:
        """room_id -> stream position of the room's newest event of one of `types` at or before `upto`.

        One UNION ALL of per-room subqueries, each walking the (room_id, stream_ordering) index
        backwards until it meets an event of a wanted type: in a room people talk in that is the
        first few rows. Rooms without such an event are left out.
        """
        if not room_ids or not types:
            return {}

        async def txn_fn(txn: Transaction) -> dict[str, int]:
            out: dict[str, int] = {}
            ids = list(room_ids)
            if txn.dialect.is_postgres:
                # One statement of fixed text whatever the number of rooms (planned once per connection).
                rows = await txn.fetch_all(
                    "SELECT r.room_id, t.stream_ordering FROM unnest(?::text[]) AS r(room_id)"
                    " CROSS JOIN LATERAL (SELECT stream_ordering FROM events WHERE room_id = r.room_id"
                    " AND stream_ordering <= ? AND type = ANY(?) AND outlier = FALSE AND rejected_reason IS NULL"
                    " ORDER BY stream_ordering DESC LIMIT 1) AS t",
                    (ids, upto, list(types)))
                return {room_id: int(position) for room_id, position in rows}
            for start in range(0, len(ids), _UNION_CHUNK):
                chunk = ids[start:start + _UNION_CHUNK]
                parts, params = [], []
                for i, room_id in enumerate(chunk):
                    type_clause, type_params = txn.dialect.in_list("type", list(types))
                    parts.append(
                        f"SELECT * FROM (SELECT room_id, stream_ordering FROM events"
                        f" WHERE room_id = ? AND stream_ordering <= ? AND {type_clause} AND outlier = ?"
                        f" AND rejected_reason IS NULL ORDER BY stream_ordering DESC LIMIT 1) AS t{i}"
                    )
                    params.extend([room_id, upto, *type_params, False])
                for room_id, position in await txn.fetch_all(" UNION ALL ".join(parts), params):
                    out[room_id] = int(position)
            return out

        return await self.db.run_interaction("sliding_sync_latest_of_types", txn_fn, write=False)

    # --- connection state ----------------------------------------------------------------------
    # Positions in `sliding_sync_connection_positions`, what the client has of each room in
    # `sliding_sync_connection_rooms` (a row per room per generation where it changed).
    async def get_position(self, user_id: str, device_id: str | None, conn_id: str, pos: str
                           ) -> StoredPosition | None:
        """The stored position `pos` and the room rows its state folds from (gen <= its gen)."""
        device = device_id or ""

        async def txn_fn(txn: Transaction) -> StoredPosition | None:
            row = await txn.fetch_one(
                "SELECT token, counts, gen FROM sliding_sync_connection_positions"
                " WHERE user_id = ? AND device_id = ? AND conn_id = ? AND pos = ?",
                (user_id, device, conn_id, pos))
            if row is None:
                return None
            gen = int(row[2])
            rooms = await txn.fetch_all(
                "SELECT room_id, gen, upto, membership, config, members, seen, live FROM sliding_sync_connection_rooms"
                " WHERE user_id = ? AND device_id = ? AND conn_id = ? AND gen <= ?",
                (user_id, device, conn_id, gen))
            return StoredPosition(row[0], row[1], gen, [RoomRow(r[0], int(r[1]), int(r[2]), r[3], r[4], r[5], r[6],
                                                                bool(r[7]))
                                                        for r in rooms])

        return await self.db.run_interaction("get_sliding_sync_position", txn_fn, write=False)

    async def save_connection(self, user_id: str, device_id: str | None, conn_id: str, *, reset: bool,
                              drop_above: int | None, keep: Sequence[str], new: Sequence[NewPosition],
                              rooms: Sequence[RoomRow], now_ts: int, max_per_user: int | None) -> None:
        """Store a connection's new positions and the room rows they changed, in one transaction.

        `reset` (a new connection under this ID) first drops everything stored for it;
        `drop_above` drops the room rows of generations above it (positions of a branch the
        client left by going back to an older position). Positions not in `keep` go, and room
        rows no kept position reads any more. With `max_per_user` (a new connection), the user's
        connections beyond that many most recently used are dropped.
        """
        device = device_id or ""
        conn = (user_id, device, conn_id)
        where = "user_id = ? AND device_id = ? AND conn_id = ?"
        # Later rows replace earlier ones with the same key, as one upsert after another would (a
        # multi-row upsert may not touch a row twice).
        room_rows = list({(r.room_id, r.gen): r for r in rooms}.values())

        async def txn_fn(txn: Transaction) -> None:
            # No statement needs another's result, so they go in one batch (one round trip on
            # PostgreSQL) with the user's connection list; only dropping connections beyond
            # `max_per_user` takes a second.
            batch: list[tuple[str, Sequence[object]]] = []
            if reset:
                batch.append((f"DELETE FROM sliding_sync_connection_positions WHERE {where}", conn))
                batch.append((f"DELETE FROM sliding_sync_connection_rooms WHERE {where}", conn))
            elif drop_above is not None:
                batch.append((f"DELETE FROM sliding_sync_connection_rooms WHERE {where} AND gen > ?",
                              (*conn, drop_above)))
            if not reset:
                clause, params = txn.dialect.in_list("pos", list(keep))
                batch.append((f"DELETE FROM sliding_sync_connection_positions WHERE {where} AND NOT ({clause})",
                              (*conn, *params)))
            for chunk in _chunks(new, _INSERT_CHUNK):
                batch.append((
                    "INSERT INTO sliding_sync_connection_positions (user_id, device_id, conn_id, pos, gen,"
                    f" created_ts, token, counts) VALUES {_rows_of(8, len(chunk))}"
                    " ON CONFLICT (user_id, device_id, conn_id, pos) DO NOTHING",
                    [v for p in chunk for v in (*conn, p.pos, p.gen, now_ts, p.token, p.counts)]))
            batch.extend(_insert_rooms(txn.dialect.is_postgres, conn, room_rows))
            if not reset and keep:
                # Rows below the oldest kept generation that a newer row (still at or below it) hides.
                batch.append((
                    f"DELETE FROM sliding_sync_connection_rooms WHERE {where} AND gen < ("
                    f"SELECT MIN(gen) FROM sliding_sync_connection_positions WHERE {where}) AND EXISTS ("
                    " SELECT 1 FROM sliding_sync_connection_rooms AS newer WHERE newer.user_id = ?"
                    " AND newer.device_id = ? AND newer.conn_id = ?"
                    " AND newer.room_id = sliding_sync_connection_rooms.room_id"
                    " AND newer.gen > sliding_sync_connection_rooms.gen AND newer.gen <= ("
                    f"SELECT MIN(gen) FROM sliding_sync_connection_positions WHERE {where}))",
                    (*conn, *conn, *conn, *conn)))
            if max_per_user is not None:
                batch.append((
                    "SELECT device_id, conn_id, MAX(created_ts) AS last FROM sliding_sync_connection_positions"
                    " WHERE user_id = ? GROUP BY device_id, conn_id ORDER BY last DESC", (user_id,)))
            results = await txn.fetch_all_batch(batch)
            if max_per_user is not None:
                await txn.execute_batch([
                    (f"DELETE FROM {table} WHERE {where}", (user_id, old_device, old_conn))
                    for old_device, old_conn, _ in results[-1][max_per_user:]
                    for table in ("sliding_sync_connection_positions", "sliding_sync_connection_rooms")])

        # Positions are written after their response went out: after a crash of the machine loses the
        # newest, the client is told M_UNKNOWN_POS and starts over, as when the crash comes before the
        # write. So the commit need not wait for the disk (nor hold SQLite's writer for an fsync).
        # Read committed: a concurrent write of another of the user's connections that drops the same
        # old connection is then no conflict (each connection's own writes never overlap).
        await self.db.run_interaction("save_sliding_sync_connection", txn_fn, durable=False,
                                      isolation="read_committed")

    async def prune_positions(self, older_than_ts: int) -> int:
        """Delete positions handed out before `older_than_ts`, and the room rows of connections
        left without a position; returns how many positions went."""

        async def txn_fn(txn: Transaction) -> int:
            await txn.execute("DELETE FROM sliding_sync_connection_positions WHERE created_ts < ?", (older_than_ts,))
            count = txn.rowcount
            await txn.execute(
                "DELETE FROM sliding_sync_connection_rooms WHERE NOT EXISTS (SELECT 1 FROM"
                " sliding_sync_connection_positions AS p WHERE p.user_id = sliding_sync_connection_rooms.user_id"
                " AND p.device_id = sliding_sync_connection_rooms.device_id"
                " AND p.conn_id = sliding_sync_connection_rooms.conn_id)", ())
            return count

        return await self.db.run_interaction("prune_sliding_sync_positions", txn_fn)
