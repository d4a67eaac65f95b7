"""The privacy policy version members must accept (`consent_policy`) and who accepted which (`user_consent`)."""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database

_POLICY_ROW = 1


@dataclass(frozen=True, slots=True)
class ConsentPolicy:
    version: str
    url: str
    set_ts: int


@dataclass(frozen=True, slots=True)
class UserConsent:
    """The policy version a user accepted last, and when."""
    version: str
    ts: int


class ConsentStore:
    def __init__(self, db: Database):
        self.db = db

    async def get_policy(self) -> ConsentPolicy | None:
        row = await self.db.fetch_one("get_consent_policy", "SELECT version, url, set_ts FROM consent_policy"
                                      " WHERE id = ?", (_POLICY_ROW,))
        return None if row is None else ConsentPolicy(*row)

    async def set_policy(self, version: str, url: str, now_ms: int) -> None:
        await self.db.simple_upsert("consent_policy", {"id": _POLICY_ROW},
                                    {"version": version, "url": url, "set_ts": now_ms})

    async def get_user_consent(self, user_id: str) -> UserConsent | None:
        row = await self.db.fetch_one("get_user_consent", "SELECT version, ts FROM user_consent WHERE user_id = ?",
                                      (user_id,))
        return None if row is None else UserConsent(*row)

    async def set_user_consent(self, user_id: str, version: str, now_ms: int) -> None:
        await self.db.simple_upsert("user_consent", {"user_id": user_id}, {"version": version, "ts": now_ms})

    async def delete_user_consent(self, user_id: str) -> int:
        return await self.db.execute("delete_user_consent", "DELETE FROM user_consent WHERE user_id = ?", (user_id,))
