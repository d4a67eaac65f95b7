"""Logging in: `m.login.password` and `m.login.token`, plus the password UIA stage."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from homeserver.accounts.devices import PASSWORD_FLOWS, check_password_stage_user
from homeserver.accounts.passwords import PasswordHasher
from homeserver.accounts.sessions import SessionService
from homeserver.accounts.uia import UserInteractiveAuth
from homeserver.errors import MatrixError, bad_json, forbidden
from homeserver.identifiers import is_valid_user_id
from homeserver.ratelimit import RateLimiter
from homeserver.requester import Requester
from storage.stores.accounts import AccountStore
from storage.stores.uia_sessions import UiaSession
from storage.stores.users import UserRow

LOGIN_FLOWS = [{"type": "m.login.password"}, {"type": "m.login.token"}]


LoginCallback = Callable[[str, str, str, str], Awaitable[None]]


class LoginService:
    def __init__(self, server_name: str, store: AccountStore, sessions: SessionService, passwords: PasswordHasher,
                 ratelimiter: RateLimiter, uia: UserInteractiveAuth, *,
                 login_via_existing_session: dict[str, Any] | None = None,
                 on_login: Sequence[LoginCallback] = ()):
        self._server_name = server_name
        existing = login_via_existing_session or {}
        self.get_token_enabled = bool(existing.get("enabled"))
        self._get_token_requires_uia = existing.get("require_ui_auth", True) is not False
        self._get_token_timeout_ms = int(existing.get("token_timeout_ms") or 300_000)
        self._uia = uia
        self._store = store
        self._sessions = sessions
        self._passwords = passwords
        self._ratelimiter = ratelimiter
        # `callback(user_id, device_id, ip, user_agent)` after each successful login (the audit log).
        self._on_login = tuple(on_login)

    def flows(self) -> list[dict[str, Any]]:
        return LOGIN_FLOWS

    async def login(self, body: dict[str, Any], *, ip: str, user_agent: str = "") -> dict[str, Any]:
        """Handle `POST /login`; returns the response body."""
        login_type = body.get("type")
        if not isinstance(login_type, str):
            raise bad_json("type: missing login type")
        self._ratelimiter.check("login", ip)
        if login_type == "m.login.password":
            user = await self._check_password_login(body)
        elif login_type == "m.login.token":
            token = body.get("token")
            if not isinstance(token, str):
                raise bad_json("token: must be a string")
            user_id = await self._sessions.consume_login_token(token)
            if user_id is None:
                raise forbidden("Invalid login token")
            user = await self._store.get_user(user_id)
            if user is None or user.deactivated:
                raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        else:
            raise MatrixError(400, "M_UNKNOWN", f"type: unknown login type {login_type!r}")
        refresh = body.get("refresh_token", False)
        if not isinstance(refresh, bool):
            raise bad_json("refresh_token: must be true or false")
        response = await self._sessions.start_session(
            user.user_id,
            device_id=body.get("device_id"),
            display_name=body.get("initial_device_display_name"),
            want_refresh_token=refresh,
        )
        response["home_server"] = self._server_name
        for callback in self._on_login:
            await callback(user.user_id, response["device_id"], ip, user_agent)
        return response

    async def issue_login_token(self, requester: Requester, body: dict[str, Any], *, uri: str) -> dict[str, Any]:
        """`POST /login/get_token`: after UIA (unless configured off), a one-time login token for a new device."""
        if self._get_token_requires_uia:
            completed, _, session_id = await self._uia.check(body, PASSWORD_FLOWS, uri=uri, method="POST",
                                                             for_user=requester.user_id)
            check_password_stage_user(completed, requester.user_id)
            await self._store.delete_uia_session(session_id)
        # Counted after UIA, so the 401 round does not use up the (one a minute) allowance.
        self._ratelimiter.check("login_token_request", requester.user_id.lower())
        token, lifetime_ms = await self._sessions.create_login_token(requester.user_id, self._get_token_timeout_ms)
        return {"login_token": token, "expires_in_ms": lifetime_ms}

    def _qualify(self, user: str) -> str:
        return user if user.startswith("@") else f"@{user}:{self._server_name}"

    def _requested_user_id(self, body: dict[str, Any], field_prefix: str = "") -> str:
        identifier = body.get("identifier")
        if identifier is None and "user" in body:
            identifier = {"type": "m.id.user", "user": body["user"]}  # the deprecated top-level form
        if not isinstance(identifier, dict):
            raise bad_json(f"{field_prefix}identifier: missing or not an object")
        id_type = identifier.get("type")
        if id_type == "m.id.user":
            user = identifier.get("user")
            if not isinstance(user, str) or not user:
                raise bad_json(f"{field_prefix}identifier.user: must be a non-empty string")
            return self._qualify(user)
        if id_type in ("m.id.thirdparty", "m.id.phone"):
            raise forbidden("No account is bound to that third-party identifier")
        raise MatrixError(400, "M_UNKNOWN", f"{field_prefix}identifier.type: unknown identifier type {id_type!r}")

    async def _check_password_login(self, body: dict[str, Any]) -> UserRow:
        user_id = self._requested_user_id(body)
        password = body.get("password")
        if not isinstance(password, str):
            raise bad_json("password: must be a string")
        self._ratelimiter.check("login_failures", user_id.lower(), update=False)
        user = await self.verify_password(user_id, password)
        if user is None:
            self._ratelimiter.check("login_failures", user_id.lower())
            raise forbidden("Invalid username or password")
        return user

    async def verify_password(self, user_id: str, password: str) -> UserRow | None:
        """The user if `password` is theirs (user IDs match case-insensitively); None otherwise."""
        if not is_valid_user_id(user_id):
            return None
        user = await self._store.find_user_case_insensitive(user_id)
        if user is None:
            # Hash anyway so that response time does not tell whether the user exists.
            await self._passwords.check(password, None)
            return None
        if not await self._passwords.check(password, user.password_hash):
            return None
        if user.deactivated:
            raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        return user

    async def check_password_stage(self, auth: dict[str, Any], session: UiaSession) -> str:
        """UIA `m.login.password`: the password of the user the session is for."""
        user_id = self._requested_user_id(auth, "auth.")
        password = auth.get("password")
        if not isinstance(password, str):
            raise bad_json("auth.password: must be a string")
        user = await self.verify_password(user_id, password)
        expected = session.serverdict.get("user_id")
        if user is None or (expected is not None and user.user_id != expected):
            raise forbidden("Invalid password")
        return user.user_id
