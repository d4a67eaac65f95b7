"""Single-use login tokens (`login_tokens`, for m.login.token), stored by hash."""

from __future__ import annotations

from storage.database import Database, Transaction


class LoginTokenStore:
    def __init__(self, db: Database):
        self.db = db

    async def add_login_token(self, token_hash: str, user_id: str, expiry_ts: int) -> None:
        await self.db.simple_insert(
            "login_tokens", {"token_hash": token_hash, "user_id": user_id, "expiry_ts": expiry_ts}
        )

    async def consume_login_token(self, token_hash: str, now_ms: int) -> str | None:
        """The user of an unexpired, unused login token, marking it used; None otherwise."""

        async def txn_fn(txn: Transaction) -> str | None:
            row = await txn.fetch_one(
                "UPDATE login_tokens SET used_ts = ? WHERE token_hash = ? AND used_ts IS NULL AND expiry_ts > ?"
                " RETURNING user_id",
                (now_ms, token_hash, now_ms),
            )
            return None if row is None else row[0]

        return await self.db.run_interaction("consume_login_token", txn_fn)
