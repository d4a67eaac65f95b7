"""Other servers' signing keys and the signed key responses they came in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction


@dataclass(frozen=True)
class StoredServerKey:
    server_name: str
    key_id: str
    verify_key: str  # unpadded base64
    valid_until_ts: int
    expired_ts: int | None
    fetched_ts: int


class ServerKeyStore:
    def __init__(self, db: Database):
        self.db = db

    async def store_server_keys(self, server_name: str, keys: Iterable[StoredServerKey],
                                response: dict[str, Any], valid_until_ts: int, fetched_ts: int) -> None:
        """Record the keys of one signed response and keep the response itself.

        A key seen again keeps the later of its two validity times, so an older response relayed by
        a notary never shortens what a fresher one said; a key once expired stays expired.
        """
        rows = list(keys)
        text = encode_str(response)

        async def txn_fn(txn: Transaction) -> None:
            for key in rows:
                await txn.execute(
                    "INSERT INTO server_keys (server_name, key_id, verify_key, valid_until_ts, expired_ts, fetched_ts)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (server_name, key_id) DO UPDATE SET"
                    " verify_key = excluded.verify_key,"
                    " valid_until_ts = CASE WHEN excluded.valid_until_ts > server_keys.valid_until_ts"
                    "   THEN excluded.valid_until_ts ELSE server_keys.valid_until_ts END,"
                    " expired_ts = COALESCE(server_keys.expired_ts, excluded.expired_ts),"
                    " fetched_ts = excluded.fetched_ts",
                    (key.server_name, key.key_id, key.verify_key, key.valid_until_ts, key.expired_ts,
                     key.fetched_ts),
                )
            await txn.execute(
                "INSERT INTO server_key_responses (server_name, key_json, valid_until_ts, fetched_ts)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (server_name) DO UPDATE SET key_json = excluded.key_json,"
                " valid_until_ts = excluded.valid_until_ts, fetched_ts = excluded.fetched_ts"
                " WHERE excluded.valid_until_ts >= server_key_responses.valid_until_ts",
                (server_name, text, valid_until_ts, fetched_ts),
            )

        await self.db.run_interaction("store_server_keys", txn_fn)

    async def get_server_key(self, server_name: str, key_id: str) -> StoredServerKey | None:
        row = await self.db.fetch_one(
            "get_server_key",
            "SELECT verify_key, valid_until_ts, expired_ts, fetched_ts FROM server_keys"
            " WHERE server_name = ? AND key_id = ?",
            (server_name, key_id),
        )
        if row is None:
            return None
        return StoredServerKey(server_name, key_id, row[0], int(row[1]), None if row[2] is None else int(row[2]),
                               int(row[3]))

    async def get_server_keys(self, server_name: str) -> list[StoredServerKey]:
        rows = await self.db.fetch_all(
            "get_server_keys",
            "SELECT key_id, verify_key, valid_until_ts, expired_ts, fetched_ts FROM server_keys"
            " WHERE server_name = ? ORDER BY key_id",
            (server_name,),
        )
        return [StoredServerKey(server_name, r[0], r[1], int(r[2]), None if r[3] is None else int(r[3]), int(r[4]))
                for r in rows]

    async def get_key_response(self, server_name: str) -> tuple[dict[str, Any], int] | None:
        """The newest stored signed response of `server_name` and its valid_until_ts."""
        row = await self.db.fetch_one(
            "get_key_response",
            "SELECT key_json, valid_until_ts FROM server_key_responses WHERE server_name = ?",
            (server_name,),
        )
        return None if row is None else (decode(row[0]), int(row[1]))
