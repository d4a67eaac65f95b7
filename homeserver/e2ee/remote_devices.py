"""Device lists of users of other servers: a cache kept fresh by their servers' EDUs.

A remote user's list is cached once a local user shares a room with them and someone asks for
their keys (or their server tells us of a change). Their server then sends `m.device_list_update`
EDUs, each with a `stream_id` and the `prev_id`s it builds on: an update that builds on what we
have is applied; one that refers to something we never saw (a gap: a lost EDU, a restart) makes us
fetch the whole list again (`GET /user/devices/{userId}`, "resync"), as the spec asks. Every change
goes on our device_lists stream, so local users sharing a room see the user in /sync's and
/keys/changes' `changed`, and is published as `DeviceListChanged` (application services registered
for MSC3202 get the user in `device_lists.changed`, as Synapse sends remote users' changes). A list is forgotten when its user no longer shares a room with any local
user: no server keeps telling us about it then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from homeserver.clock import Clock
from homeserver.e2ee.signing import ED25519, has_valid_signature
from homeserver.errors import MatrixError
from homeserver.streams.bus import StreamBus
from homeserver.streams.notifier import Notifier
from homeserver.streams.updates import DeviceListChanged, RoomSharingChanged
from storage.stores.e2ee import E2eeKeyStore
from storage.stores.remote_devices import RemoteDevice, RemoteDeviceList, RemoteDeviceStore

logger = logging.getLogger(__name__)

# Cross-signing keys another server shares (a user-signing key stays with its owner's server).
SHARED_CROSS_SIGNING_TYPES = ("master", "self_signing")
# Resyncs run at once for the users of one /keys/query.
RESYNC_CONCURRENCY = 10


class RemoteKeyQueries(Protocol):
    """Asking other servers about their users' devices and keys (implemented over federation)."""

    async def fetch_device_list(self, user_id: str) -> RemoteDeviceList:
        """GET /user/devices/{userId}, checked; MatrixError when it fails."""
        ...

    async def query_keys(self, server: str, device_keys: dict[str, list[str]]) -> dict[str, Any]:
        """POST /user/keys/query: `device_keys`, `master_keys`, `self_signing_keys` of that server's users."""
        ...

    async def claim_keys(self, server: str, one_time_keys: dict[str, dict[str, str]]) -> dict[str, Any]:
        """POST /user/keys/claim: `one_time_keys` of that server's users' devices."""
        ...


@dataclass(frozen=True, slots=True)
class DeviceListUpdate:
    """A checked `m.device_list_update`."""

    user_id: str
    device_id: str
    stream_id: int
    prev_ids: tuple[int, ...]
    deleted: bool
    display_name: str | None
    keys: dict[str, Any] | None


def checked_device_keys(value: Any, user_id: str, device_id: str) -> dict[str, Any] | None:
    """`value` when it is the device's keys, self-signed by the device's ed25519 key; else None."""
    if not isinstance(value, dict) or value.get("user_id") != user_id or value.get("device_id") != device_id:
        return None
    keys = value.get("keys")
    if not isinstance(keys, dict):
        return None
    key_id = f"{ED25519}:{device_id}"
    public = keys.get(key_id)
    if not isinstance(public, str) or not has_valid_signature(value, user_id, key_id, public):
        return None
    return value


def checked_cross_signing_keys(value: dict[str, Any], user_id: str) -> dict[str, dict[str, Any]]:
    """The user's `master` and `self_signing` keys among `{key_type: key}` that are well formed and,
    for the self-signing key, signed by the master key among them."""
    out: dict[str, dict[str, Any]] = {}
    for key_type in SHARED_CROSS_SIGNING_TYPES:
        key = value.get(key_type)
        public = _cross_signing_public_key(key, user_id, key_type)
        if public is not None:
            out[key_type] = key  # type: ignore[assignment]
    master = out.get("master")
    if "self_signing" in out:
        master_public = _cross_signing_public_key(master, user_id, "master") if master else None
        if master_public is None or not has_valid_signature(out["self_signing"], user_id,
                                                            f"{ED25519}:{master_public}", master_public):
            del out["self_signing"]
    return out


def _cross_signing_public_key(key: Any, user_id: str, key_type: str) -> str | None:
    if not isinstance(key, dict) or key.get("user_id") != user_id:
        return None
    usage = key.get("usage")
    keys = key.get("keys")
    if not isinstance(usage, list) or key_type not in usage or not isinstance(keys, dict) or len(keys) != 1:
        return None
    ((key_id, public),) = keys.items()
    if not isinstance(public, str) or key_id != f"{ED25519}:{public}":
        return None
    return public


def server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


