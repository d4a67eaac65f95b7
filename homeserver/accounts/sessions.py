"""Login sessions: a device plus its access token (and refresh token when asked for).

Shared by registration, every login type, and shared-secret admin registration, so that
tokens are made, stored and expired in exactly one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.accounts.access_tokens import AuthService
from homeserver.accounts.token_values import hash_token, new_device_id, new_token
from homeserver.clock import Clock
from homeserver.errors import MatrixError, invalid_param
from homeserver.streams.bus import StreamBus
from homeserver.streams.updates import DeviceCreated
from storage.stores.accounts import AccountStore

if TYPE_CHECKING:  # devices.py imports this module's limits
    from homeserver.accounts.devices import DeviceService

MAX_DEVICE_ID_LENGTH = 255
MAX_DISPLAY_NAME_LENGTH = 512


class SessionService:
    def __init__(self, store: AccountStore, auth: AuthService, devices: DeviceService, bus: StreamBus, clock: Clock, *,
                 refreshable_access_token_lifetime_ms: int | None, refresh_token_lifetime_ms: int | None,
                 login_token_lifetime_ms: int):
        self._store = store
        self._auth = auth
        # Devices are deleted (with their tokens, and announced) only by the device service.
        self._devices = devices
        self._clock = clock
        self._access_lifetime_ms = refreshable_access_token_lifetime_ms
        self._refresh_lifetime_ms = refresh_token_lifetime_ms
        self.login_token_lifetime_ms = login_token_lifetime_ms
        self._bus = bus

    async def start_session(self, user_id: str, *, device_id: str | None = None,
                            display_name: str | None = None, want_refresh_token: bool = False) -> dict[str, Any]:
        """Create (or reuse) the device and issue tokens; returns the login response fields."""
        if device_id is not None:
            if not isinstance(device_id, str) or not device_id or len(device_id) > MAX_DEVICE_ID_LENGTH:
                raise invalid_param(f"device_id: must be a string of 1-{MAX_DEVICE_ID_LENGTH} characters")
        else:
            device_id = new_device_id()
        if display_name is not None and (not isinstance(display_name, str) or len(display_name) > MAX_DISPLAY_NAME_LENGTH):
            raise invalid_param(f"initial_device_display_name: must be a string of at most {MAX_DISPLAY_NAME_LENGTH} characters")
        now = self._clock.time_ms()
        if await self._store.ensure_device(user_id, device_id, display_name, now):
            await self._bus.publish(DeviceCreated(user_id, device_id))
        response: dict[str, Any] = {"user_id": user_id, "device_id": device_id}
        refresh_token_id = None
        valid_until_ms = None
        if want_refresh_token and self._access_lifetime_ms is not None:
            refresh_token = new_token("syr")
            expiry = now + self._refresh_lifetime_ms if self._refresh_lifetime_ms else None
            refresh_token_id = await self._store.add_refresh_token(hash_token(refresh_token), user_id, device_id,
                                                                   created_ts=now, expiry_ts=expiry)
            valid_until_ms = now + self._access_lifetime_ms
            response["refresh_token"] = refresh_token
            response["expires_in_ms"] = self._access_lifetime_ms
        access_token = new_token("syt")
        await self._store.add_access_token(hash_token(access_token), user_id, device_id, created_ts=now,
                                           valid_until_ms=valid_until_ms, refresh_token_id=refresh_token_id)
        response["access_token"] = access_token
        return response

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        """Exchange a refresh token for a new access token and a new refresh token."""
        row = await self._store.get_refresh_token(hash_token(refresh_token))
        now = self._clock.time_ms()
        if row is None or row.next_token_id is not None:
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown refresh token", soft_logout=False)
        if row.expiry_ts is not None and row.expiry_ts <= now:
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Refresh token has expired", soft_logout=False)
        user_id, device_id = row.user_id, row.device_id
        new_refresh = new_token("syr")
        expiry = now + self._refresh_lifetime_ms if self._refresh_lifetime_ms else None
        new_id = await self._store.add_refresh_token(hash_token(new_refresh), user_id, device_id,
                                                     created_ts=now, expiry_ts=expiry)
        old_hashes = await self._store.delete_access_tokens(user_id, device_id=device_id)
        self._auth.invalidate_token_hashes(old_hashes)
        await self._store.replace_refresh_token(row.id, new_id)
        lifetime = self._access_lifetime_ms or 300_000
        access_token = new_token("syt")
        await self._store.add_access_token(hash_token(access_token), user_id, device_id, created_ts=now,
                                           valid_until_ms=now + lifetime, refresh_token_id=new_id)
        return {"access_token": access_token, "refresh_token": new_refresh, "expires_in_ms": lifetime}

    async def end_session(self, user_id: str, device_id: str | None, token_id: int | None) -> None:
        """Log out one access token; its device (and the device's other tokens) go with it."""
        if device_id is None and token_id is None:
            return  # an appservice's as_token without a masqueraded device: nothing to end
        if device_id is not None:
            await self._devices.delete_devices(user_id, [device_id])
            return
        self._auth.invalidate_token_hashes(await self._store.delete_access_tokens(user_id, token_id=token_id))

    async def end_all_sessions(self, user_id: str) -> None:
        devices = await self._store.get_devices(user_id)
        await self._devices.delete_devices(user_id, [d.device_id for d in devices])
        hashes = await self._store.delete_access_tokens(user_id)
        await self._store.delete_refresh_tokens(user_id)
        self._auth.invalidate_token_hashes(hashes)

    async def create_login_token(self, user_id: str, lifetime_ms: int | None = None) -> tuple[str, int]:
        """A one-time `m.login.token` for the user; returns (token, lifetime in ms)."""
        lifetime_ms = lifetime_ms or self.login_token_lifetime_ms
        token = new_token("sylt")
        await self._store.add_login_token(hash_token(token), user_id, self._clock.time_ms() + lifetime_ms)
        return token, lifetime_ms

    async def consume_login_token(self, token: str) -> str | None:
        return await self._store.consume_login_token(hash_token(token), self._clock.time_ms())
