"""Creating accounts: open registration with UIA, registration tokens, shared-secret admin registration."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from homeserver.accounts.access_tokens import AuthService
from homeserver.accounts.passwords import PasswordHasher
from homeserver.accounts.sessions import SessionService
from homeserver.accounts.uia import DUMMY, REGISTRATION_TOKEN, InteractiveAuthRequired, UserInteractiveAuth
from homeserver.clock import Clock
from homeserver.errors import MatrixError, forbidden, invalid_param, missing_param
from homeserver.identifiers import check_new_localpart
from homeserver.ratelimit import RateLimiter
from storage.stores.accounts import AccountStore
from storage.stores.uia_sessions import UiaSession
from storage.stores.users import UserExistsError

MAX_PASSWORD_LENGTH = 512
NONCE_LIFETIME_MS = 60_000


def _optional_str(body: dict[str, Any], key: str, max_length: int = 512) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise invalid_param(f"{key}: must be a string of at most {max_length} characters")
    return value


def _optional_bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise invalid_param(f"{key}: must be true or false")
    return value


class RegistrationService:
    def __init__(self, server_name: str, store: AccountStore, sessions: SessionService, uia: UserInteractiveAuth,
                 passwords: PasswordHasher, clock: Clock, *, enabled: bool, require_token: bool,
                 shared_secret: str | None, allow_guests: bool, auth: AuthService | None = None,
                 ratelimiter: RateLimiter | None = None,
                 user_id_checks: Sequence[Callable[[str], None]] = (),
                 on_session: Sequence[Callable[[str, str, str, str], Awaitable[None]]] = ()):
        self._server_name = server_name
        self._store = store
        self._sessions = sessions
        self._uia = uia
        self._passwords = passwords
        self._clock = clock
        self._enabled = enabled
        self._require_token = require_token
        self._shared_secret = shared_secret
        self._allow_guests = allow_guests
        self._auth = auth
        self._ratelimiter = ratelimiter
        self._nonces: dict[str, int] = {}
        # `check(user_id)` raises to refuse a name (application services' namespaces).
        self._user_id_checks = tuple(user_id_checks)
        # `callback(user_id, device_id, ip, user_agent)` after a registration that logged the new account
        # in (the spec's automatic login; not with `inhibit_login`): the login audit log.
        self._on_session = tuple(on_session)

    @property
    def flows(self) -> list[list[str]]:
        return [[REGISTRATION_TOKEN]] if self._require_token else [[DUMMY]]

    async def check_username_available(self, localpart: str, *, guest_user_id: str | None = None,
                                       registered_user_id: str | None = None) -> None:
        """Raise M_INVALID_USERNAME / M_USER_IN_USE, or return when the name can be registered.

        The name stays available to the guest upgrading to it (`guest_user_id`) and to the
        UIA session that already registered it (`registered_user_id`).
        """
        check_new_localpart(localpart, self._server_name)
        user_id = f"@{localpart}:{self._server_name}"
        if guest_user_id is None and localpart.isdigit():
            raise MatrixError(400, "M_INVALID_USERNAME", "username: numeric user IDs are reserved for guests")
        for check in self._user_id_checks:
            check(user_id)
        if user_id in (guest_user_id, registered_user_id):
            return
        if await self._store.find_user_case_insensitive(user_id) is not None:
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken")

    async def registration_token_valid(self, token: str) -> bool:
        return await self._store.registration_token_valid(token, self._clock.time_ms())

    # --- POST /register ----------------------------------------------------------------
    async def register(self, body: dict[str, Any], *, kind: str, uri: str, ip: str = "-",
                       user_agent: str = "") -> dict[str, Any]:
        """Run the whole `/register` request, UIA included; returns the response body."""
        if kind == "guest":
            return await self._register_guest(body, ip)
        if kind != "user":
            raise invalid_param("kind: must be 'user' or 'guest'")
        if not self._enabled:
            raise forbidden("Registration has been disabled")
        username = _optional_str(body, "username", 1024)
        password = _optional_str(body, "password", MAX_PASSWORD_LENGTH)
        _optional_str(body, "device_id", 255)
        _optional_str(body, "initial_device_display_name")
        _optional_bool(body, "inhibit_login")
        _optional_bool(body, "refresh_token")
        guest_user_id = await self._guest_being_upgraded(_optional_str(body, "guest_access_token", 1024))
        # A replayed session that already registered its user answers as the first completion did.
        auth = body.get("auth")
        session_hint = auth.get("session") if isinstance(auth, dict) else None
        registered_user_id = (await self._uia.get_server_value(session_hint, "registered_user_id")
                              if isinstance(session_hint, str) else None)
        if username is not None:
            username = username.lower()
            await self.check_username_available(username, guest_user_id=guest_user_id,
                                                registered_user_id=registered_user_id)

        # The password never enters the UIA session: only its hash, kept server-side.
        uia_body = {k: v for k, v in body.items() if k != "password"}
        password_hash = await self._passwords.hash(password) if password else None
        try:
            completed, params, session_id = await self._uia.check(uia_body, self.flows, uri=uri, method="POST")
        except InteractiveAuthRequired as challenge:
            if password_hash is not None:
                await self._uia.set_server_value(challenge.body["session"], "password_hash", password_hash)
            raise
        username = params.get("username")
        if password_hash is None:
            password_hash = await self._uia.get_server_value(session_id, "password_hash")
        user_id = await self._uia.get_server_value(session_id, "registered_user_id")
        if user_id is None:
            guest_user_id = await self._guest_being_upgraded(params.get("guest_access_token"))
            if username is not None:
                username = username.lower()
                await self.check_username_available(username, guest_user_id=guest_user_id)
                user_id = f"@{username}:{self._server_name}"
            elif guest_user_id is not None:
                user_id = guest_user_id
            else:
                user_id = await self._generate_user_id()
            if guest_user_id is not None and user_id != guest_user_id:
                raise forbidden("username: a guest may only upgrade to its own user ID")
            # Only a completed registration counts against the address's registration limit.
            if self._ratelimiter is not None:
                self._ratelimiter.check("registration", ip)
            if guest_user_id is not None:
                if not await self._store.upgrade_guest(user_id, password_hash):
                    raise MatrixError(400, "M_USER_IN_USE", "User ID already taken")
            else:
                try:
                    await self._store.create_user(user_id, password_hash, created_ts=self._clock.time_ms())
                except UserExistsError:
                    raise MatrixError(400, "M_USER_IN_USE", "User ID already taken") from None
            token = completed.get(REGISTRATION_TOKEN)
            if isinstance(token, str):
                await self._store.use_registration_token(token, self._clock.time_ms())
            await self._uia.set_server_value(session_id, "registered_user_id", user_id)

        if params.get("inhibit_login"):
            return {"user_id": user_id, "home_server": self._server_name}
        response = await self._sessions.start_session(
            user_id,
            device_id=params.get("device_id"),
            display_name=params.get("initial_device_display_name"),
            want_refresh_token=bool(params.get("refresh_token")),
        )
        response["home_server"] = self._server_name
        for callback in self._on_session:
            await callback(user_id, response["device_id"], ip, user_agent)
        return response

    async def _guest_being_upgraded(self, guest_access_token: Any) -> str | None:
        """The guest user whose access token came with the registration, or None without one."""
        if guest_access_token is None:
            return None
        if not isinstance(guest_access_token, str):
            raise invalid_param("guest_access_token: must be a string")
        try:
            requester = await self._auth.get_requester(guest_access_token, allow_guest=True)
        except MatrixError:
            requester = None
        if requester is None or not requester.is_guest:
            raise forbidden("guest_access_token: not the access token of a guest")
        return requester.user_id

    async def _register_guest(self, body: dict[str, Any], ip: str) -> dict[str, Any]:
        """`POST /register?kind=guest`: a numeric guest account, logged in, no UIA."""
        if not self._allow_guests:
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled")
        display_name = _optional_str(body, "initial_device_display_name")
        want_refresh = _optional_bool(body, "refresh_token")
        if self._ratelimiter is not None:
            self._ratelimiter.check("registration", ip)
        for _ in range(10):
            user_id = await self._generate_user_id()
            try:
                await self._store.create_user(user_id, None, created_ts=self._clock.time_ms(), is_guest=True)
                break
            except UserExistsError:
                continue
        else:
            raise MatrixError(500, "M_UNKNOWN", "Could not find a free guest user ID")
        # Guests choose no device ID (Synapse: "we have nowhere to store it").
        response = await self._sessions.start_session(user_id, display_name=display_name,
                                                      want_refresh_token=want_refresh)
        response["home_server"] = self._server_name
        return response

    async def _generate_user_id(self) -> str:
        for _ in range(10):
            candidate = f"@{secrets.randbelow(10**9):09d}:{self._server_name}"
            if await self._store.get_user(candidate) is None:
                return candidate
        raise MatrixError(500, "M_UNKNOWN", "Could not find a free user ID")

    async def check_registration_token_stage(self, auth: dict[str, Any], session: UiaSession) -> str:
        token = auth.get("token")
        if not isinstance(token, str) or not token:
            raise missing_param("auth.token: missing registration token")
        if not await self.registration_token_valid(token):
            raise MatrixError(401, "M_UNAUTHORIZED", "Invalid registration token")
        return token

    # --- shared-secret admin registration (Synapse's /_synapse/admin/v1/register) -------------
    def new_nonce(self) -> str:
        if not self._shared_secret:
            raise MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled")
        now = self._clock.time_ms()
        self._nonces = {n: ts for n, ts in self._nonces.items() if ts > now - NONCE_LIFETIME_MS}
        nonce = secrets.token_hex(32)
        self._nonces[nonce] = now
        return nonce

    async def register_with_shared_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self._shared_secret:
            raise MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled")
        nonce = body.get("nonce")
        if not isinstance(nonce, str):
            raise missing_param("nonce: must be a string")
        issued = self._nonces.pop(nonce, None)
        if issued is None or issued <= self._clock.time_ms() - NONCE_LIFETIME_MS:
            raise MatrixError(400, "M_UNKNOWN", "nonce: unrecognised or expired nonce")
        username = body.get("username")
        if not isinstance(username, str) or not username or len(username) > 255:
            raise invalid_param("username: must be a non-empty string")
        password = body.get("password")
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
            raise invalid_param("password: must be a string")
        admin = body.get("admin", False)
        if not isinstance(admin, bool):
            raise invalid_param("admin: must be true or false")
        user_type = _optional_str(body, "user_type", 64)
        displayname = _optional_str(body, "displayname", 256)
        mac_given = body.get("mac")
        if not isinstance(mac_given, str):
            raise missing_param("mac: must be a string")
        mac = hmac.new(self._shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(nonce.encode() + b"\x00" + username.encode() + b"\x00" + password.encode() + b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        if user_type is not None:
            mac.update(b"\x00" + user_type.encode())
        if not hmac.compare_digest(mac.hexdigest(), mac_given):
            raise forbidden("HMAC incorrect")
        localpart = username.lower()
        check_new_localpart(localpart, self._server_name)
        user_id = f"@{localpart}:{self._server_name}"
        password_hash = await self._passwords.hash(password)
        try:
            await self._store.create_user(user_id, password_hash, created_ts=self._clock.time_ms(), admin=admin,
                                          user_type=user_type, displayname=displayname)
        except UserExistsError:
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken") from None
        response = await self._sessions.start_session(user_id)
        response["home_server"] = self._server_name
        return response
