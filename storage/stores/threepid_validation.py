"""E-mail validation sessions (`threepid_validation_sessions`): a mailed token proves an address."""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from typing import Any

from storage.database import Database


@dataclass(frozen=True, slots=True)
class ThreepidSession:
    sid: str
    medium: str
    address: str
    client_secret: str
    token: str
    send_attempt: int
    next_link: str | None
    created_ts: int
    validated_ts: int | None = None


_COLUMNS = tuple(f.name for f in fields(ThreepidSession))


def _session(row: tuple[Any, ...] | None) -> ThreepidSession | None:
    return None if row is None else ThreepidSession(*row)


class ThreepidValidationStore:
    def __init__(self, db: Database):
        self.db = db

    async def find_session(self, client_secret: str, medium: str, address: str) -> ThreepidSession | None:
        """The newest session for this secret and address (a retried request reuses it)."""
        row = await self.db.fetch_one(
            "find_threepid_session",
            f"SELECT {', '.join(_COLUMNS)} FROM threepid_validation_sessions"
            " WHERE client_secret = ? AND medium = ? AND address = ? ORDER BY created_ts DESC LIMIT 1",
            (client_secret, medium, address))
        return _session(row)

    async def get_session(self, sid: str) -> ThreepidSession | None:
        row = await self.db.fetch_one(
            "get_threepid_session",
            f"SELECT {', '.join(_COLUMNS)} FROM threepid_validation_sessions WHERE sid = ?", (sid,))
        return _session(row)

    async def create_session(self, session: ThreepidSession) -> None:
        await self.db.simple_insert("threepid_validation_sessions", dict(zip(_COLUMNS, astuple(session), strict=True)))

    async def set_send_attempt(self, sid: str, send_attempt: int) -> None:
        await self.db.simple_update("threepid_validation_sessions", {"sid": sid}, {"send_attempt": send_attempt})

    async def mark_validated(self, sid: str, now_ms: int) -> None:
        await self.db.simple_update("threepid_validation_sessions", {"sid": sid}, {"validated_ts": now_ms})

    async def delete_session(self, sid: str) -> None:
        await self.db.simple_delete("threepid_validation_sessions", {"sid": sid})

    async def delete_older_than(self, ts: int) -> int:
        return await self.db.execute("expire_threepid_sessions",
                                     "DELETE FROM threepid_validation_sessions WHERE created_ts < ?", (ts,))

    async def delete_for_address(self, medium: str, address: str) -> int:
        return await self.db.execute("forget_threepid_sessions",
                                     "DELETE FROM threepid_validation_sessions WHERE medium = ? AND address = ?",
                                     (medium, address))
