"""Managing users as a server admin: Synapse's user admin API and the spec's lock/suspend endpoints."""

from __future__ import annotations

import logging
from typing import Any

from homeserver.accounts.access_tokens import AuthService
from homeserver.accounts.account_data import AccountDataService
from homeserver.accounts.account_management import AccountService
from homeserver.accounts.devices import DeviceService, parse_device_ids, parse_display_name
from homeserver.accounts.passwords import PasswordHasher
from homeserver.accounts.profiles import ProfileService
from homeserver.accounts.registration import MAX_PASSWORD_LENGTH, RegistrationService
from homeserver.accounts.sessions import SessionService
from homeserver.accounts.token_values import hash_token, new_token
from homeserver.admin.common import (
    check_local_user_id,
    existing_local_user,
    not_found,
    optional_bool,
    optional_int,
    optional_str,
    page,
)
from homeserver.admin.moderation import Moderation
from homeserver.clock import Clock
from homeserver.config import RateLimit
from homeserver.errors import MatrixError, bad_json, forbidden, invalid_param, missing_param
from homeserver.identifiers import check_new_localpart, parse_user_id
from homeserver.push.pushers import pusher_json
from homeserver.ratelimit import RateLimiter
from homeserver.requester import Requester
from storage.stores.accounts import AccountStore
from storage.stores.admin import (
    AdminStore,
    AdminUserRow,
    ExternalIdInUseError,
    ThreepidInUseError,
    UserFilter,
)
from storage.stores.consent import ConsentStore
from storage.stores.devices import DeviceRow
from storage.stores.events import EventStore
from storage.stores.pushers import PusherStore
from storage.stores.users import UserExistsError

logger = logging.getLogger(__name__)

USER_TYPES = ("bot", "support")
MESSAGE_ACTION = "message"


