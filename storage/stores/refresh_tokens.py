"""Refresh tokens (`refresh_tokens`), stored by hash, each chained to the one that replaced it."""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database, Transaction
from storage.stores import access_tokens


@dataclass(frozen=True, slots=True)
class RefreshTokenRow:
    id: int
    user_id: str
    device_id: str
    next_token_id: int | None  # set once the token has been exchanged for its successor
    expiry_ts: int | None
    has_next_access_token_been_used: bool


class RefreshTokenStore:
    def __init__(self, db: Database):
        self.db = db

    async def add_refresh_token(
        self, token_hash: str, user_id: str, device_id: str, *, created_ts: int, expiry_ts: int | None
    ) -> int:
        async def txn_fn(txn: Transaction) -> int:
            return int(await txn.fetch_value(
                "INSERT INTO refresh_tokens (token_hash, user_id, device_id, expiry_ts, created_ts)"
                " VALUES (?, ?, ?, ?, ?) RETURNING id",
                (token_hash, user_id, device_id, expiry_ts, created_ts)))

        return await self.db.run_interaction("add_refresh_token", txn_fn)

    async def get_refresh_token(self, token_hash: str) -> RefreshTokenRow | None:
        row = await self.db.fetch_one(
            "select_one_refresh_tokens",
            "SELECT id, user_id, device_id, next_token_id, expiry_ts, has_next_access_token_been_used"
            " FROM refresh_tokens WHERE token_hash = ?", (token_hash,))
        if row is None:
            return None
        return RefreshTokenRow(int(row[0]), row[1], row[2], row[3], row[4], bool(row[5]))

    async def replace_refresh_token(self, old_id: int, new_id: int) -> None:
        """Chain the old refresh token to its successor and drop the old token's access tokens."""

        async def txn_fn(txn: Transaction) -> None:
            await txn.execute("UPDATE refresh_tokens SET next_token_id = ? WHERE id = ?", (new_id, old_id))
            await access_tokens.delete_refreshed_access_tokens_txn(txn, old_id)

        await self.db.run_interaction("replace_refresh_token", txn_fn)

    async def delete_refresh_tokens(self, user_id: str, device_id: str | None = None) -> None:
        if device_id is None:
            await self.db.simple_delete("refresh_tokens", {"user_id": user_id})
        else:
            await self.db.simple_delete("refresh_tokens", {"user_id": user_id, "device_id": device_id})


# --- for other stores' transactions (devices, deactivation) -----------------------------------


async def delete_user_refresh_tokens_txn(txn: Transaction, user_id: str) -> None:
    await txn.execute("DELETE FROM refresh_tokens WHERE user_id = ?", (user_id,))


async def delete_device_refresh_tokens_txn(txn: Transaction, user_id: str, device_id: str) -> None:
    await txn.execute("DELETE FROM refresh_tokens WHERE user_id = ? AND device_id = ?", (user_id, device_id))
