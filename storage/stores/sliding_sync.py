"""Queries simplified sliding sync needs beyond those of /sync: the room list's sort key."""

from __future__ import annotations

from collections.abc import Sequence

from storage.database import Database, Transaction

# SQLite refuses compound SELECTs of more than 500 terms; stay well below.
_UNION_CHUNK = 100


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
