"""OpenID tokens (`openid_tokens`) that other services exchange for the user's identity."""

from __future__ import annotations

from storage.database import Database, Transaction


class OpenIdTokenStore:
    def __init__(self, db: Database):
        self.db = db

    async def add_openid_token(self, token_hash: str, user_id: str, expires_ts: int, now_ms: int) -> None:
        """Store a new OpenID token, dropping expired ones on the way."""

        async def txn_fn(txn: Transaction) -> None:
            await txn.execute("DELETE FROM openid_tokens WHERE expires_ts <= ?", (now_ms,))
            await txn.execute(
                "INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES (?, ?, ?)",
                (token_hash, user_id, expires_ts),
            )

        await self.db.run_interaction("add_openid_token", txn_fn)

    async def get_openid_token_user(self, token_hash: str, now_ms: int) -> str | None:
        """The user of an unexpired OpenID token, or None."""
        row = await self.db.fetch_one(
            "get_openid_token_user",
            "SELECT user_id FROM openid_tokens WHERE token_hash = ? AND expires_ts > ?",
            (token_hash, now_ms),
        )
        return None if row is None else row[0]
