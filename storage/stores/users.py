"""Local user accounts (`users`): creation, lookup, password, admin flag, deactivation.

The one module that writes `users`; the admin API's flags, type and reactivation go through the
transaction functions at the end (AdminStore calls them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage.database import Database, Transaction
from storage.stores import access_tokens, devices, profiles, refresh_tokens


class UserExistsError(Exception):
    """The user ID is already taken."""


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: str
    password_hash: str | None
    admin: bool
    deactivated: bool
    erased: bool
    is_guest: bool
    user_type: str | None
    appservice_id: str | None
    created_ts: int


_USER_COLUMNS = (
    "user_id, password_hash, admin, deactivated, erased, is_guest, user_type, appservice_id, created_ts"
)


def _user(row: tuple[Any, ...] | None) -> UserRow | None:
    if row is None:
        return None
    return UserRow(
        row[0], row[1], bool(row[2]), bool(row[3]), bool(row[4]), bool(row[5]), row[6], row[7], row[8]
    )


class UserStore:
    def __init__(self, db: Database):
        self.db = db

    async def create_user(
        self,
        user_id: str,
        password_hash: str | None,
        *,
        created_ts: int,
        admin: bool = False,
        is_guest: bool = False,
        user_type: str | None = None,
        appservice_id: str | None = None,
        displayname: str | None = None,
    ) -> None:
        """Insert a user and its profile; raises UserExistsError if the ID is taken."""
        localpart = user_id[1:].split(":", 1)[0]

        async def txn_fn(txn: Transaction) -> None:
            existing = await txn.fetch_value(
                "SELECT 1 FROM users WHERE lower(user_id) = lower(?)", (user_id,)
            )
            if existing:
                raise UserExistsError(user_id)
            await txn.execute(
                "INSERT INTO users (user_id, password_hash, admin, is_guest, user_type, appservice_id, created_ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (user_id, password_hash, admin, is_guest, user_type, appservice_id, created_ts),
            )
            await profiles.create_profile_txn(txn, user_id, displayname if displayname is not None else localpart)

        await self.db.run_interaction("create_user", txn_fn)

    async def get_user(self, user_id: str) -> UserRow | None:
        row = await self.db.fetch_one(
            "get_user", f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = ?", (user_id,)
        )
        return _user(row)

    async def find_user_case_insensitive(self, user_id: str) -> UserRow | None:
        """The user whose ID matches ignoring case; an exact match wins when several do."""
        rows = await self.db.fetch_all(
            "find_user_ci", f"SELECT {_USER_COLUMNS} FROM users WHERE lower(user_id) = lower(?)", (user_id,)
        )
        users = [_user(r) for r in rows]
        for user in users:
            if user is not None and user.user_id == user_id:
                return user
        return users[0] if len(users) == 1 else None

    async def upgrade_guest(self, user_id: str, password_hash: str | None) -> bool:
        """Turn a guest account into a full one with this password; False if it is no guest."""
        updated = await self.db.execute(
            "upgrade_guest", "UPDATE users SET is_guest = ?, password_hash = ? WHERE user_id = ? AND is_guest = ?",
            (False, password_hash, user_id, True),
        )
        return updated > 0

    async def set_password_hash(self, user_id: str, password_hash: str | None) -> None:
        await self.db.simple_update("users", {"user_id": user_id}, {"password_hash": password_hash})

    async def set_admin(self, user_id: str, admin: bool) -> None:
        await self.db.simple_update("users", {"user_id": user_id}, {"admin": admin})

    async def mark_deactivated(self, user_id: str, *, erase: bool) -> None:
        """Deactivate: no password, no tokens, no devices; `erase` recorded for the erasure work."""

        async def txn_fn(txn: Transaction) -> None:
            await txn.execute(
                "UPDATE users SET deactivated = ?, erased = ?, password_hash = NULL WHERE user_id = ?",
                (True, erase, user_id),
            )
            await access_tokens.delete_user_access_tokens_txn(txn, user_id)
            await refresh_tokens.delete_user_refresh_tokens_txn(txn, user_id)
            await devices.delete_user_devices_txn(txn, user_id)

        await self.db.run_interaction("mark_deactivated", txn_fn)


# --- for the admin API (storage/stores/admin.py) -------------------------------------------

ADMIN_FLAGS = ("locked", "suspended", "shadow_banned")


async def set_user_flag_txn(txn: Transaction, user_id: str, flag: str, value: bool) -> int:
    """Set one of the admin-managed flags of a user (one of ADMIN_FLAGS)."""
    if flag not in ADMIN_FLAGS:
        raise ValueError(flag)
    return await txn.update("users", {"user_id": user_id}, {flag: value})


async def reactivate_user_txn(txn: Transaction, user_id: str) -> int:
    """Undo a deactivation (and the erasure mark); the user sets a new password separately."""
    return await txn.update("users", {"user_id": user_id}, {"deactivated": False, "erased": False})


async def set_user_type_txn(txn: Transaction, user_id: str, user_type: str | None) -> int:
    return await txn.update("users", {"user_id": user_id}, {"user_type": user_type})
