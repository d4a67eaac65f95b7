"""A user's devices (`devices`): names, when and from where each was last seen, deletion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage.database import Database, Transaction
from storage.stores import access_tokens, refresh_tokens

_DEVICE_COLUMNS = "device_id, display_name, last_seen_ip, last_seen_user_agent, last_seen_ts, created_ts"


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device_id: str
    display_name: str | None
    last_seen_ip: str | None
    last_seen_user_agent: str | None
    last_seen_ts: int | None
    created_ts: int | None


def _device(row: tuple[Any, ...]) -> DeviceRow:
    return DeviceRow(*row)


class DeviceStore:
    def __init__(self, db: Database):
        self.db = db

    async def ensure_device(
        self, user_id: str, device_id: str, display_name: str | None, created_ts: int
    ) -> bool:
        """Create the device if missing (keeping an existing one's name); True when it was created."""

        async def txn_fn(txn: Transaction) -> bool:
            rows = await txn.fetch_all(
                "INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id, device_id) DO NOTHING RETURNING device_id",
                (user_id, device_id, display_name, created_ts))
            return bool(rows)

        return await self.db.run_interaction("ensure_device", txn_fn)

    async def get_device(self, user_id: str, device_id: str) -> DeviceRow | None:
        row = await self.db.fetch_one(
            "select_one_devices", f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE user_id = ? AND device_id = ?",
            (user_id, device_id))
        return None if row is None else _device(row)

    async def get_devices(self, user_id: str) -> list[DeviceRow]:
        """The user's devices (hidden ones left out), by device ID."""
        rows = await self.db.fetch_all(
            "select_list_devices",
            f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE user_id = ? AND hidden = ? ORDER BY device_id",
            (user_id, False))
        return [_device(row) for row in rows]

    async def set_device_display_name(self, user_id: str, device_id: str, display_name: str | None) -> bool:
        updated = await self.db.simple_update(
            "devices", {"user_id": user_id, "device_id": device_id}, {"display_name": display_name}
        )
        return updated > 0

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> list[str]:
        """Delete devices with their access and refresh tokens; returns the token hashes removed."""

        async def txn_fn(txn: Transaction) -> list[str]:
            hashes: list[str] = []
            for device_id in device_ids:
                hashes.extend(await access_tokens.delete_device_access_tokens_txn(txn, user_id, device_id))
                await refresh_tokens.delete_device_refresh_tokens_txn(txn, user_id, device_id)
                await txn.execute(
                    "DELETE FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id)
                )
            return hashes

        return await self.db.run_interaction("delete_devices", txn_fn)


# --- for other stores' transactions (client IPs, deactivation) --------------------------------


async def delete_user_devices_txn(txn: Transaction, user_id: str) -> None:
    await txn.execute("DELETE FROM devices WHERE user_id = ?", (user_id,))


async def record_devices_seen_txn(txn: Transaction, sightings: list[tuple[str, str, str, str, int]]) -> None:
    """Each (user_id, device_id, ip, user_agent, ts) as its device's last sighting, in one statement."""
    await txn.executemany(
        "UPDATE devices SET last_seen_ip = ?, last_seen_user_agent = ?, last_seen_ts = ?"
        " WHERE user_id = ? AND device_id = ?",
        [(ip, user_agent, ts, user_id, device_id) for user_id, device_id, ip, user_agent, ts in sightings],
    )


async def forget_devices_seen_from_before_txn(txn: Transaction, older_than_ts: int) -> None:
    """Forget the last IP and user agent of devices last seen before the cut-off (keeping when)."""
    await txn.execute(
        "UPDATE devices SET last_seen_ip = NULL, last_seen_user_agent = NULL"
        " WHERE last_seen_ts < ? AND (last_seen_ip IS NOT NULL OR last_seen_user_agent IS NOT NULL)",
        (older_than_ts,),
    )
