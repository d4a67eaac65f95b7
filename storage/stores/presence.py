"""Presence of local users, one row each, on the `presence` stream."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.database import Database, Transaction
from storage.stores import room_state
from storage.stores.timeline import in_list
from storage.streams import allocate_stream_positions, get_stream_position

PRESENCE = "presence"
_COLUMNS = "user_id, state, status_msg, last_active_ts, last_user_sync_ts, explicit_unavailable, stream_id"


@dataclass(frozen=True)
class PresenceRow:
    user_id: str
    state: str
    status_msg: str | None
    last_active_ts: int
    last_user_sync_ts: int
    explicit_unavailable: bool
    stream_id: int = 0


def _row(values: Sequence[object]) -> PresenceRow:
    user_id, state, status_msg, active, synced, explicit, stream_id = values
    return PresenceRow(str(user_id), str(state), status_msg if isinstance(status_msg, str) else None,
                       int(active), int(synced), bool(explicit), int(stream_id))  # type: ignore[arg-type]


class PresenceStore:
    def __init__(self, db: Database):
        self.db = db

    async def current_position(self) -> int:
        return await self.db.run_interaction("presence_position", get_stream_position, PRESENCE, write=False)

    async def get_presence(self, user_id: str) -> PresenceRow | None:
        row = await self.db.fetch_one("get_presence", f"SELECT {_COLUMNS} FROM presence_state WHERE user_id = ?",
                                      (user_id,))
        return None if row is None else _row(row)

    async def store_presence(self, row: PresenceRow) -> PresenceRow:
        """Write a user's presence at a new stream position; returns it with that position."""

        async def txn_fn(txn: Transaction) -> int:
            (position,) = await allocate_stream_positions(txn, PRESENCE)
            await txn.upsert(
                "presence_state", {"user_id": row.user_id},
                {"state": row.state, "status_msg": row.status_msg, "last_active_ts": row.last_active_ts,
                 "last_user_sync_ts": row.last_user_sync_ts, "explicit_unavailable": row.explicit_unavailable,
                 "stream_id": position})
            return position

        position = await self.db.run_interaction("store_presence", txn_fn, isolation="read_committed")
        return PresenceRow(row.user_id, row.state, row.status_msg, row.last_active_ts, row.last_user_sync_ts,
                           row.explicit_unavailable, position)

    async def get_co_member_presence(self, user_id: str, from_position: int | None, to_position: int
                                     ) -> list[PresenceRow]:
        """Presence rows of users sharing a joined room with `user_id` (and their own), changed in
        (from_position, to_position]; with from_position None, every row up to to_position."""
        params: list[object] = [user_id, user_id]
        since = ""
        if from_position is not None:
            since = " AND p.stream_id > ?"
            params.append(from_position)
        params.append(to_position)
        rows = await self.db.fetch_all(
            "co_member_presence",
            f"SELECT {', '.join('p.' + c for c in _COLUMNS.split(', '))} FROM presence_state p"
            " WHERE (p.user_id = ? OR p.user_id IN ("
            " SELECT other.state_key FROM current_state_events mine"
            " JOIN current_state_events other ON other.room_id = mine.room_id"
            " WHERE mine.type = 'm.room.member' AND mine.state_key = ? AND mine.membership = 'join'"
            " AND other.type = 'm.room.member' AND other.membership = 'join'))"
            f"{since} AND p.stream_id <= ?",
            params)
        return [_row(r) for r in rows]

    async def get_presence_many(self, user_ids: Sequence[str]) -> list[PresenceRow]:
        async def txn_fn(txn: Transaction) -> list[PresenceRow]:
            clause, params = in_list(txn.dialect, "user_id", user_ids)
            return [_row(r) for r in await txn.fetch_all(
                f"SELECT {_COLUMNS} FROM presence_state WHERE {clause}", params)]

        if not user_ids:
            return []
        return await self.db.run_interaction("get_presence_many", txn_fn, write=False)

    async def get_not_offline(self) -> list[PresenceRow]:
        """Every row not offline, local and remote users alike: what a restart must go on timing out."""
        rows = await self.db.fetch_all("presence_not_offline",
                                       f"SELECT {_COLUMNS} FROM presence_state WHERE state <> 'offline'", ())
        return [_row(r) for r in rows]

    async def shares_room(self, user_a: str, user_b: str) -> bool:
        return await self.db.run_interaction("users_share_room", room_state.users_share_a_room, user_a, user_b,
                                             write=False)


async def clear_status_msg_txn(txn: Transaction, user_id: str) -> None:
    """Drop the user's status message (an erasure), inside the caller's transaction."""
    await txn.execute("UPDATE presence_state SET status_msg = NULL WHERE user_id = ?", (user_id,))