class RemoteDeviceLists:
    """The cache of remote users' device lists."""

    def __init__(self, server_name: str, store: RemoteDeviceStore, e2ee: E2eeKeyStore, notifier: Notifier,
                 clock: Clock, remote: RemoteKeyQueries | None, bus: StreamBus | None = None):
        self._server_name = server_name
        self._bus = bus
        self._store = store
        self._e2ee = e2ee
        self._notifier = notifier
        self._clock = clock
        # None: federation is off, and no remote list is ever fetched.
        self._remote = remote
        # user ID -> (its lock, how many hold or wait for it): one change of a user's list at a time.
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def _user_lock(self, user_id: str) -> AsyncIterator[None]:
        entry = self._locks.get(user_id)
        if entry is None:
            entry = self._locks[user_id] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[user_id]

    async def local_users_sharing_a_room(self, user_id: str) -> set[str]:
        return {u for u in await self._e2ee.get_users_sharing_a_room(user_id) if server_of(u) == self._server_name}

    async def _announce(self, user_id: str) -> None:
        self._notifier.notify_users(await self.local_users_sharing_a_room(user_id))
        if self._bus is not None:
            await self._bus.publish(DeviceListChanged(user_id))

    # --- EDUs ------------------------------------------------------------------------------------
    async def receive_device_update(self, update: DeviceListUpdate) -> None:
        """Apply an `m.device_list_update` that builds on our copy; resync the list on a gap."""
        async with self._user_lock(update.user_id):
            current = await self._store.get_stream_id(update.user_id)
            if current is None:
                # Not cached: fetched whole if someone of ours shares a room, else not our concern.
                if await self.local_users_sharing_a_room(update.user_id):
                    await self._resync(update.user_id)
                return
            if update.stream_id <= current:
                return  # already applied, or covered by a resync
            if not update.prev_ids or any(prev > current for prev in update.prev_ids):
                logger.info("device list of %s: update %d builds on %s, we are at %d; fetching it whole",
                            update.user_id, update.stream_id, list(update.prev_ids), current)
                await self._resync(update.user_id)
                return
            device = RemoteDevice(update.device_id, update.display_name, update.keys)
            await self._store.apply_device_update(update.user_id, update.stream_id, device, update.deleted,
                                                  self._clock.time_ms())
        await self._announce(update.user_id)

    async def receive_signing_key_update(self, user_id: str, keys: dict[str, dict[str, Any]]) -> None:
        """Store a cached user's new cross-signing keys (`m.signing_key_update`)."""
        async with self._user_lock(user_id):
            if await self._store.get_stream_id(user_id) is None:
                if await self.local_users_sharing_a_room(user_id):
                    await self._resync(user_id)
                return
            cached = (await self._store.get_device_lists([user_id]))[user_id].cross_signing
            # A lone self-signing key is checked against the master key we hold.
            checked = checked_cross_signing_keys({**cached, **keys}, user_id)
            changed = {t: k for t, k in checked.items() if t in keys and cached.get(t) != k}
            if not changed:
                return
            await self._store.set_cross_signing_keys(user_id, changed)
        await self._announce(user_id)

    async def _resync(self, user_id: str) -> bool:
        """Fetch the user's whole list from their server (caller holds the user's lock); whether it worked."""
        if self._remote is None:
            return False
        try:
            fetched = await self._remote.fetch_device_list(user_id)
        except MatrixError as e:
            logger.warning("could not fetch the device list of %s: %s", user_id, e.message)
            # What we had may be stale now: the next key query asks the server directly.
            if await self._store.forget(user_id):
                await self._announce(user_id)
            return False
        await self._store.replace_device_list(user_id, fetched.stream_id, fetched.devices, fetched.cross_signing,
                                              self._clock.time_ms())
        await self._announce(user_id)
        return True

    # --- reading ---------------------------------------------------------------------------------
    async def device_lists(self, user_ids: Sequence[str]) -> dict[str, RemoteDeviceList]:
        """Cached lists of these remote users, fetching those a local user shares a room with
        and that are not cached yet; users with neither are left out (ask their server)."""
        cached = await self._store.get_device_lists(user_ids)
        missing = [u for u in user_ids if u not in cached]
        if not missing or self._remote is None:
            return cached
        shared = [u for u in missing if await self.local_users_sharing_a_room(u)]
        limit = asyncio.Semaphore(RESYNC_CONCURRENCY)

        async def fetch(user_id: str) -> None:
            async with limit, self._user_lock(user_id):
                if await self._store.get_stream_id(user_id) is None:
                    await self._resync(user_id)

        await asyncio.gather(*(fetch(u) for u in shared))
        if shared:
            cached.update(await self._store.get_device_lists(shared))
        return cached

    # --- room sharing ----------------------------------------------------------------------------
    async def on_room_sharing_changed(self, update: RoomSharingChanged) -> None:
        """Forget the lists of remote users who, after a leave, share no room with a local user."""
        if update.joined:
            return
        if server_of(update.user_id) != self._server_name:
            candidates = {update.user_id}
        else:
            members = await self._e2ee.get_joined_members([update.room_id])
            candidates = {u for u in members if server_of(u) != self._server_name}
        for user_id in sorted(candidates):
            if await self._store.get_stream_id(user_id) is None:
                continue
            if not await self.local_users_sharing_a_room(user_id):
                await self._store.forget(user_id)
