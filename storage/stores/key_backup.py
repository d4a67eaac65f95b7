"""Server-side key backup: backup versions per user and the room keys stored in each.

Writes to a version's keys happen in one transaction that first checks the version is still the
user's current one, so an upload cannot land in a backup that was replaced meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction


@dataclass(frozen=True, slots=True)
class BackupVersion:
    version: int
    algorithm: str
    auth_data: dict[str, Any] | str  # a string from older clients
    etag: int
    count: int


@dataclass(frozen=True, slots=True)
class RoomKey:
    room_id: str
    session_id: str
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"first_message_index": self.first_message_index, "forwarded_count": self.forwarded_count,
                "is_verified": self.is_verified, "session_data": self.session_data}


class NotCurrentVersion(Exception):
    """The version named is not the user's current backup; carries the current one (None if no backup)."""

    def __init__(self, current: int | None):
        super().__init__(current)
        self.current = current


_KEY_COLUMNS = "room_id, session_id, first_message_index, forwarded_count, is_verified, session_data"


def _room_key(row: Sequence[Any]) -> RoomKey:
    return RoomKey(row[0], row[1], int(row[2]), int(row[3]), bool(row[4]), decode(row[5]))


async def _current_version(txn: Transaction, user_id: str) -> int | None:
    value = await txn.fetch_value(
        "SELECT MAX(version) FROM e2e_room_keys_versions WHERE user_id = ? AND deleted = FALSE", (user_id,))
    return None if value is None else int(value)


async def _version_row(txn: Transaction, user_id: str, version: int) -> BackupVersion | None:
    row = await txn.fetch_one(
        "SELECT version, algorithm, auth_data, etag FROM e2e_room_keys_versions"
        " WHERE user_id = ? AND version = ? AND deleted = FALSE", (user_id, version))
    if row is None:
        return None
    count = await txn.fetch_value(
        "SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = ? AND version = ?", (user_id, version))
    return BackupVersion(int(row[0]), row[1], decode(row[2]), int(row[3]), int(count))


def _key_filter(room_id: str | None, session_id: str | None) -> tuple[str, tuple[str, ...]]:
    sql, params = "", ()
    if room_id is not None:
        sql, params = " AND room_id = ?", (room_id,)
        if session_id is not None:
            sql, params = sql + " AND session_id = ?", (room_id, session_id)
    return sql, params


