"""Room aliases published on this server."""

from __future__ import annotations

from storage.database import Database, Transaction


class AliasExistsError(Exception):
    """The alias already points at a room."""


class AliasStore:
    def __init__(self, db: Database):
        self.db = db

    async def create_alias(self, room_alias: str, room_id: str, creator: str, created_ts: int) -> None:
        """Add an alias; raises AliasExistsError when it is taken."""

        async def txn_fn(txn: Transaction) -> bool:
            row = await txn.fetch_one(
                "INSERT INTO room_aliases (room_alias, room_id, creator, created_ts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (room_alias) DO NOTHING RETURNING room_alias",
                (room_alias, room_id, creator, created_ts),
            )
            return row is not None

        if not await self.db.run_interaction("create_alias", txn_fn):
            raise AliasExistsError(room_alias)

    async def get_alias(self, room_alias: str) -> dict | None:
        return await self.db.simple_select_one("room_aliases", {"room_alias": room_alias},
                                               ["room_alias", "room_id", "creator"], allow_none=True)

    async def delete_alias(self, room_alias: str) -> bool:
        return await self.db.simple_delete("room_aliases", {"room_alias": room_alias}) > 0

    async def get_aliases_for_room(self, room_id: str) -> list[str]:
        rows = await self.db.simple_select_list("room_aliases", {"room_id": room_id}, ["room_alias"],
                                                order_by=["room_alias"])
        return [r["room_alias"] for r in rows]


async def delete_room_aliases_txn(txn: Transaction, room_id: str) -> None:
    """Every alias of the room (the room is being deleted)."""
    await txn.execute("DELETE FROM room_aliases WHERE room_id = ?", (room_id,))
