"""User profiles: display name and avatar in `profiles`, every other field in `profile_fields`."""

from __future__ import annotations

from typing import Any

from canonicaljson import encode_canonical_json

from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction

# The two fields the spec has carried since r0 live in their own columns; member events copy them.
COLUMN_FIELDS = ("displayname", "avatar_url")


class ProfileTooLargeError(Exception):
    """Storing the value would make the user's whole profile larger than allowed."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"profile would be {size} bytes, over the limit of {limit}")
        self.size = size
        self.limit = limit


class UnknownUserError(Exception):
    """The profile belongs to no user of this server."""


def profile_size(profile: dict[str, Any]) -> int:
    """Bytes of the profile as canonical JSON, the measure the spec's 64 KiB limit applies to."""
    return len(encode_canonical_json(profile))


async def _read_profile(txn: Transaction, user_id: str) -> dict[str, Any] | None:
    exists = await txn.fetch_value("SELECT 1 FROM users WHERE user_id = ?", (user_id,))
    if not exists:
        return None
    profile: dict[str, Any] = {}
    row = await txn.fetch_one("SELECT displayname, avatar_url FROM profiles WHERE user_id = ?", (user_id,))
    if row is not None:
        for name, value in zip(COLUMN_FIELDS, row, strict=True):
            if value is not None:
                profile[name] = value
    for name, value_json in await txn.fetch_all(
        "SELECT field_name, value_json FROM profile_fields WHERE user_id = ?", (user_id,)
    ):
        profile[name] = decode(value_json)
    return profile


class ProfileStore:
    def __init__(self, db: Database):
        self.db = db

    async def get_profile(self, user_id: str) -> dict[str, Any] | None:
        """Every field of a local user's profile; None when there is no such user."""
        return await self.db.run_interaction("get_profile", _read_profile, user_id, write=False)

    async def set_field(
        self, user_id: str, field: str, value: Any, *, max_profile_bytes: int
    ) -> dict[str, Any]:
        """Set one field (None for a column field clears it) and return the whole new profile.

        The size check and the write share a transaction so that two concurrent writes cannot
        together push the profile past the limit.
        """

        async def txn_fn(txn: Transaction) -> dict[str, Any]:
            profile = await _read_profile(txn, user_id)
            if profile is None:
                raise UnknownUserError(user_id)
            if field in COLUMN_FIELDS and value is None:
                profile.pop(field, None)
            else:
                profile[field] = value
            size = profile_size(profile)
            if size > max_profile_bytes:
                raise ProfileTooLargeError(size, max_profile_bytes)
            if field in COLUMN_FIELDS:
                await txn.upsert("profiles", {"user_id": user_id}, {field: value})
            else:
                await txn.upsert(
                    "profile_fields",
                    {"user_id": user_id, "field_name": field},
                    {"value_json": encode_str(value)},
                )
            return profile

        return await self.db.run_interaction("set_profile_field", txn_fn)

    async def delete_field(self, user_id: str, field: str) -> dict[str, Any]:
        """Remove one field and return the whole new profile."""

        async def txn_fn(txn: Transaction) -> dict[str, Any]:
            profile = await _read_profile(txn, user_id)
            if profile is None:
                raise UnknownUserError(user_id)
            profile.pop(field, None)
            if field in COLUMN_FIELDS:
                await txn.update("profiles", {"user_id": user_id}, {field: None})
            else:
                await txn.delete("profile_fields", {"user_id": user_id, "field_name": field})
            return profile

        return await self.db.run_interaction("delete_profile_field", txn_fn)


# --- for other stores' transactions ----------------------------------------------------------


async def create_profile_txn(txn: Transaction, user_id: str, displayname: str | None) -> None:
    """A new user's profile row (registration); an existing row is left as it is."""
    await txn.execute("INSERT INTO profiles (user_id, displayname) VALUES (?, ?) ON CONFLICT (user_id) DO NOTHING",
                      (user_id, displayname))


async def erase_profile_txn(txn: Transaction, user_id: str) -> None:
    """Erase the user's profile: every extra field goes, display name and avatar become NULL."""
    await txn.execute("DELETE FROM profile_fields WHERE user_id = ?", (user_id,))
    await txn.execute("UPDATE profiles SET displayname = NULL, avatar_url = NULL WHERE user_id = ?", (user_id,))
