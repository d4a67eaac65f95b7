"""Registration tokens (`registration_tokens`, m.login.registration_token): uses and expiry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage.database import Database, Transaction

_TOKEN_COLUMNS = "token, uses_allowed, pending, completed, expiry_time"


@dataclass(frozen=True, slots=True)
class RegistrationTokenRow:
    token: str
    uses_allowed: int | None  # None: unlimited
    pending: int
    completed: int
    expiry_time: int | None  # ms since the epoch; None: never expires


class RegistrationTokenStore:
    def __init__(self, db: Database):
        self.db = db

    async def registration_token_valid(self, token: str, now_ms: int) -> bool:
        row = await self.db.fetch_one(
            "registration_token_valid",
            "SELECT uses_allowed, pending, completed, expiry_time FROM registration_tokens WHERE token = ?",
            (token,),
        )
        if row is None:
            return False
        uses_allowed, pending, completed, expiry_time = row
        if expiry_time is not None and expiry_time <= now_ms:
            return False
        return uses_allowed is None or pending + completed < uses_allowed

    async def add_registration_token(
        self, token: str, uses_allowed: int | None, expiry_time: int | None
    ) -> None:
        await self.db.simple_insert(
            "registration_tokens", {"token": token, "uses_allowed": uses_allowed, "expiry_time": expiry_time}
        )

    async def list_registration_tokens(self, valid: bool | None, now_ms: int) -> list[RegistrationTokenRow]:
        """Every registration token, or only the usable (`valid=True`) or unusable ones."""
        usable = ("(uses_allowed IS NULL OR pending + completed < uses_allowed)"
                  " AND (expiry_time IS NULL OR expiry_time > ?)")
        where, params = "", ()
        if valid is not None:
            where = f" WHERE {usable}" if valid else f" WHERE NOT ({usable})"
            params = (now_ms,)
        rows = await self.db.fetch_all(
            "list_registration_tokens",
            f"SELECT {_TOKEN_COLUMNS} FROM registration_tokens{where} ORDER BY token", params)
        return [RegistrationTokenRow(*row) for row in rows]

    async def get_registration_token(self, token: str) -> RegistrationTokenRow | None:
        row = await self.db.fetch_one(
            "select_one_registration_tokens", f"SELECT {_TOKEN_COLUMNS} FROM registration_tokens WHERE token = ?",
            (token,))
        return None if row is None else RegistrationTokenRow(*row)

    async def create_registration_token(self, token: str, uses_allowed: int | None,
                                        expiry_time: int | None) -> bool:
        """Insert a new token; False when the token already exists."""
        return await self.db.run_interaction(
            "create_registration_token", _returns_row,
            "INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES (?, ?, ?)"
            " ON CONFLICT (token) DO NOTHING RETURNING token",
            (token, uses_allowed, expiry_time))

    async def update_registration_token(self, token: str, values: dict[str, Any]) -> bool:
        """Change `uses_allowed` and/or `expiry_time`; False when there is no such token."""
        if not values:
            return await self.get_registration_token(token) is not None
        return await self.db.simple_update("registration_tokens", {"token": token}, values) > 0

    async def delete_registration_token(self, token: str) -> bool:
        return await self.db.simple_delete("registration_tokens", {"token": token}) > 0

    async def use_registration_token(self, token: str, now_ms: int) -> bool:
        """Count one completed registration against the token, atomically; False if it is used up."""
        return await self.db.run_interaction(
            "use_registration_token",
            _returns_row,
            "UPDATE registration_tokens SET completed = completed + 1 WHERE token = ?"
            " AND (expiry_time IS NULL OR expiry_time > ?)"
            " AND (uses_allowed IS NULL OR pending + completed < uses_allowed) RETURNING token",
            (token, now_ms),
        )


async def _returns_row(txn: Transaction, sql: str, params: tuple[Any, ...]) -> bool:
    """Whether the writing statement (with RETURNING) touched a row."""
    return bool(await txn.fetch_all(sql, params))
