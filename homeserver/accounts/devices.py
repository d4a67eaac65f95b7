"""A user's devices: listing, renaming, deleting (behind UIA), and forgetting old sightings.

Deleting a device takes its access and refresh tokens with it; their hashes are dropped
from the token cache at once, so a deleted device's token stops working on the next request.
Last-seen IP addresses and user agents are personal data: an hourly task forgets those older
than `sessions.last_seen_max_age_days`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.accounts.access_tokens import AuthService
from homeserver.accounts.sessions import MAX_DISPLAY_NAME_LENGTH
from homeserver.accounts.uia import PASSWORD, UserInteractiveAuth
from homeserver.clock import Clock
from homeserver.errors import MatrixError, bad_json, forbidden, invalid_param, missing_param, not_found
from homeserver.periodic import prune_periodically
from homeserver.requester import Requester
from homeserver.streams.bus import StreamBus
from homeserver.streams.updates import DeviceCreated, DeviceRenamed, DevicesDeleted
from storage.stores.accounts import AccountStore
from storage.stores.devices import DeviceRow

DAY_MS = 24 * 3600 * 1000
PRUNE_INTERVAL_S = 3600.0
FIRST_PRUNE_DELAY_S = 60.0
PASSWORD_FLOWS = [[PASSWORD]]
MAX_DEVICES_PER_DELETE = 1000

# Columns a client may see. The user agent stays private (admin API only), as in Synapse.
_CLIENT_FIELDS = ("device_id", "display_name", "last_seen_ip", "last_seen_ts")


def device_for_client(row: DeviceRow) -> dict[str, Any]:
    """The spec's Device object, with null for what is not known.

    The spec would allow leaving unknown fields out, but matrix-nio's response schema
    requires `last_seen_ip` and friends to be present, and Synapse sends null.
    """
    return {key: getattr(row, key) for key in _CLIENT_FIELDS}


def parse_device_ids(body: dict[str, Any]) -> list[str]:
    """`devices` of a `/delete_devices` body: a list of strings, required."""
    if "devices" not in body:
        raise missing_param("devices: required")
    devices = body["devices"]
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise bad_json("devices: must be a list of device ID strings")
    if len(devices) > MAX_DEVICES_PER_DELETE:
        raise MatrixError(400, "M_TOO_LARGE", f"devices: at most {MAX_DEVICES_PER_DELETE} per request")
    return list(dict.fromkeys(devices))


def parse_display_name(body: dict[str, Any]) -> str | None:
    """`display_name` of a `PUT /devices/{id}` body; None (absent or null) leaves the name alone."""
    name = body.get("display_name")
    if name is None:
        return None
    if not isinstance(name, str):
        raise bad_json("display_name: must be a string")
    if len(name) > MAX_DISPLAY_NAME_LENGTH:
        raise MatrixError(400, "M_TOO_LARGE", f"display_name: longer than {MAX_DISPLAY_NAME_LENGTH} characters")
    return name


def check_password_stage_user(completed: dict[str, Any], user_id: str) -> None:
    """A completed password stage must have proven *this* user's password.

    The stage already checks the password against the requester, but a session ID is a
    bearer secret: this stops a session completed by one user being replayed by another.
    """
    if completed.get(PASSWORD) != user_id:
        raise forbidden("auth: the authentication session belongs to another user")


class DeviceService:
    def __init__(self, store: AccountStore, auth: AuthService, uia: UserInteractiveAuth, bus: StreamBus, clock: Clock, *,
                 last_seen_max_age_days: int):
        self._store = store
        self._auth = auth
        self._uia = uia
        self._clock = clock
        self._max_age_ms = last_seen_max_age_days * DAY_MS
        self._pruner: asyncio.Task[None] | None = None
        self._bus = bus

    # --- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        # A short first delay keeps start-up quick and still prunes servers that restart often.
        self._pruner = asyncio.create_task(prune_periodically(
            self.prune_last_seen, "last-seen entries older than the configured age", PRUNE_INTERVAL_S,
            first_delay_s=FIRST_PRUNE_DELAY_S))

    async def stop(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            self._pruner = None

    # --- reading and renaming --------------------------------------------------------
    async def list_devices(self, user_id: str) -> list[dict[str, Any]]:
        """The user's devices as the client API shows them."""
        return [device_for_client(row) for row in await self._store.get_devices(user_id)]

    async def get_device(self, user_id: str, device_id: str) -> dict[str, Any]:
        """One of the user's devices; 404 `M_NOT_FOUND` if they have no such device."""
        row = await self._store.get_device(user_id, device_id)
        if row is None:
            raise not_found("device_id: no such device")
        return device_for_client(row)

    async def upsert_device(self, user_id: str, device_id: str, display_name: str | None) -> bool:
        """Create the device or rename it (MSC4190, for application services); True when created."""
        if not device_id or len(device_id) > 255:
            raise invalid_param("device_id: must be 1-255 characters")
        if await self._store.ensure_device(user_id, device_id, display_name, self._clock.time_ms()):
            await self._bus.publish(DeviceCreated(user_id, device_id))
            return True
        if display_name is not None:
            await self._store.set_device_display_name(user_id, device_id, display_name)
            await self._bus.publish(DeviceRenamed(user_id, device_id))
        return False

    async def rename_device(self, user_id: str, device_id: str, display_name: str | None) -> None:
        """Set a device's display name (None keeps it); 404 if the user has no such device."""
        if await self._store.get_device(user_id, device_id) is None:
            raise not_found("device_id: no such device")
        if display_name is not None:
            await self._store.set_device_display_name(user_id, device_id, display_name)
            await self._bus.publish(DeviceRenamed(user_id, device_id))

    # --- deleting ----------------------------------------------------------------------
    async def delete_devices_with_auth(self, requester: Requester, body: dict[str, Any], device_ids: list[str],
                                       *, uri: str, method: str) -> None:
        """Run the password UIA for the requester, then delete the devices and their tokens.

        Unknown device IDs are ignored, as Synapse does: deleting is idempotent. Application
        services manage their users' devices without UIA (MSC4190).
        """
        if requester.app_service_id is not None:
            await self.delete_devices(requester.user_id, device_ids)
            return
        completed, _, session_id = await self._uia.check(body, PASSWORD_FLOWS, uri=uri, method=method,
                                                         for_user=requester.user_id)
        check_password_stage_user(completed, requester.user_id)
        await self.delete_devices(requester.user_id, device_ids)
        # A finished session must not authorise the same request again.
        await self._store.delete_uia_session(session_id)

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Delete devices with their tokens, and drop those tokens from the cache."""
        if not device_ids:
            return
        hashes = await self._store.delete_devices(user_id, device_ids)
        self._auth.invalidate_token_hashes(hashes)
        await self._bus.publish(DevicesDeleted(user_id, tuple(device_ids)))

    async def delete_other_devices(self, user_id: str, keep_device_id: str | None,
                                   keep_token_id: int | None) -> None:
        """Log out everywhere except one session (device and token): after a password change."""
        others = [d.device_id for d in await self._store.get_devices(user_id) if d.device_id != keep_device_id]
        await self.delete_devices(user_id, others)
        # Tokens without a device, or other tokens of the kept device, go too.
        hashes = await self._store.delete_access_tokens(user_id, except_token_id=keep_token_id)
        self._auth.invalidate_token_hashes(hashes)

    # --- forgetting old sightings --------------------------------------------------------
    async def prune_last_seen(self) -> int:
        """Forget last-seen IPs and user agents older than the configured age; returns user_ips rows removed."""
        cutoff = self._clock.time_ms() - self._max_age_ms
        # Sightings still buffered in memory must reach the database before the cut-off applies.
        await self._auth.flush_last_seen()
        return await self._store.prune_last_seen(cutoff)
