"""Per-user account data, global and per room, each write stamped with an `account_data` position.

Writers allocate the stream position *first*: that bumps the stream's row, which every writer
then waits on, so read-modify-write updates (room tags) never lose a concurrent change even under
PostgreSQL's read-committed isolation, which allocating interactions use (see storage/streams.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction
from storage.streams import allocate_stream_positions, get_stream_position

ACCOUNT_DATA = "account_data"
# Room tags are room account data of this type: {"tags": {tag: {...}}}.
TAG_TYPE = "m.tag"


@dataclass(slots=True)
class AccountDataChanges:
    """What changed for one user in a stream range: the latest content of each changed type."""

    position: int
    global_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    room_data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


class AccountDataStore:
    def __init__(self, db: Database):
        self.db = db

    # --- writes --------------------------------------------------------------------
    async def put_global(self, user_id: str, data_type: str, content: dict[str, Any]) -> int:
        """Store global account data; returns its stream position."""

        async def txn_fn(txn: Transaction) -> int:
            (position,) = await allocate_stream_positions(txn, ACCOUNT_DATA)
            await txn.upsert(
                "account_data",
                {"user_id": user_id, "account_data_type": data_type},
                {"stream_id": position, "content": encode_str(content)},
            )
            return position

        return await self.db.run_interaction("put_global_account_data", txn_fn, isolation="read_committed")

    async def put_room(self, user_id: str, room_id: str, data_type: str, content: dict[str, Any]) -> int:
        """Store account data for one room; returns its stream position."""

        async def txn_fn(txn: Transaction) -> int:
            (position,) = await allocate_stream_positions(txn, ACCOUNT_DATA)
            await _write_room(txn, user_id, room_id, data_type, content, position)
            return position

        return await self.db.run_interaction("put_room_account_data", txn_fn, isolation="read_committed")

    async def update_room(
        self,
        user_id: str,
        room_id: str,
        data_type: str,
        update: Callable[[dict[str, Any] | None], dict[str, Any] | None],
    ) -> int | None:
        """Rewrite room account data with `update(current)`; no write when it returns None."""

        async def txn_fn(txn: Transaction) -> int | None:
            # Allocating first serialises concurrent updaters on the stream row (module docstring).
            (position,) = await allocate_stream_positions(txn, ACCOUNT_DATA)
            current = await _read_room(txn, user_id, room_id, data_type)
            new_content = update(current)
            if new_content is None:
                # Rolls back the allocation too: nothing changed, so nothing to deliver.
                raise _NoChange
            await _write_room(txn, user_id, room_id, data_type, new_content, position)
            return position

        try:
            return await self.db.run_interaction(
                "update_room_account_data", txn_fn, isolation="read_committed"
            )
        except _NoChange:
            return None

    # --- reads ---------------------------------------------------------------------
    async def get_global(self, user_id: str, data_type: str) -> dict[str, Any] | None:
        content = await self.db.fetch_value(
            "get_global_account_data",
            "SELECT content FROM account_data WHERE user_id = ? AND account_data_type = ?",
            (user_id, data_type),
        )
        return None if content is None else decode(content)

    async def get_room(self, user_id: str, room_id: str, data_type: str) -> dict[str, Any] | None:
        return await self.db.run_interaction(
            "get_room_account_data", _read_room, user_id, room_id, data_type, write=False
        )

    async def get_current_position(self) -> int:
        """The latest position of the account_data stream."""
        return await self.db.run_interaction(
            "account_data_position", get_stream_position, ACCOUNT_DATA, write=False
        )

    async def get_changes(self, user_id: str, since: int, upto: int | None = None) -> AccountDataChanges:
        """Account data of `user_id` written after `since` up to `upto` (default: now).

        With `since=0` this is all of the user's account data, as an initial sync needs.
        """

        async def txn_fn(txn: Transaction) -> AccountDataChanges:
            end = upto if upto is not None else await get_stream_position(txn, ACCOUNT_DATA)
            changes = AccountDataChanges(position=end)
            # The global and the per-room changes in one round trip.
            global_rows, room_rows = await txn.fetch_all_batch([
                ("SELECT account_data_type, content FROM account_data"
                 " WHERE user_id = ? AND stream_id > ? AND stream_id <= ?", (user_id, since, end)),
                ("SELECT room_id, account_data_type, content FROM room_account_data"
                 " WHERE user_id = ? AND stream_id > ? AND stream_id <= ?", (user_id, since, end)),
            ])
            for data_type, content in global_rows:
                changes.global_data[data_type] = decode(content)
            for room_id, data_type, content in room_rows:
                changes.room_data.setdefault(room_id, {})[data_type] = decode(content)
            return changes

        return await self.db.run_interaction("get_account_data_changes", txn_fn, write=False)


class _NoChange(Exception):
    pass


async def _read_room(txn: Transaction, user_id: str, room_id: str, data_type: str) -> dict[str, Any] | None:
    content = await txn.fetch_value(
        "SELECT content FROM room_account_data WHERE user_id = ? AND room_id = ? AND account_data_type = ?",
        (user_id, room_id, data_type),
    )
    return None if content is None else decode(content)


async def _write_room(
    txn: Transaction, user_id: str, room_id: str, data_type: str, content: dict[str, Any], position: int
) -> None:
    await txn.upsert(
        "room_account_data",
        {"user_id": user_id, "room_id": room_id, "account_data_type": data_type},
        {"stream_id": position, "content": encode_str(content)},
    )


async def delete_user_account_data_txn(txn: Transaction, user_id: str) -> None:
    """Every piece of the user's account data, global and per room (a deactivation)."""
    await txn.execute("DELETE FROM account_data WHERE user_id = ?", (user_id,))
    await txn.execute("DELETE FROM room_account_data WHERE user_id = ?", (user_id,))


async def delete_room_account_data_txn(txn: Transaction, room_id: str) -> None:
    """Every user's account data for the room (the room is being deleted)."""
    await txn.execute("DELETE FROM room_account_data WHERE room_id = ?", (room_id,))
