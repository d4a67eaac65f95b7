"""Managing one's own account: password changes, deactivation, and third-party identifiers.

E-mail addresses are validated by mail when an SMTP server is configured (see
accounts/email_validation.py): `/account/3pid/email/requestToken` mails a link, and
`/account/3pid/add` binds the address once it was followed. This server sends no SMS, and
registration and password reset by e-mail are not offered: those token requests refuse with
`M_THREEPID_MEDIUM_NOT_SUPPORTED`, as Synapse answers when no delivery is configured.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from homeserver.accounts.access_tokens import AuthService
from homeserver.accounts.devices import PASSWORD_FLOWS, DeviceService, check_password_stage_user
from homeserver.accounts.email_validation import EmailValidationService
from homeserver.accounts.identity import IdentityServerClient
from homeserver.accounts.passwords import PasswordHasher
from homeserver.accounts.registration import MAX_PASSWORD_LENGTH
from homeserver.accounts.uia import InteractiveAuthRequired, UserInteractiveAuth
from homeserver.errors import MatrixError, bad_json, invalid_param, missing_param
from homeserver.requester import Requester
from storage.stores.accounts import AccountStore
from storage.stores.admin import AdminStore, ThreepidInUseError
from storage.stores.deactivation import DeactivationStore
from storage.stores.identity import IdentityBindingStore

logger = logging.getLogger(__name__)

# The UIA session remembers a hash of the new password, never the password itself.
NEW_PASSWORD_HASH_KEY = "new_password_hash"
CLIENT_SECRET_RE = re.compile(r"[0-9a-zA-Z.=_\-]{1,255}")
MAX_FIELD_LENGTH = 2048

# (field, JSON type, required). Checked in order, so the first problem is the one reported.
FieldSpec = tuple[str, type, bool]

EMAIL_TOKEN_REQUEST: Sequence[FieldSpec] = (
    ("client_secret", str, True), ("email", str, True), ("send_attempt", int, True),
    ("next_link", str, False), ("id_server", str, False), ("id_access_token", str, False),
)
MSISDN_TOKEN_REQUEST: Sequence[FieldSpec] = (
    ("client_secret", str, True), ("country", str, True), ("phone_number", str, True),
    ("send_attempt", int, True), ("next_link", str, False), ("id_server", str, False),
    ("id_access_token", str, False),
)
THREEPID_ADD: Sequence[FieldSpec] = (("client_secret", str, True), ("sid", str, True))
THREEPID_BIND: Sequence[FieldSpec] = (
    ("client_secret", str, True), ("id_access_token", str, True), ("id_server", str, True), ("sid", str, True),
)
THREEPID_UNBIND: Sequence[FieldSpec] = (("address", str, True), ("medium", str, True), ("id_server", str, False))
PASSWORD_CHANGE: Sequence[FieldSpec] = (("new_password", str, False), ("logout_devices", bool, False))
DEACTIVATE: Sequence[FieldSpec] = (("erase", bool, False), ("id_server", str, False))

MEDIA = ("email", "msisdn")
TOKEN_REQUEST_FIELDS = {"email": EMAIL_TOKEN_REQUEST, "msisdn": MSISDN_TOKEN_REQUEST}
MEDIUM_REFUSALS = {
    "email": "This homeserver does not send e-mail, so it cannot verify e-mail addresses",
    "msisdn": "This homeserver does not send SMS, so it cannot verify phone numbers",
}


def check_fields(body: dict[str, Any], spec: Sequence[FieldSpec], prefix: str = "") -> None:
    """Validate the listed fields of a JSON object: presence, JSON type, and sane lengths."""
    for name, kind, required in spec:
        value = body.get(name)
        if value is None:
            if required:
                raise missing_param(f"{prefix}{name}: required")
            continue
        # bool is an int in Python, but never a number in JSON.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            article = {str: "a string", int: "an integer", bool: "true or false"}[kind]
            raise bad_json(f"{prefix}{name}: must be {article}")
        if kind is str and len(value) > MAX_FIELD_LENGTH:
            raise MatrixError(400, "M_TOO_LARGE", f"{prefix}{name}: longer than {MAX_FIELD_LENGTH} characters")
    secret = body.get("client_secret")
    if isinstance(secret, str) and not CLIENT_SECRET_RE.fullmatch(secret):
        raise invalid_param(f"{prefix}client_secret: must be 1-255 characters of [0-9a-zA-Z.=_-]")
    medium = body.get("medium")
    if any(name == "medium" for name, _, _ in spec) and medium not in MEDIA:
        raise invalid_param(f"{prefix}medium: must be 'email' or 'msisdn'")


UserAction = Callable[[str], Awaitable[None]]


class AccountDeactivation:
    """Deactivating an account, with or without erasure: what the client API and the admin API both call."""

    def __init__(self, store: AccountStore, deactivation_store: DeactivationStore, auth: AuthService,
                 devices: DeviceService, *, leave_all_rooms: UserAction, remove_pushers: UserAction,
                 clear_presence: UserAction, forget_cached_events: Callable[[Iterable[str]], None]):
        self._store = store
        self._deactivation_store = deactivation_store
        self._auth = auth
        self._devices = devices
        self._leave_all_rooms = leave_all_rooms
        self._remove_pushers = remove_pushers
        self._clear_presence = clear_presence
        self._forget_cached_events = forget_cached_events

    async def deactivate(self, user_id: str, *, erase: bool) -> None:
        """Deactivate `user_id`: no devices, tokens or password, out of every room and the user
        directory, no pushers, account data, push rules or key backups. With `erase`, their
        profile, status message and IP log go too, their member events lose name and avatar,
        and users who join rooms later see their events without content."""
        devices = await self._store.get_devices(user_id)
        # Through the device service, so E2EE keys and pushers of each device go with it.
        await self._devices.delete_devices(user_id, [d.device_id for d in devices])
        await self._store.mark_deactivated(user_id, erase=erase)  # the directory skips deactivated users
        self._auth.invalidate_user(user_id)
        await self._remove_pushers(user_id)
        if erase:
            self._auth.forget_pending_last_seen(user_id)
            await self._clear_presence(user_id)
            self._forget_cached_events(await self._deactivation_store.erase_personal_data(user_id))
        await self._leave_all_rooms(user_id)
        await self._deactivation_store.purge_settings(user_id)
        logger.info("Deactivated %s (erase=%s)", user_id, erase)


class AccountService:
    def __init__(self, store: AccountStore, auth: AuthService, uia: UserInteractiveAuth, devices: DeviceService,
                 passwords: PasswordHasher, deactivation: AccountDeactivation, *,
                 identity: IdentityServerClient | None = None, bindings: IdentityBindingStore | None = None,
                 email_validation: EmailValidationService | None = None, threepids: AdminStore | None = None):
        self._store = store
        self._auth = auth
        self._uia = uia
        self._devices = devices
        self._passwords = passwords
        self._deactivation = deactivation
        self._identity = identity
        self._bindings = bindings
        self._email_validation = email_validation
        self._threepids = threepids

    # --- password ----------------------------------------------------------------------
    async def change_password(self, requester: Requester, body: dict[str, Any], *, uri: str) -> None:
        """`POST /account/password`: UIA with the current password, then set the new one.

        Unless `logout_devices` is false, every other session ends; the requester's stays.
        """
        check_fields(body, PASSWORD_CHANGE)
        new_password = body.get("new_password") or None
        if new_password is not None and len(new_password) > MAX_PASSWORD_LENGTH:
            raise MatrixError(400, "M_TOO_LARGE", f"new_password: longer than {MAX_PASSWORD_LENGTH} characters")
        # The plain new password must not be stored in the UIA session along with the request.
        uia_body = {k: v for k, v in body.items() if k != "new_password"}
        try:
            completed, params, session_id = await self._uia.check(
                uia_body, PASSWORD_FLOWS, uri=uri, method="POST", for_user=requester.user_id)
        except InteractiveAuthRequired as challenge:
            if new_password is not None:
                await self._remember_new_password(challenge.body["session"], new_password)
            raise
        check_password_stage_user(completed, requester.user_id)
        if new_password is not None:
            password_hash = await self._passwords.hash(new_password)
        else:
            password_hash = await self._uia.get_server_value(session_id, NEW_PASSWORD_HASH_KEY)
        if not password_hash:
            raise missing_param("new_password: required")
        await self._store.set_password_hash(requester.user_id, password_hash)
        if params.get("logout_devices", True) is not False:
            await self._devices.delete_other_devices(requester.user_id, requester.device_id,
                                                     requester.access_token_id)
        await self._store.delete_uia_session(session_id)

    async def _remember_new_password(self, session_id: str, new_password: str) -> None:
        if await self._uia.get_server_value(session_id, NEW_PASSWORD_HASH_KEY) is None:
            await self._uia.set_server_value(session_id, NEW_PASSWORD_HASH_KEY,
                                             await self._passwords.hash(new_password))

    # --- deactivation --------------------------------------------------------------------
    async def deactivate(self, requester: Requester, body: dict[str, Any], *, uri: str) -> dict[str, Any]:
        """`POST /account/deactivate`: UIA, then deactivation (and erasure when `erase` is true)."""
        check_fields(body, DEACTIVATE)
        completed, params, session_id = await self._uia.check(
            body, PASSWORD_FLOWS, uri=uri, method="POST", for_user=requester.user_id)
        check_password_stage_user(completed, requester.user_id)
        await self._store.delete_uia_session(session_id)
        await self.deactivate_account(requester.user_id, erase=params.get("erase") is True)
        return {"id_server_unbind_result": "no-support"}

    async def deactivate_account(self, user_id: str, *, erase: bool) -> None:
        """Deactivate an account (its owner's request or an admin's): rooms, devices, pushers, profile."""
        await self._deactivation.deactivate(user_id, erase=erase)

    # --- third-party identifiers -------------------------------------------------------
    async def list_threepids(self, user_id: str) -> list[dict[str, Any]]:
        """The user's validated 3PIDs, with when they were validated and added."""
        if self._threepids is None:
            return []
        return [{"medium": t.medium, "address": t.address, "validated_at": t.validated_at, "added_at": t.added_at}
                for t in await self._threepids.get_threepids(user_id)]

    def _validation_for(self, purpose: str, medium: str) -> EmailValidationService | None:
        if purpose == "3pid" and medium == "email" and self._email_validation is not None \
                and self._email_validation.enabled:
            return self._email_validation
        return None

    async def request_token(self, purpose: str, medium: str, body: dict[str, Any]) -> dict[str, Any]:
        """Any `.../{email,msisdn}/requestToken`: mail a validation link where this server can
        (adding an e-mail address), else refuse the medium."""
        check_fields(body, TOKEN_REQUEST_FIELDS[medium])
        validation = self._validation_for(purpose, medium)
        if validation is None:
            raise MatrixError(400, "M_THREEPID_MEDIUM_NOT_SUPPORTED", MEDIUM_REFUSALS[medium])
        return await validation.request_token(body)

    async def submit_email_token(self, query: dict[str, str]) -> str | None:
        """The link in a validation mail: mark the session validated; returns where to send the browser."""
        for name in ("token", "client_secret", "sid"):
            if not query.get(name):
                raise missing_param(f"{name}: required")
        if self._email_validation is None or not self._email_validation.enabled:
            raise MatrixError(400, "M_THREEPID_MEDIUM_NOT_SUPPORTED", MEDIUM_REFUSALS["email"])
        return await self._email_validation.submit_token(query["sid"], query["client_secret"], query["token"])

    async def add_threepid(self, requester: Requester, body: dict[str, Any], *, uri: str) -> None:
        """`POST /account/3pid/add`: UIA, then bind the address of the validated session."""
        check_fields(body, THREEPID_ADD)
        completed, params, session_id = await self._uia.check(body, PASSWORD_FLOWS, uri=uri, method="POST",
                                                              for_user=requester.user_id)
        check_password_stage_user(completed, requester.user_id)
        if self._email_validation is None or self._threepids is None:
            raise MatrixError(400, "M_THREEPID_AUTH_FAILED", "sid: no validated third-party identifier session")
        session = await self._email_validation.validated_session(params["sid"], params["client_secret"])
        try:
            await self._threepids.add_threepid(requester.user_id, session.medium, session.address,
                                               session.validated_ts, session.validated_ts)
        except ThreepidInUseError:
            raise MatrixError(400, "M_THREEPID_IN_USE", "sid: this address is already in use on this server") \
                from None
        await self._email_validation.forget(session.sid)
        await self._store.delete_uia_session(session_id)

    async def delete_threepid(self, requester: Requester, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /account/3pid/delete`: remove the 3PID from the account, and unbind it where it was bound."""
        check_fields(body, THREEPID_UNBIND)
        if self._threepids is not None:
            await self._threepids.remove_threepid(requester.user_id, body["medium"], body["address"])
        return await self.unbind_threepid(requester, body)

    def add_threepid_legacy(self, body: dict[str, Any]) -> None:
        """The deprecated `POST /account/3pid`, which validated through an identity server."""
        key = "three_pid_creds" if "three_pid_creds" in body else "threePidCreds"
        creds = body.get(key)
        if creds is None:
            raise missing_param("three_pid_creds: required")
        if not isinstance(creds, dict):
            raise bad_json(f"{key}: must be an object")
        check_fields(creds, THREEPID_ADD, prefix=f"{key}.")
        raise MatrixError(403, "M_THREEPID_AUTH_FAILED", "This homeserver trusts no identity server to verify 3PIDs")

    async def bind_threepid(self, requester: Requester, body: dict[str, Any]) -> None:
        """`POST /account/3pid/bind`: proxied to the identity server the client names, which binds the
        validated session's 3PID to the user; the server is remembered for a later unbind."""
        check_fields(body, THREEPID_BIND)
        if self._identity is None or self._bindings is None:
            raise MatrixError(400, "M_SERVER_NOT_TRUSTED",
                              "id_server: this homeserver does not bind identifiers on identity servers")
        id_server = self._identity.check_server(body["id_server"])
        answer = await self._identity.bind(id_server, body["id_access_token"], body["sid"], body["client_secret"],
                                           requester.user_id)
        medium, address = answer.get("medium"), answer.get("address")
        if isinstance(medium, str) and isinstance(address, str):
            await self._bindings.add_binding(requester.user_id, medium, address, id_server)

    async def unbind_threepid(self, requester: Requester, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /account/3pid/unbind` and `/delete`: ask the named identity server, or those the 3PID
        was bound through, to forget the binding. `no-support` when there is none to ask or it refuses."""
        check_fields(body, THREEPID_UNBIND)
        if self._identity is None or self._bindings is None:
            return {"id_server_unbind_result": "no-support"}
        medium, address = body["medium"], body["address"]
        if body.get("id_server") is not None:
            servers = [self._identity.check_server(body["id_server"])]
        else:
            servers = await self._bindings.get_binding_servers(requester.user_id, medium, address)
        if not servers:
            return {"id_server_unbind_result": "no-support"}
        unbound = True
        for id_server in servers:
            if await self._identity.unbind(id_server, requester.user_id, medium, address):
                await self._bindings.remove_binding(requester.user_id, medium, address, id_server)
            else:
                unbound = False
        return {"id_server_unbind_result": "success" if unbound else "no-support"}
