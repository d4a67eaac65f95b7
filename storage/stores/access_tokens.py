"""Access tokens (`access_tokens`), stored by hash: what each resolves to, and revoking them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage.database import Database, Transaction


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What an access token resolves to."""

    token_id: int
    user_id: str
    device_id: str | None
    valid_until_ms: int | None
    is_guest: bool
    deactivated: bool
    puppets_user_id: str | None
    locked: bool = False


class AccessTokenStore:
    def __init__(self, db: Database):
        self.db = db

    async def add_access_token(
        self,
        token_hash: str,
        user_id: str,
        device_id: str | None,
        *,
        created_ts: int,
        valid_until_ms: int | None = None,
        refresh_token_id: int | None = None,
        puppets_user_id: str | None = None,
    ) -> int:
        return await self.db.run_interaction(
            "add_access_token",
            _insert_returning_id,
            "INSERT INTO access_tokens (token_hash, user_id, device_id, valid_until_ms, refresh_token_id,"
            " puppets_user_id, created_ts) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (token_hash, user_id, device_id, valid_until_ms, refresh_token_id, puppets_user_id, created_ts),
        )

    async def get_access_token(self, token_hash: str) -> TokenInfo | None:
        row = await self.db.fetch_one(
            "get_access_token",
            # A puppet token (an admin logged in as someone) acts as, and lives and dies with, that user.
            "SELECT t.id, u.user_id, t.device_id, t.valid_until_ms, u.is_guest, u.deactivated, t.puppets_user_id,"
            " u.locked FROM access_tokens t JOIN users u ON u.user_id = COALESCE(t.puppets_user_id, t.user_id)"
            " WHERE t.token_hash = ?",
            (token_hash,),
        )
        if row is None:
            return None
        return TokenInfo(row[0], row[1], row[2], row[3], bool(row[4]), bool(row[5]), row[6], bool(row[7]))

    async def delete_access_tokens(
        self,
        user_id: str,
        *,
        device_id: str | None = None,
        except_token_id: int | None = None,
        token_id: int | None = None,
    ) -> list[str]:
        """Delete matching access tokens; returns their hashes so caches can drop them."""
        clauses, params = ["user_id = ?"], [user_id]
        if device_id is not None:
            clauses.append("device_id = ?")
            params.append(device_id)
        if except_token_id is not None:
            clauses.append("id != ?")
            params.append(except_token_id)
        if token_id is not None:
            clauses.append("id = ?")
            params.append(token_id)
        sql = "DELETE FROM access_tokens WHERE " + " AND ".join(clauses) + " RETURNING token_hash"
        rows = await self.db.run_interaction("delete_access_tokens", _fetch_all, sql, tuple(params))
        return [r[0] for r in rows]


# --- for other stores' transactions (devices, refresh tokens, deactivation) -------------------


async def delete_user_access_tokens_txn(txn: Transaction, user_id: str) -> None:
    await txn.execute("DELETE FROM access_tokens WHERE user_id = ?", (user_id,))


async def delete_device_access_tokens_txn(txn: Transaction, user_id: str, device_id: str) -> list[str]:
    """Delete the device's access tokens; their hashes, so caches can drop them."""
    rows = await txn.fetch_all(
        "DELETE FROM access_tokens WHERE user_id = ? AND device_id = ? RETURNING token_hash", (user_id, device_id))
    return [r[0] for r in rows]


async def delete_refreshed_access_tokens_txn(txn: Transaction, refresh_token_id: int) -> None:
    """Delete the access tokens issued with a refresh token (it has been used)."""
    await txn.execute("DELETE FROM access_tokens WHERE refresh_token_id = ?", (refresh_token_id,))


async def _insert_returning_id(txn: Transaction, sql: str, params: tuple[Any, ...]) -> int:
    return int(await txn.fetch_value(sql, params))


async def _fetch_all(txn: Transaction, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return await txn.fetch_all(sql, params)
