"""The cache of other servers' users' device lists: devices, device keys and cross-signing keys.

Every change to a cached list is recorded on our `device_lists` stream in the same transaction
(storage/stores/e2ee.py `bump_device_lists`), so /sync and /keys/changes tell local users who
share a room with the remote user to fetch their keys again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction
from storage.stores.e2ee import NO_DEVICE, bump_device_lists


@dataclass(frozen=True, slots=True)
class RemoteDevice:
    device_id: str
    display_name: str | None
    keys: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class RemoteDeviceList:
    """A remote user's cached device list at the origin's `stream_id`."""

    user_id: str
    stream_id: int
    devices: tuple[RemoteDevice, ...]
    cross_signing: dict[str, dict[str, Any]]


async def _replace_cross_signing(txn: Transaction, user_id: str, keys: Mapping[str, dict[str, Any]]) -> None:
    for key_type, key in keys.items():
        await txn.upsert("remote_cross_signing_keys", {"user_id": user_id, "key_type": key_type},
                         {"key_json": encode_str(key)})


class RemoteDeviceStore:
    def __init__(self, db: Database):
        self.db = db

    async def get_stream_id(self, user_id: str) -> int | None:
        """The origin's stream ID our copy of the user's list is at; None when not cached."""
        value = await self.db.fetch_value(
            "remote_device_list_stream_id", "SELECT stream_id FROM remote_device_lists WHERE user_id = ?",
            (user_id,))
        return None if value is None else int(value)

    async def get_device_lists(self, user_ids: Sequence[str]) -> dict[str, RemoteDeviceList]:
        """The cached lists of those of these users we have one for."""
        if not user_ids:
            return {}

        async def txn_fn(txn: Transaction) -> dict[str, RemoteDeviceList]:
            clause, params = txn.dialect.in_list("user_id", list(user_ids))
            heads = await txn.fetch_all(f"SELECT user_id, stream_id FROM remote_device_lists WHERE {clause}",
                                        params)
            if not heads:
                return {}
            devices: dict[str, list[RemoteDevice]] = {}
            for user_id, device_id, name, key_json in await txn.fetch_all(
                    f"SELECT user_id, device_id, display_name, key_json FROM remote_devices WHERE {clause}"
                    " ORDER BY user_id, device_id", params):
                devices.setdefault(user_id, []).append(
                    RemoteDevice(device_id, name, None if key_json is None else decode(key_json)))
            cross: dict[str, dict[str, dict[str, Any]]] = {}
            for user_id, key_type, key_json in await txn.fetch_all(
                    f"SELECT user_id, key_type, key_json FROM remote_cross_signing_keys WHERE {clause}", params):
                cross.setdefault(user_id, {})[key_type] = decode(key_json)
            return {user_id: RemoteDeviceList(user_id, int(stream_id), tuple(devices.get(user_id, ())),
                                              cross.get(user_id, {}))
                    for user_id, stream_id in heads}

        return await self.db.run_interaction("remote_device_lists", txn_fn, write=False)

    async def replace_device_list(self, user_id: str, stream_id: int, devices: Sequence[RemoteDevice],
                                  cross_signing: Mapping[str, dict[str, Any]], now_ms: int) -> int:
        """Store a whole list fetched from the origin (a resync); the new device_lists position."""

        async def txn_fn(txn: Transaction) -> int:
            await txn.delete("remote_devices", {"user_id": user_id})
            await txn.delete("remote_cross_signing_keys", {"user_id": user_id})
            await txn.insert_many("remote_devices", ("user_id", "device_id", "display_name", "key_json"),
                                  [(user_id, d.device_id, d.display_name,
                                    None if d.keys is None else encode_str(d.keys)) for d in devices])
            await _replace_cross_signing(txn, user_id, cross_signing)
            await txn.upsert("remote_device_lists", {"user_id": user_id},
                             {"stream_id": stream_id, "updated_ts": now_ms})
            return await bump_device_lists(txn, [(user_id, NO_DEVICE)])

        return await self.db.run_interaction("replace_remote_device_list", txn_fn, isolation="read_committed")

    async def apply_device_update(self, user_id: str, stream_id: int, device: RemoteDevice, deleted: bool,
                                  now_ms: int) -> int:
        """Apply one `m.device_list_update` to a cached list; the new device_lists position."""

        async def txn_fn(txn: Transaction) -> int:
            if deleted:
                await txn.delete("remote_devices", {"user_id": user_id, "device_id": device.device_id})
            else:
                await txn.upsert("remote_devices", {"user_id": user_id, "device_id": device.device_id},
                                 {"display_name": device.display_name,
                                  "key_json": None if device.keys is None else encode_str(device.keys)})
            await txn.upsert("remote_device_lists", {"user_id": user_id},
                             {"stream_id": stream_id, "updated_ts": now_ms})
            return await bump_device_lists(txn, [(user_id, device.device_id)])

        return await self.db.run_interaction("apply_remote_device_update", txn_fn, isolation="read_committed")

    async def set_cross_signing_keys(self, user_id: str, keys: Mapping[str, dict[str, Any]]) -> int:
        """Store a cached user's new cross-signing keys (`m.signing_key_update`); the new position."""

        async def txn_fn(txn: Transaction) -> int:
            await _replace_cross_signing(txn, user_id, keys)
            return await bump_device_lists(txn, [(user_id, NO_DEVICE)])

        return await self.db.run_interaction("set_remote_cross_signing_keys", txn_fn, isolation="read_committed")

    async def forget(self, user_id: str) -> bool:
        """Drop a user's cached list (no local user shares a room with them any more); whether one was cached."""

        async def txn_fn(txn: Transaction) -> bool:
            await txn.delete("remote_devices", {"user_id": user_id})
            await txn.delete("remote_cross_signing_keys", {"user_id": user_id})
            return await txn.delete("remote_device_lists", {"user_id": user_id}) > 0

        return await self.db.run_interaction("forget_remote_device_list", txn_fn)