class KeyBackupStore:
    def __init__(self, db: Database):
        self.db = db

    async def create_version(self, user_id: str, algorithm: str, auth_data: dict[str, Any] | str) -> int:
        """A new backup version, which becomes the current one; numbers are never reused."""

        async def txn_fn(txn: Transaction) -> int:
            latest = await txn.fetch_value(
                "SELECT MAX(version) FROM e2e_room_keys_versions WHERE user_id = ?", (user_id,))
            version = int(latest or 0) + 1
            await txn.insert("e2e_room_keys_versions", {"user_id": user_id, "version": version,
                                                        "algorithm": algorithm, "auth_data": encode_str(auth_data)})
            return version

        return await self.db.run_interaction("create_backup_version", txn_fn)

    async def get_version(self, user_id: str, version: int | None) -> BackupVersion | None:
        """A live backup version (None: the current one), or None when there is no such backup."""

        async def txn_fn(txn: Transaction) -> BackupVersion | None:
            wanted = await _current_version(txn, user_id) if version is None else version
            return None if wanted is None else await _version_row(txn, user_id, wanted)

        return await self.db.run_interaction("get_backup_version", txn_fn, write=False)

    async def update_auth_data(self, user_id: str, version: int, auth_data: dict[str, Any] | str) -> bool:
        updated = await self.db.execute(
            "update_backup_version",
            "UPDATE e2e_room_keys_versions SET auth_data = ? WHERE user_id = ? AND version = ? AND deleted = FALSE",
            (encode_str(auth_data), user_id, version))
        return updated > 0

    async def delete_version(self, user_id: str, version: int) -> bool:
        """Mark the version deleted and drop its keys; False when there was no such live version."""

        async def txn_fn(txn: Transaction) -> bool:
            await txn.execute(
                "UPDATE e2e_room_keys_versions SET deleted = TRUE WHERE user_id = ? AND version = ? AND deleted = FALSE",
                (user_id, version))
            if txn.rowcount == 0:
                return False
            await txn.execute("DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?", (user_id, version))
            return True

        return await self.db.run_interaction("delete_backup_version", txn_fn)

    async def get_keys(self, user_id: str, version: int, room_id: str | None = None,
                       session_id: str | None = None) -> list[RoomKey] | None:
        """Keys of a live version, optionally of one room or session; None when the version is not live."""

        async def txn_fn(txn: Transaction) -> list[RoomKey] | None:
            if await _version_row(txn, user_id, version) is None:
                return None
            where, params = _key_filter(room_id, session_id)
            rows = await txn.fetch_all(
                f"SELECT {_KEY_COLUMNS} FROM e2e_room_keys WHERE user_id = ? AND version = ?{where}"
                " ORDER BY room_id, session_id", (user_id, version, *params))
            return [_room_key(r) for r in rows]

        return await self.db.run_interaction("get_room_keys", txn_fn, write=False)

    async def put_keys(self, user_id: str, version: int, keys: Sequence[RoomKey],
                       should_replace: Callable[[RoomKey, RoomKey], bool]) -> BackupVersion:
        """Store keys into the current version, keeping an existing key unless `should_replace(old, new)`.

        Raises NotCurrentVersion when `version` is not the current backup. The etag moves when any key did.
        """

        async def txn_fn(txn: Transaction) -> BackupVersion:
            current = await _current_version(txn, user_id)
            if current != version:
                raise NotCurrentVersion(current)
            changed = False
            for key in keys:
                row = await txn.fetch_one(
                    f"SELECT {_KEY_COLUMNS} FROM e2e_room_keys"
                    " WHERE user_id = ? AND version = ? AND room_id = ? AND session_id = ?",
                    (user_id, version, key.room_id, key.session_id))
                if row is not None and not should_replace(_room_key(row), key):
                    continue
                await txn.upsert(
                    "e2e_room_keys",
                    {"user_id": user_id, "version": version, "room_id": key.room_id, "session_id": key.session_id},
                    {"first_message_index": key.first_message_index, "forwarded_count": key.forwarded_count,
                     "is_verified": key.is_verified, "session_data": encode_str(key.session_data)})
                changed = True
            if changed:
                await txn.execute("UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = ? AND version = ?",
                                  (user_id, version))
            result = await _version_row(txn, user_id, version)
            assert result is not None
            return result

        return await self.db.run_interaction("put_room_keys", txn_fn)

    async def delete_keys(self, user_id: str, version: int, room_id: str | None = None,
                          session_id: str | None = None) -> BackupVersion | None:
        """Delete keys of a live version (all, a room's, or one session); None when the version is not live."""

        async def txn_fn(txn: Transaction) -> BackupVersion | None:
            if await _version_row(txn, user_id, version) is None:
                return None
            where, params = _key_filter(room_id, session_id)
            await txn.execute(f"DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?{where}",
                              (user_id, version, *params))
            if txn.rowcount:
                await txn.execute("UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = ? AND version = ?",
                                  (user_id, version))
            return await _version_row(txn, user_id, version)

        return await self.db.run_interaction("delete_room_keys", txn_fn)


async def delete_user_key_backups_txn(txn: Transaction, user_id: str) -> None:
    """Every backup of the user, keys and versions (a deactivation)."""
    await txn.execute("DELETE FROM e2e_room_keys WHERE user_id = ?", (user_id,))
    await txn.execute("DELETE FROM e2e_room_keys_versions WHERE user_id = ?", (user_id,))


async def delete_room_key_backups_txn(txn: Transaction, room_id: str) -> None:
    """Every backed-up key of the room, in every user's backups (the room is being deleted)."""
    await txn.execute("DELETE FROM e2e_room_keys WHERE room_id = ?", (room_id,))
