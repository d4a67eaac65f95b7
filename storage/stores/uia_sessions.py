"""User-interactive auth sessions (`ui_auth_sessions`) and their completed stages
(`ui_auth_session_credentials`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction


@dataclass(frozen=True, slots=True)
class UiaSession:
    """A user-interactive auth session: the request it was started for, the parameters of its first
    request (`clientdict`) and what the server noted during it (`serverdict`, e.g. the user whose
    password a stage must check). Both dicts are JSON documents."""

    session_id: str
    uri: str
    method: str
    clientdict: dict[str, Any]
    serverdict: dict[str, Any]
    created_ts: int

class UiaSessionStore:
    def __init__(self, db: Database):
        self.db = db

    async def create_uia_session(
        self, session_id: str, uri: str, method: str, clientdict: dict[str, Any], created_ts: int
    ) -> None:
        await self.db.simple_insert(
            "ui_auth_sessions",
            {
                "session_id": session_id,
                "uri": uri,
                "method": method,
                "clientdict": encode_str(clientdict),
                "created_ts": created_ts,
            },
        )

    async def get_uia_session(self, session_id: str) -> UiaSession | None:
        row = await self.db.simple_select_one(
            "ui_auth_sessions",
            {"session_id": session_id},
            ["session_id", "uri", "method", "clientdict", "serverdict", "created_ts"],
            allow_none=True,
        )
        if row is None:
            return None
        return UiaSession(row["session_id"], row["uri"], row["method"], decode(row["clientdict"]),
                          decode(row["serverdict"]), row["created_ts"])

    async def set_uia_stage_result(self, session_id: str, stage_type: str, result: Any) -> None:
        await self.db.simple_upsert(
            "ui_auth_session_credentials",
            {"session_id": session_id, "stage_type": stage_type},
            {"result": encode_str(result)},
        )

    async def get_uia_stage_results(self, session_id: str) -> dict[str, Any]:
        rows = await self.db.simple_select_list(
            "ui_auth_session_credentials", {"session_id": session_id}, ["stage_type", "result"]
        )
        return {r["stage_type"]: decode(r["result"]) for r in rows}

    async def set_uia_server_value(self, session_id: str, key: str, value: Any) -> None:
        async def txn_fn(txn: Transaction) -> None:
            raw = await txn.fetch_value(
                "SELECT serverdict FROM ui_auth_sessions WHERE session_id = ?", (session_id,)
            )
            serverdict = decode(raw) if raw else {}
            serverdict[key] = value
            await txn.execute(
                "UPDATE ui_auth_sessions SET serverdict = ? WHERE session_id = ?",
                (encode_str(serverdict), session_id),
            )

        await self.db.run_interaction("set_uia_server_value", txn_fn)

    async def delete_uia_session(self, session_id: str) -> None:
        async def txn_fn(txn: Transaction) -> None:
            await txn.execute("DELETE FROM ui_auth_session_credentials WHERE session_id = ?", (session_id,))
            await txn.execute("DELETE FROM ui_auth_sessions WHERE session_id = ?", (session_id,))

        await self.db.run_interaction("delete_uia_session", txn_fn)

    async def prune_uia_sessions(self, older_than_ts: int) -> None:
        async def txn_fn(txn: Transaction) -> None:
            await txn.execute(
                "DELETE FROM ui_auth_session_credentials WHERE session_id IN"
                " (SELECT session_id FROM ui_auth_sessions WHERE created_ts < ?)",
                (older_than_ts,),
            )
            await txn.execute("DELETE FROM ui_auth_sessions WHERE created_ts < ?", (older_than_ts,))

        await self.db.run_interaction("prune_uia_sessions", txn_fn)


async def delete_user_uia_sessions_txn(txn: Transaction, user_id: str) -> None:
    """Drop the interactive-auth sessions that name the user (erasure)."""
    # A session names its user inside its JSON; LIKE narrows the candidates, decoding decides.
    pattern = "%" + user_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = await txn.fetch_all(
        "SELECT session_id, serverdict, clientdict FROM ui_auth_sessions WHERE serverdict LIKE ? ESCAPE '\\'"
        " OR clientdict LIKE ? ESCAPE '\\'", (pattern, pattern))
    for session_id, serverdict, clientdict in rows:
        if user_id in _strings(decode(serverdict)) | _strings(decode(clientdict)):
            await txn.execute("DELETE FROM ui_auth_session_credentials WHERE session_id = ?", (session_id,))
            await txn.execute("DELETE FROM ui_auth_sessions WHERE session_id = ?", (session_id,))


def _strings(value: object) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return set()
