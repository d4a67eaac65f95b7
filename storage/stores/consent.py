"""The privacy policy version members must accept (`consent_policy`) and who accepted which (`user_consent`)."""

from __future__ import annotations

from typing import Any

from storage.database import Database

_POLICY_ROW = 1


class ConsentStore:
    def __init__(self, db: Database):
        self.db = db

    async def get_policy(self) -> dict[str, Any] | None:
        row = await self.db.fetch_one("get_consent_policy", "SELECT version, url, set_ts FROM consent_policy"
                                      " WHERE id = ?", (_POLICY_ROW,))
        return None if row is None else {"version": row[0], "url": row[1], "set_ts": row[2]}

    async def set_policy(self, version: str, url: str, now_ms: int) -> None:
        await self.db.simple_upsert("consent_policy", {"id": _POLICY_ROW},
                                    {"version": version, "url": url, "set_ts": now_ms})

    async def get_user_consent(self, user_id: str) -> dict[str, Any] | None:
        row = await self.db.fetch_one("get_user_consent", "SELECT version, ts FROM user_consent WHERE user_id = ?",
                                      (user_id,))
        return None if row is None else {"version": row[0], "ts": row[1]}

    async def set_user_consent(self, user_id: str, version: str, now_ms: int) -> None:
        await self.db.simple_upsert("user_consent", {"user_id": user_id}, {"version": version, "ts": now_ms})

    async def delete_user_consent(self, user_id: str) -> int:
        return await self.db.execute("delete_user_consent", "DELETE FROM user_consent WHERE user_id = ?", (user_id,))