class AdminUserService:
    def __init__(self, server_name: str, accounts: AccountStore, admin_store: AdminStore, auth: AuthService,
                 account_service: AccountService, devices: DeviceService, sessions: SessionService,
                 registration: RegistrationService, profiles: ProfileService, passwords: PasswordHasher,
                 events: EventStore, pushers: PusherStore, account_data: AccountDataService,
                 ratelimiter: RateLimiter, moderation: Moderation, clock: Clock, *,
                 consent: ConsentStore | None = None):
        self._server_name = server_name
        self._consent = consent
        self._accounts = accounts
        self._store = admin_store
        self._auth = auth
        self._account_service = account_service
        self._devices = devices
        self._sessions = sessions
        self._registration = registration
        self._profiles = profiles
        self._passwords = passwords
        self._events = events
        self._pushers = pushers
        self._account_data = account_data
        self._ratelimiter = ratelimiter
        self._clock = clock
        self._moderation = moderation

    async def start(self) -> None:
        """Apply the stored rate-limit overrides to the rate limiter."""
        for user_id, (per_second, burst) in (await self._store.get_all_ratelimit_overrides()).items():
            self._apply_ratelimit(user_id, per_second, burst)

    async def stop(self) -> None:
        return None

    def _apply_ratelimit(self, user_id: str, per_second: int, burst: int) -> None:
        # As in Synapse, an override of 0 messages per second means no limit at all.
        limit = RateLimit(float(per_second), max(burst, 1)) if per_second > 0 else None
        self._ratelimiter.set_override(MESSAGE_ACTION, user_id, limit)

    async def require_admin(self, requester: Requester) -> None:
        """403 `M_FORBIDDEN` unless the requester is a server admin."""
        if not await self._auth.is_server_admin(requester.user_id):
            raise forbidden("You are not a server admin")

    # --- listing and reading -----------------------------------------------------------------
    async def list_users(self, user_filter: UserFilter, *, order_by: str, backwards: bool, offset: int,
                         limit: int) -> dict[str, Any]:
        """`GET /v2/users` and `/v3/users`: a page of users with `total` and `next_token`."""
        users, total = await self._store.list_users(user_filter, order_by=order_by, backwards=backwards,
                                                    offset=offset, limit=limit)
        return page([_listed_user(u) for u in users], total, offset, limit, "users")

    async def get_user(self, user_id: str) -> dict[str, Any]:
        """`GET /v2/users/{userId}`: the user's details; 404 if unknown."""
        check_local_user_id(user_id, self._server_name)
        details = await self._user_details(user_id)
        if details is None:
            raise not_found("User not found")
        return details

    async def _user_details(self, user_id: str) -> dict[str, Any] | None:
        user = await self._store.get_user_admin_view(user_id)
        if user is None:
            return None
        consent = await self._consent.get_user_consent(user_id) if self._consent is not None else None
        return {
            "name": user_id,
            "admin": user.admin,
            "deactivated": user.deactivated,
            "locked": user.locked,
            "shadow_banned": user.shadow_banned,
            # Synapse shows this one in seconds (the list shows milliseconds).
            "creation_ts": user.creation_ts // 1000,
            "appservice_id": user.appservice_id,
            "consent_server_notice_sent": None,
            "consent_version": consent.version if consent else None,
            "consent_ts": consent.ts if consent else None,
            "user_type": user.user_type,
            "is_guest": user.is_guest,
            "suspended": user.suspended,
            "displayname": user.displayname,
            "avatar_url": user.avatar_url,
            "threepids": [{"medium": t.medium, "address": t.address, "validated_at": t.validated_at,
                           "added_at": t.added_at} for t in await self._store.get_threepids(user_id)],
            "external_ids": [{"auth_provider": e.auth_provider, "external_id": e.external_id}
                             for e in await self._store.get_external_ids(user_id)],
            "erased": user.erased,
            "last_seen_ts": user.last_seen_ts,
        }

    # --- creating and modifying --------------------------------------------------------------
    async def put_user(self, requester: Requester, user_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """`PUT /v2/users/{userId}`: create the user (201) or change what the body names (200)."""
        check_local_user_id(user_id, self._server_name)
        fields = _parse_user_body(body)
        existing = await self._accounts.get_user(user_id)
        if existing is None:
            await self._create_user(user_id, fields)
            status = 201
        else:
            await self._modify_user(requester, user_id, existing.admin, existing.deactivated, body, fields)
            status = 200
        details = await self._user_details(user_id)
        assert details is not None
        return status, details

    async def _create_user(self, user_id: str, fields: dict[str, Any]) -> None:
        localpart = parse_user_id(user_id)[0]
        check_new_localpart(localpart, self._server_name)
        password_hash = await self._passwords.hash(fields["password"]) if fields.get("password") else None
        try:
            await self._accounts.create_user(user_id, password_hash, created_ts=self._clock.time_ms(),
                                             admin=bool(fields.get("admin")), user_type=fields.get("user_type"),
                                             displayname=fields.get("displayname"))
        except UserExistsError:
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken") from None
        await self._set_identifiers(user_id, fields)
        if isinstance(fields.get("avatar_url"), str):
            await self._profiles.set_field(user_id, user_id, "avatar_url", fields["avatar_url"])
        if fields.get("locked"):
            await self._store.set_user_flag(user_id, "locked", True)

    async def _modify_user(self, requester: Requester, user_id: str, was_admin: bool, was_deactivated: bool,
                           body: dict[str, Any], fields: dict[str, Any]) -> None:
        if "admin" in body and fields["admin"] != was_admin:
            if user_id == requester.user_id and not fields["admin"]:
                raise invalid_param("admin: you may not demote yourself")
        await self._set_identifiers(user_id, fields)
        for key in ("displayname", "avatar_url"):
            if key in body:
                # The admin acts for the user: the profile service checks "own profile" only.
                if body[key] is None:
                    await self._profiles.delete_field(user_id, user_id, key)
                else:
                    await self._profiles.set_field(user_id, user_id, key, body[key])
        if "admin" in body and fields["admin"] != was_admin:
            await self._accounts.set_admin(user_id, fields["admin"])
        if fields.get("password") is not None:
            await self.set_password(user_id, fields["password"], logout_devices=fields["logout_devices"])
        if "deactivated" in body:
            if fields["deactivated"] and not was_deactivated:
                await self._account_service.deactivate_account(user_id, erase=False)
            elif not fields["deactivated"] and was_deactivated:
                if fields.get("password") is None and not await self._has_password(user_id):
                    raise missing_param("password: required to reactivate a user without one")
                await self._store.reactivate_user(user_id)
                self._auth.invalidate_user(user_id)
        if "locked" in body:
            await self._store.set_user_flag(user_id, "locked", fields["locked"])
            self._auth.invalidate_user(user_id)
        if "user_type" in body:
            await self._store.set_user_type(user_id, fields["user_type"])

    async def _has_password(self, user_id: str) -> bool:
        user = await self._accounts.get_user(user_id)
        return bool(user and user.password_hash)

    async def _set_identifiers(self, user_id: str, fields: dict[str, Any]) -> None:
        if fields.get("threepids") is not None:
            try:
                await self._store.replace_threepids(user_id, fields["threepids"], self._clock.time_ms())
            except ThreepidInUseError as e:
                raise MatrixError(409, "M_THREEPID_IN_USE", f"threepids: {e} belongs to another user") from None
        if fields.get("external_ids") is not None:
            try:
                await self._store.replace_external_ids(user_id, fields["external_ids"])
            except ExternalIdInUseError as e:
                raise MatrixError(409, "M_UNKNOWN", f"external_ids: {e} is already in use") from None

    # --- passwords, deactivation, flags --------------------------------------------------------
    async def set_password(self, user_id: str, new_password: str, *, logout_devices: bool) -> None:
        """Set a user's password (`POST /v1/reset_password`); by default every session ends."""
        await existing_local_user(self._accounts, self._server_name, user_id)
        await self._accounts.set_password_hash(user_id, await self._passwords.hash(new_password))
        if logout_devices:
            await self._sessions.end_all_sessions(user_id)

    async def reset_password(self, user_id: str, body: dict[str, Any]) -> None:
        """`POST /v1/reset_password/{userId}`: `new_password` required, `logout_devices` optional."""
        parse_user_id(user_id, "user_id")
        if "new_password" not in body:
            raise missing_param("new_password: required")
        password = body["new_password"]
        if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD_LENGTH:
            raise invalid_param(f"new_password: must be a string of 1-{MAX_PASSWORD_LENGTH} characters")
        logout = optional_bool(body, "logout_devices")
        await self.set_password(user_id, password, logout_devices=logout is not False)

    async def deactivate(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /v1/deactivate/{userId}`: the same deactivation as the user's own, `erase` optional."""
        await existing_local_user(self._accounts, self._server_name, user_id)
        erase = optional_bool(body, "erase")
        await self._account_service.deactivate_account(user_id, erase=bool(erase))
        return {"id_server_unbind_result": "no-support"}

    async def set_suspended(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """`PUT /v1/suspend/{userId}`: `{"suspend": bool}`."""
        await existing_local_user(self._accounts, self._server_name, user_id)
        if "suspend" not in body:
            raise missing_param("suspend: required")
        suspend = optional_bool(body, "suspend")
        await self._set_suspended(user_id, bool(suspend))
        return {f"user_{user_id}_suspended": bool(suspend)}

    async def _set_suspended(self, user_id: str, suspended: bool) -> None:
        await self._moderation.set_suspended(user_id, suspended)

    async def set_shadow_banned(self, user_id: str, banned: bool) -> None:
        """`POST`/`DELETE /v1/users/{userId}/shadow_ban`."""
        await existing_local_user(self._accounts, self._server_name, user_id)
        await self._moderation.set_shadow_banned(user_id, banned)

    async def get_moderation_flag(self, flag: str, user_id: str) -> dict[str, Any]:
        """`GET /admin/lock|suspend/{userId}` (spec): `{"locked"|"suspended": bool}`."""
        user = await self._moderation_target(user_id)
        return {flag: bool(getattr(user, flag))}

    async def set_moderation_flag(self, requester: Requester, flag: str, user_id: str,
                                  body: dict[str, Any]) -> dict[str, Any]:
        """`PUT /admin/lock|suspend/{userId}` (spec): set the flag; other admins are off limits."""
        if flag not in body:
            raise missing_param(f"{flag}: required")
        value = optional_bool(body, flag)
        user = await self._moderation_target(user_id)
        if user.admin and user_id != requester.user_id:
            raise forbidden("userId: the target user is a server administrator")
        if flag == "suspended":
            await self._set_suspended(user_id, bool(value))
        else:
            await self._store.set_user_flag(user_id, flag, bool(value))
        self._auth.invalidate_user(user_id)
        return {flag: bool(value)}

    async def _moderation_target(self, user_id: str) -> AdminUserRow:
        _, server = parse_user_id(user_id, "userId")
        if server != self._server_name:
            raise invalid_param("userId: user does not belong to the local server")
        user = await self._store.get_user_admin_view(user_id)
        if user is None or user.deactivated:
            raise not_found("User not found")
        return user

    # --- devices ----------------------------------------------------------------------------
    async def list_devices(self, user_id: str) -> dict[str, Any]:
        await existing_local_user(self._accounts, self._server_name, user_id)
        devices = [_admin_device(user_id, row) for row in await self._accounts.get_devices(user_id)]
        return {"devices": devices, "total": len(devices)}

    async def get_device(self, user_id: str, device_id: str) -> dict[str, Any]:
        await existing_local_user(self._accounts, self._server_name, user_id)
        row = await self._accounts.get_device(user_id, device_id)
        if row is None:
            raise not_found("No device found")
        return _admin_device(user_id, row)

    async def create_device(self, user_id: str, body: dict[str, Any]) -> None:
        """`POST /v2/users/{userId}/devices`: register a device ID (no tokens), as Synapse does."""
        await existing_local_user(self._accounts, self._server_name, user_id)
        device_id = body.get("device_id")
        if not device_id:
            raise missing_param("device_id: required")
        if not isinstance(device_id, str) or len(device_id) > 255:
            raise invalid_param("device_id: must be a string of at most 255 characters")
        await self._accounts.ensure_device(user_id, device_id, None, self._clock.time_ms())

    async def update_device(self, user_id: str, device_id: str, body: dict[str, Any]) -> None:
        await existing_local_user(self._accounts, self._server_name, user_id)
        await self._devices.rename_device(user_id, device_id, parse_display_name(body))

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Delete devices and their tokens; unknown IDs are ignored."""
        await existing_local_user(self._accounts, self._server_name, user_id)
        await self._devices.delete_devices(user_id, device_ids)

    async def delete_devices_body(self, user_id: str, body: dict[str, Any]) -> None:
        await self.delete_devices(user_id, parse_device_ids(body))

    # --- what a user has ---------------------------------------------------------------------
    async def joined_rooms(self, user_id: str) -> dict[str, Any]:
        """`GET /v1/users/{userId}/joined_rooms`."""
        parse_user_id(user_id, "user_id")
        rooms = sorted(await self._events.get_rooms_for_user(user_id, ("join",)))
        return {"joined_rooms": rooms, "total": len(rooms)}

    async def memberships(self, user_id: str) -> dict[str, Any]:
        """`GET /v1/users/{userId}/memberships`: room ID -> current membership."""
        parse_user_id(user_id, "user_id")
        rooms = await self._events.get_rooms_for_user(user_id, ("join", "invite", "leave", "ban", "knock"))
        return {"memberships": rooms}

    async def pushers(self, user_id: str) -> dict[str, Any]:
        await existing_local_user(self._accounts, self._server_name, user_id)
        pushers = []
        for stored in await self._pushers.get_for_user(user_id):
            body = pusher_json(stored)
            body["profile_tag"] = stored.profile_tag
            pushers.append(body)
        return {"pushers": pushers, "total": len(pushers)}

    async def account_data(self, user_id: str) -> dict[str, Any]:
        await existing_local_user(self._accounts, self._server_name, user_id)
        changes = await self._account_data.get_changes(user_id, 0)
        return {"account_data": {"global": changes.global_data, "rooms": changes.room_data}}

    # --- logging in as a user ------------------------------------------------------------------
    async def login_as(self, requester: Requester, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /v1/users/{userId}/login`: a device-less token acting as the user, owned by the admin."""
        await existing_local_user(self._accounts, self._server_name, user_id)
        valid_until_ms = optional_int(body, "valid_until_ms", minimum=None)
        if user_id == requester.user_id:
            raise invalid_param("user_id: cannot use the admin API to log in as yourself")
        token = new_token("syt")
        await self._accounts.add_access_token(hash_token(token), requester.user_id, None,
                                              created_ts=self._clock.time_ms(), valid_until_ms=valid_until_ms,
                                              puppets_user_id=user_id)
        return {"access_token": token}

    # --- names ---------------------------------------------------------------------------------
    async def username_available(self, username: str | None) -> dict[str, Any]:
        """`GET /v1/username_available?username=`: true, or 400 M_USER_IN_USE / M_INVALID_USERNAME."""
        if not username:
            raise missing_param("username: required")
        await self._registration.check_username_available(username.lower())
        return {"available": True}

    # --- rate-limit overrides ----------------------------------------------------------------
    async def get_ratelimit(self, user_id: str) -> dict[str, Any]:
        await existing_local_user(self._accounts, self._server_name, user_id)
        override = await self._store.get_ratelimit_override(user_id)
        if override is None:
            return {}
        return {"messages_per_second": override[0], "burst_count": override[1]}

    async def set_ratelimit(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        await existing_local_user(self._accounts, self._server_name, user_id)
        per_second = optional_int(body, "messages_per_second")
        burst = optional_int(body, "burst_count")
        await self._store.set_ratelimit_override(user_id, per_second or 0, burst or 0)
        self._apply_ratelimit(user_id, per_second or 0, burst or 0)
        return await self.get_ratelimit(user_id)

    async def delete_ratelimit(self, user_id: str) -> None:
        await existing_local_user(self._accounts, self._server_name, user_id)
        await self._store.delete_ratelimit_override(user_id)
        self._ratelimiter.clear_override(MESSAGE_ACTION, user_id)

    async def get_admin_flag(self, user_id: str) -> dict[str, Any]:
        """`GET /v1/users/{userId}/admin`."""
        user = await existing_local_user(self._accounts, self._server_name, user_id)
        return {"admin": user.admin}

    async def set_admin_flag(self, requester: Requester, user_id: str, body: dict[str, Any]) -> None:
        """`PUT /v1/users/{userId}/admin`: `{"admin": bool}`; nobody demotes themselves."""
        await existing_local_user(self._accounts, self._server_name, user_id)
        if "admin" not in body:
            raise missing_param("admin: required")
        admin = optional_bool(body, "admin")
        if user_id == requester.user_id and not admin:
            raise invalid_param("admin: you may not demote yourself")
        await self._accounts.set_admin(user_id, bool(admin))

    async def sent_invite_count(self, user_id: str, from_ts: int) -> dict[str, Any]:
        parse_user_id(user_id, "user_id")
        return {"invite_count": await self._store.count_sent_invites(user_id, from_ts)}

    async def cumulative_joined_room_count(self, user_id: str, from_ts: int) -> dict[str, Any]:
        parse_user_id(user_id, "user_id")
        return {"cumulative_joined_room_count": await self._store.count_rooms_joined_since(user_id, from_ts)}

    # --- lookups by identifier ------------------------------------------------------------
    async def user_by_external_id(self, provider: str, external_id: str) -> dict[str, Any]:
        user_id = await self._store.get_user_by_external_id(provider, external_id)
        if user_id is None:
            raise not_found("User not found")
        return {"user_id": user_id}

    async def user_by_threepid(self, medium: str, address: str) -> dict[str, Any]:
        user_id = await self._store.get_user_by_threepid(medium, address)
        if user_id is None:
            raise not_found("User not found")
        return {"user_id": user_id}


def _listed_user(user: AdminUserRow) -> dict[str, Any]:
    return {
        "name": user.user_id, "user_type": user.user_type, "is_guest": user.is_guest, "admin": user.admin,
        "deactivated": user.deactivated, "shadow_banned": user.shadow_banned,
        "displayname": user.displayname, "avatar_url": user.avatar_url, "creation_ts": user.creation_ts,
        "erased": user.erased, "last_seen_ts": user.last_seen_ts, "locked": user.locked,
    }


def _admin_device(user_id: str, row: DeviceRow) -> dict[str, Any]:
    return {
        "device_id": row.device_id, "display_name": row.display_name, "last_seen_ip": row.last_seen_ip,
        "last_seen_ts": row.last_seen_ts, "last_seen_user_agent": row.last_seen_user_agent,
        "user_id": user_id,
    }


def _parse_user_body(body: dict[str, Any]) -> dict[str, Any]:
    """Validate a `PUT /v2/users/{userId}` body, naming the first bad field."""
    fields: dict[str, Any] = {}
    password = body.get("password")
    if password is not None and (not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH):
        raise invalid_param(f"password: must be a string of at most {MAX_PASSWORD_LENGTH} "
                                                  "characters")
    fields["password"] = password or None
    for name in ("admin", "deactivated", "locked", "logout_devices"):
        fields[name] = optional_bool(body, name)
    if fields["logout_devices"] is None:
        fields["logout_devices"] = True
    if fields["deactivated"] and fields["locked"]:
        raise invalid_param("locked: a user cannot be both deactivated and locked")
    if "displayname" in body and body["displayname"] is not None:
        fields["displayname"] = optional_str(body, "displayname", 256)
    if "avatar_url" in body and body["avatar_url"] is not None:
        avatar = optional_str(body, "avatar_url", 1024)
        if avatar and not avatar.startswith("mxc://"):
            raise invalid_param("avatar_url: must be an mxc:// URI")
        fields["avatar_url"] = avatar
    user_type = body.get("user_type")
    if user_type is not None and user_type not in USER_TYPES:
        raise invalid_param(f"user_type: must be one of {', '.join(USER_TYPES)} or null")
    fields["user_type"] = user_type
    threepids = body.get("threepids")
    if threepids is not None:
        if not isinstance(threepids, list):
            raise bad_json("threepids: must be a list")
        parsed: set[tuple[str, str]] = set()
        for i, item in enumerate(threepids):
            if not isinstance(item, dict):
                raise bad_json(f"threepids[{i}]: must be an object")
            for key in ("medium", "address"):
                if key not in item:
                    raise missing_param(f"threepids[{i}].{key}: required")
                if not isinstance(item[key], str) or not item[key]:
                    raise bad_json(f"threepids[{i}].{key}: must be a non-empty string")
            medium, address = item["medium"], item["address"]
            # Synapse stores e-mail addresses in lower case, so lookups match however they are typed.
            parsed.add((medium, address.lower() if medium == "email" else address))
        fields["threepids"] = parsed
    external_ids = body.get("external_ids")
    if external_ids is not None:
        if not isinstance(external_ids, list):
            raise bad_json("external_ids: must be a list")
        pairs: list[tuple[str, str]] = []
        for i, item in enumerate(external_ids):
            if not isinstance(item, dict):
                raise bad_json(f"external_ids[{i}]: must be an object")
            for key in ("auth_provider", "external_id"):
                if key not in item:
                    raise missing_param(f"external_ids[{i}].{key}: required")
                if not isinstance(item[key], str) or not item[key]:
                    raise bad_json(f"external_ids[{i}].{key}: must be a non-empty string")
            pairs.append((item["auth_provider"], item["external_id"]))
        fields["external_ids"] = pairs
    return fields
