"""Queries simplified sliding sync needs beyond those of /sync: the room list's sort key and the
connections' positions (`sliding_sync_positions`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from storage.database import Database, Transaction

# SQLite refuses compound SELECTs of more than 500 terms; stay well below.
_UNION_CHUNK = 100


@dataclass(frozen=True, slots=True)
class StoredPosition:
    """One position of a connection as stored: the response's stream token and the connection's state."""

    token: str
    state: str


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

    # --- connection positions ----------------------------------------------------------------
    async def get_position(self, user_id: str, device_id: str | None, conn_id: str, pos: str
                           ) -> StoredPosition | None:
        row = await self.db.fetch_one(
            "get_sliding_sync_position",
            "SELECT token, state FROM sliding_sync_positions"
            " WHERE user_id = ? AND device_id = ? AND conn_id = ? AND pos = ?",
            (user_id, device_id or "", conn_id, pos))
        return None if row is None else StoredPosition(row[0], row[1])

    async def save_positions(self, user_id: str, device_id: str | None, conn_id: str, *, keep: Sequence[str],
                             new: Mapping[str, StoredPosition], now_ts: int, max_per_user: int | None) -> None:
        """Make the connection's stored positions `keep`, adding the `new` ones (written at `now_ts`).

        With `max_per_user` (a new connection), the user's connections beyond that many most
        recently used are dropped.
        """
        device = device_id or ""

        async def txn_fn(txn: Transaction) -> None:
            if keep:
                clause, params = txn.dialect.in_list("pos", list(keep))
                await txn.execute(
                    "DELETE FROM sliding_sync_positions WHERE user_id = ? AND device_id = ? AND conn_id = ?"
                    f" AND NOT ({clause})", (user_id, device, conn_id, *params))
            else:
                await txn.execute(
                    "DELETE FROM sliding_sync_positions WHERE user_id = ? AND device_id = ? AND conn_id = ?",
                    (user_id, device, conn_id))
            for pos, position in new.items():
                await txn.execute(
                    "INSERT INTO sliding_sync_positions (user_id, device_id, conn_id, pos, created_ts, token, state)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, device_id, conn_id, pos) DO NOTHING",
                    (user_id, device, conn_id, pos, now_ts, position.token, position.state))
            if max_per_user is None:
                return
            connections = await txn.fetch_all(
                "SELECT device_id, conn_id, MAX(created_ts) AS last FROM sliding_sync_positions"
                " WHERE user_id = ? GROUP BY device_id, conn_id ORDER BY last DESC", (user_id,))
            for old_device, old_conn, _ in connections[max_per_user:]:
                await txn.execute(
                    "DELETE FROM sliding_sync_positions WHERE user_id = ? AND device_id = ? AND conn_id = ?",
                    (user_id, old_device, old_conn))

        await self.db.run_interaction("save_sliding_sync_positions", txn_fn)

    async def prune_positions(self, older_than_ts: int) -> int:
        """Delete positions handed out before `older_than_ts`; returns how many went."""
        return await self.db.execute("prune_sliding_sync_positions",
                                     "DELETE FROM sliding_sync_positions WHERE created_ts < ?", (older_than_ts,))
