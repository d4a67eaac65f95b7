"""Users' pushers: where to send push notifications, keyed by (user, app_id, pushkey)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction
from storage.stores.outbound import enqueue_outbound_txn
from storage.stores.stages import save_stage_position_txn

# The outbound queue kind of push gateway deliveries.
PUSHER_KIND = "pusher"


@dataclass(frozen=True, slots=True)
class StoredPusher:
    user_id: str
    app_id: str
    pushkey: str
    kind: str
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str
    data: dict[str, Any]
    device_id: str | None
    pushkey_ts: int  # milliseconds


_COLUMNS = ("user_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data,"
            " device_id, pushkey_ts")


def _pusher(row: Any) -> StoredPusher:
    return StoredPusher(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], decode(row[8]),
                        row[9], int(row[10]))


class PusherStore:
    def __init__(self, db: Database):
        self.db = db

    async def get_all(self) -> list[StoredPusher]:
        rows = await self.db.fetch_all("get_all_pushers", f"SELECT {_COLUMNS} FROM pushers")
        return [_pusher(r) for r in rows]

    async def get_for_user(self, user_id: str) -> list[StoredPusher]:
        rows = await self.db.fetch_all(
            "get_pushers_for_user", f"SELECT {_COLUMNS} FROM pushers WHERE user_id = ? ORDER BY app_id, pushkey",
            (user_id,))
        return [_pusher(r) for r in rows]

    async def set_pusher(self, pusher: StoredPusher, *, replace_other_users: bool) -> list[StoredPusher]:
        """Create or update a pusher; with `replace_other_users`, delete other users' pushers of the
        same app_id and pushkey. Returns the pushers deleted."""

        async def txn_fn(txn: Transaction) -> list[StoredPusher]:
            removed: list[StoredPusher] = []
            if replace_other_users:
                rows = await txn.fetch_all(
                    f"SELECT {_COLUMNS} FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id <> ?",
                    (pusher.app_id, pusher.pushkey, pusher.user_id))
                removed = [_pusher(r) for r in rows]
                await txn.execute("DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id <> ?",
                                  (pusher.app_id, pusher.pushkey, pusher.user_id))
            await txn.upsert(
                "pushers", {"user_id": pusher.user_id, "app_id": pusher.app_id, "pushkey": pusher.pushkey},
                {"kind": pusher.kind, "app_display_name": pusher.app_display_name,
                 "device_display_name": pusher.device_display_name, "profile_tag": pusher.profile_tag,
                 "lang": pusher.lang, "data": encode_str(pusher.data),
                 "device_id": pusher.device_id, "pushkey_ts": pusher.pushkey_ts})
            return removed

        return await self.db.run_interaction("set_pusher", txn_fn)

    async def queue_deliveries(self, queued: dict[str, list[dict[str, Any]]], *, stage: str, upto: int,
                               now_ms: int) -> None:
        """Queue notifications per pusher destination and move the hand-off stage, in one transaction."""

        async def txn_fn(txn: Transaction) -> None:
            for destination, payloads in queued.items():
                await enqueue_outbound_txn(txn, PUSHER_KIND, destination, payloads, now_ms)
            await save_stage_position_txn(txn, stage, upto)

        await self.db.run_interaction("queue_pusher_deliveries", txn_fn)

    async def delete_pusher(self, user_id: str, app_id: str, pushkey: str) -> bool:
        deleted = await self.db.simple_delete("pushers", {"user_id": user_id, "app_id": app_id, "pushkey": pushkey})
        return deleted > 0

    async def delete_for_devices(self, user_id: str, device_ids: list[str]) -> list[tuple[str, str]]:
        """Delete the pushers the given devices created; returns their (app_id, pushkey)."""

        async def txn_fn(txn: Transaction) -> list[tuple[str, str]]:
            clause, params = txn.dialect.in_list("device_id", device_ids)
            rows = await txn.fetch_all(
                f"DELETE FROM pushers WHERE user_id = ? AND {clause} RETURNING app_id, pushkey", (user_id, *params))
            return [(r[0], r[1]) for r in rows]

        return await self.db.run_interaction("delete_pushers_for_devices", txn_fn) if device_ids else []

    async def delete_for_user(self, user_id: str) -> list[tuple[str, str]]:
        """Delete every pusher of the user; returns their (app_id, pushkey)."""
        sql = "DELETE FROM pushers WHERE user_id = ? RETURNING app_id, pushkey"

        async def txn_fn(txn: Transaction) -> list[tuple[str, str]]:
            return [(r[0], r[1]) for r in await txn.fetch_all(sql, (user_id,))]

        return await self.db.run_interaction("delete_pushers_for_user", txn_fn)
