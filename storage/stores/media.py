"""Media repository metadata: local uploads (and reserved IDs), the remote media cache, URL previews."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage.database import Database, Transaction

LOCAL_COLUMNS = (
    "media_id", "user_id", "content_type", "upload_name", "content_hash", "media_length", "created_ts",
    "uploaded_ts", "unused_expires_ts", "quarantined_by", "url_cache",
)
# The admin API's media list: its order_by names to columns, and the columns it shows.
ADMIN_MEDIA_ORDERS = {
    "media_id": "media_id", "upload_name": "upload_name", "created_ts": "created_ts",
    "last_access_ts": "last_access_ts", "media_length": "media_length", "media_type": "content_type",
    "quarantined_by": "quarantined_by", "safe_from_quarantine": "safe_from_quarantine",
}
_ADMIN_COLUMNS = ("media_id", "content_type", "media_length", "upload_name", "created_ts", "last_access_ts",
                  "quarantined_by", "safe_from_quarantine")


@dataclass(frozen=True, slots=True)
class LocalMedia:
    """A `local_media` row; `content_hash` is None while the ID is reserved but not yet uploaded."""
    media_id: str
    user_id: str | None
    content_type: str | None
    upload_name: str | None
    content_hash: str | None
    media_length: int | None
    created_ts: int
    uploaded_ts: int | None
    unused_expires_ts: int | None
    quarantined_by: str | None
    url_cache: str | None


@dataclass(frozen=True, slots=True)
class AdminMedia:
    """The columns of a local media item that the admin API shows."""
    media_id: str
    content_type: str | None
    media_length: int | None
    upload_name: str | None
    created_ts: int
    last_access_ts: int | None
    quarantined_by: str | None
    safe_from_quarantine: bool


def _admin_media(row: tuple[Any, ...]) -> AdminMedia:
    return AdminMedia(*row[:7], safe_from_quarantine=bool(row[7]))


REMOTE_COLUMNS = (
    "server_name", "media_id", "content_type", "upload_name", "content_hash", "media_length", "cached_ts",
    "quarantined_by",
)


@dataclass(frozen=True, slots=True)
class CachedRemoteMedia:
    """A `remote_media_cache` row."""
    server_name: str
    media_id: str
    content_type: str | None
    upload_name: str | None
    content_hash: str
    media_length: int | None
    cached_ts: int
    quarantined_by: str | None


class MediaStore:
    def __init__(self, db: Database):
        self.db = db

    # --- local media ------------------------------------------------------------
    async def insert_local_media(self, *, media_id: str, user_id: str | None, content_type: str | None,
                                 upload_name: str | None, content_hash: str, media_length: int, now_ms: int,
                                 url_cache: str | None = None) -> None:
        await self.db.simple_insert("local_media", {
            "media_id": media_id, "user_id": user_id, "content_type": content_type, "upload_name": upload_name,
            "content_hash": content_hash, "media_length": media_length, "created_ts": now_ms,
            "uploaded_ts": now_ms, "url_cache": url_cache,
        })

    async def reserve_media_id(self, media_id: str, user_id: str, now_ms: int, expires_ms: int,
                               max_pending: int) -> bool:
        """Record an ID for a later upload; False when the user already has `max_pending` unused ones."""

        async def txn_fn(txn: Transaction) -> bool:
            pending = await txn.fetch_value(
                "SELECT COUNT(*) FROM local_media WHERE user_id = ? AND content_hash IS NULL"
                " AND unused_expires_ts > ?", (user_id, now_ms),
            )
            if int(pending or 0) >= max_pending:
                return False
            await txn.insert("local_media", {
                "media_id": media_id, "user_id": user_id, "created_ts": now_ms, "unused_expires_ts": expires_ms,
            })
            return True

        return await self.db.run_interaction("reserve_media_id", txn_fn)

    async def fill_reserved_media(self, media_id: str, *, content_type: str | None, upload_name: str | None,
                                  content_hash: str, media_length: int, now_ms: int) -> bool:
        """Attach content to a reserved ID; False if it was filled meanwhile (first writer wins)."""

        async def txn_fn(txn: Transaction) -> bool:
            await txn.execute(
                "UPDATE local_media SET content_type = ?, upload_name = ?, content_hash = ?, media_length = ?,"
                " uploaded_ts = ?, unused_expires_ts = NULL WHERE media_id = ? AND content_hash IS NULL",
                (content_type, upload_name, content_hash, media_length, now_ms, media_id),
            )
            return txn.rowcount == 1

        return await self.db.run_interaction("fill_reserved_media", txn_fn)

    async def get_local_media(self, media_id: str) -> LocalMedia | None:
        row = await self.db.fetch_one(
            "get_local_media", f"SELECT {', '.join(LOCAL_COLUMNS)} FROM local_media WHERE media_id = ?",
            (media_id,))
        return None if row is None else LocalMedia(*row)

    async def list_user_media(self, user_id: str, *, offset: int, limit: int,
                              newest_first: bool = True) -> tuple[list[LocalMedia], int]:
        """A page of a user's uploaded media (reserved-but-unused IDs included) and the total count."""
        order = "DESC" if newest_first else "ASC"

        async def txn_fn(txn: Transaction) -> tuple[list[LocalMedia], int]:
            total = await txn.fetch_value("SELECT COUNT(*) FROM local_media WHERE user_id = ?", (user_id,))
            rows = await txn.fetch_all(
                f"SELECT {', '.join(LOCAL_COLUMNS)} FROM local_media WHERE user_id = ?"
                f" ORDER BY created_ts {order}, media_id {order} LIMIT ? OFFSET ?",
                (user_id, limit, offset),
            )
            return [LocalMedia(*row) for row in rows], int(total or 0)

        return await self.db.run_interaction("list_user_media", txn_fn, write=False)

    async def delete_local_media(self, media_id: str) -> tuple[bool, str | None]:
        """Delete one row; returns (deleted, its content hash if no other row still uses it)."""

        async def txn_fn(txn: Transaction) -> tuple[bool, str | None]:
            content_hash = await txn.fetch_value(
                "SELECT content_hash FROM local_media WHERE media_id = ?", (media_id,)
            )
            await txn.execute("DELETE FROM local_media WHERE media_id = ?", (media_id,))
            if txn.rowcount != 1:
                return False, None
            return True, await _orphaned(txn, content_hash)

        return await self.db.run_interaction("delete_local_media", txn_fn)

    async def delete_expired_reservations(self, now_ms: int) -> int:
        return await self.db.execute(
            "delete_expired_reservations",
            "DELETE FROM local_media WHERE content_hash IS NULL AND unused_expires_ts <= ?", (now_ms,),
        )

    async def set_local_quarantine(self, media_id: str, quarantined_by: str | None) -> bool:
        async def txn_fn(txn: Transaction) -> bool:
            return await txn.update("local_media", {"media_id": media_id},
                                    {"quarantined_by": quarantined_by}) == 1

        return await self.db.run_interaction("set_local_quarantine", txn_fn)

    # --- admin views -------------------------------------------------------------
    async def list_user_media_admin(self, user_id: str, *, order_by: str, backwards: bool, offset: int,
                                    limit: int) -> tuple[list[AdminMedia], int]:
        """A page of a user's media in the admin API's order, and the total."""
        column = ADMIN_MEDIA_ORDERS[order_by]
        order = "DESC" if backwards else "ASC"

        async def txn_fn(txn: Transaction) -> tuple[list[AdminMedia], int]:
            total = await txn.fetch_value("SELECT COUNT(*) FROM local_media WHERE user_id = ?", (user_id,))
            rows = await txn.fetch_all(
                f"SELECT {', '.join(_ADMIN_COLUMNS)} FROM local_media WHERE user_id = ?"
                f" ORDER BY {column} {order}, media_id {order} LIMIT ? OFFSET ?", (user_id, limit, offset))
            return [_admin_media(row) for row in rows], int(total or 0)

        return await self.db.run_interaction("list_user_media_admin", txn_fn, write=False)

    async def get_local_media_admin(self, media_id: str) -> AdminMedia | None:
        row = await self.db.fetch_one(
            "get_local_media_admin", f"SELECT {', '.join(_ADMIN_COLUMNS)} FROM local_media WHERE media_id = ?",
            (media_id,))
        return None if row is None else _admin_media(row)

    async def set_protected(self, media_id: str, protected: bool) -> bool:
        return await self.db.simple_update("local_media", {"media_id": media_id},
                                           {"safe_from_quarantine": protected}) > 0

    async def quarantine_user_media(self, user_id: str, by_user_id: str) -> int:
        """Quarantine every unprotected local media of a user; returns how many."""
        return await self.db.execute(
            "quarantine_user_media",
            "UPDATE local_media SET quarantined_by = ? WHERE user_id = ? AND safe_from_quarantine = ?",
            (by_user_id, user_id, False))

    async def quarantine_local_ids(self, media_ids: list[str], by_user_id: str) -> int:
        async def txn_fn(txn: Transaction) -> int:
            clause, params = txn.dialect.in_list("media_id", media_ids)
            await txn.execute(f"UPDATE local_media SET quarantined_by = ? WHERE {clause}"
                              " AND safe_from_quarantine = ?", (by_user_id, *params, False))
            return txn.rowcount

        return await self.db.run_interaction("quarantine_local_ids", txn_fn)

    async def local_media_ids_before(self, before_ts: int, size_gt: int, keep: set[str]) -> list[str]:
        """Unprotected local media last used (or made) before `before_ts` and larger than `size_gt` bytes."""
        rows = await self.db.fetch_all(
            "local_media_before",
            "SELECT media_id FROM local_media WHERE COALESCE(last_access_ts, created_ts) < ?"
            " AND COALESCE(media_length, 0) > ? AND safe_from_quarantine = ? ORDER BY media_id",
            (before_ts, size_gt, False))
        return [r[0] for r in rows if r[0] not in keep]

    # --- remote media cache -----------------------------------------------------
    async def get_remote_media(self, server_name: str, media_id: str) -> CachedRemoteMedia | None:
        row = await self.db.fetch_one(
            "get_remote_media",
            f"SELECT {', '.join(REMOTE_COLUMNS)} FROM remote_media_cache WHERE server_name = ? AND media_id = ?",
            (server_name, media_id))
        return None if row is None else CachedRemoteMedia(*row)

    async def insert_remote_media(self, *, server_name: str, media_id: str, content_type: str | None,
                                  upload_name: str | None, content_hash: str, media_length: int,
                                  now_ms: int) -> None:
        await self.db.simple_upsert(
            "remote_media_cache", {"server_name": server_name, "media_id": media_id},
            {"content_type": content_type, "upload_name": upload_name, "content_hash": content_hash,
             "media_length": media_length, "cached_ts": now_ms},
        )

    async def set_remote_quarantine(self, server_name: str, media_id: str, quarantined_by: str | None) -> bool:
        async def txn_fn(txn: Transaction) -> bool:
            return await txn.update("remote_media_cache", {"server_name": server_name, "media_id": media_id},
                                    {"quarantined_by": quarantined_by}) == 1

        return await self.db.run_interaction("set_remote_quarantine", txn_fn)

    async def purge_remote_media_before(self, before_ms: int) -> tuple[int, list[str]]:
        """Forget cached remote media fetched before `before_ms` (quarantined kept, as evidence).

        Returns how many rows went and the content hashes no row uses any more.
        """

        async def txn_fn(txn: Transaction) -> tuple[int, list[str]]:
            rows = await txn.fetch_all(
                "SELECT server_name, media_id, content_hash FROM remote_media_cache"
                " WHERE cached_ts < ? AND quarantined_by IS NULL", (before_ms,),
            )
            for server_name, media_id, _ in rows:
                await txn.execute("DELETE FROM remote_media_cache WHERE server_name = ? AND media_id = ?",
                                  (server_name, media_id))
            orphans = []
            for content_hash in sorted({row[2] for row in rows}):
                if await _orphaned(txn, content_hash):
                    orphans.append(content_hash)
            return len(rows), orphans

        return await self.db.run_interaction("purge_remote_media_before", txn_fn)

    async def content_in_use(self, content_hash: str) -> bool:
        async def txn_fn(txn: Transaction) -> bool:
            return await _orphaned(txn, content_hash) is None

        return await self.db.run_interaction("content_in_use", txn_fn, write=False)

    # --- URL previews -----------------------------------------------------------
    async def get_url_preview(self, url: str, now_ms: int) -> str | None:
        return await self.db.fetch_value(
            "get_url_preview", "SELECT og_json FROM url_previews WHERE url = ? AND expires_ts > ?", (url, now_ms)
        )

    async def store_url_preview(self, url: str, og_json: str, now_ms: int, expires_ms: int) -> None:
        await self.db.simple_upsert("url_previews", {"url": url},
                                    {"og_json": og_json, "fetched_ts": now_ms, "expires_ts": expires_ms})

    async def delete_expired_url_previews(self, now_ms: int) -> int:
        return await self.db.execute("delete_expired_url_previews",
                                     "DELETE FROM url_previews WHERE expires_ts <= ?", (now_ms,))


async def _orphaned(txn: Transaction, content_hash: str | None) -> str | None:
    """`content_hash` when neither local nor cached remote media refers to it any more, else None."""
    if content_hash is None:
        return None
    if await txn.fetch_one("SELECT 1 FROM local_media WHERE content_hash = ? LIMIT 1", (content_hash,)):
        return None
    if await txn.fetch_one("SELECT 1 FROM remote_media_cache WHERE content_hash = ? LIMIT 1", (content_hash,)):
        return None
    return content_hash
