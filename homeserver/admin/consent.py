"""Consent to the privacy policy: the version members must accept, who accepted, and the send check.

The policy (version and URL) is set by the privacy application service through the admin API
and persisted. While one is set and `consent.block_events` is on, a local member who has not
accepted the current version may not send room events (`403 M_CONSENT_NOT_GIVEN`, with the
policy URL as `consent_uri`), except:

- in a room whose other members are all exempt users (`consent.exempt_users`, and the bot of
  every registered application service, the privacy bot among them), so that the member can talk
  to the bot to consent — joining and leaving such a room too;
- leaving any room and redacting their own events, so withholding consent never traps data;
- application-service users and server admins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from homeserver.accounts.access_tokens import AuthService
from homeserver.admin.common import existing_local_user, optional_str
from homeserver.clock import Clock
from homeserver.errors import MatrixError, invalid_param, missing_param
from storage.stores.accounts import AccountStore
from storage.stores.consent import ConsentPolicy, ConsentStore
from storage.stores.events import EventStore

MAX_VERSION_LENGTH = 255
# Never blocked: walking out of a room, and taking back what one said.
_ALWAYS_ALLOWED_TYPES = {"m.room.redaction"}


class ConsentService:
    def __init__(self, server_name: str, store: ConsentStore, accounts: AccountStore, events: EventStore,
                 auth: AuthService, clock: Clock, *, block_events: bool, exempt_users: frozenset[str],
                 is_app_service_user: Callable[[str], bool], is_app_service_bot: Callable[[str], bool]):
        self._server_name = server_name
        self._store = store
        self._accounts = accounts
        self._events = events
        self._auth = auth
        self._clock = clock
        self._block_events = block_events
        self._exempt_users = exempt_users
        self._is_app_service_user = is_app_service_user
        self._is_app_service_bot = is_app_service_bot
        self._policy: ConsentPolicy | None = None
        # Users known to have accepted the current version; emptied when the version changes.
        self._accepted: set[str] = set()

    async def start(self) -> None:
        self._policy = await self._store.get_policy()

    async def stop(self) -> None:
        return None

    # --- the admin API -----------------------------------------------------------------------
    async def get_policy(self) -> dict[str, Any]:
        """`GET /_huiskamer/admin/v1/consent/policy`: the current version and URL (nulls while unset)."""
        policy = self._policy
        if policy is None:
            return {"version": None, "url": None, "set_ts": None}
        return {"version": policy.version, "url": policy.url, "set_ts": policy.set_ts}

    async def set_policy(self, body: dict[str, Any]) -> dict[str, Any]:
        """`PUT /_huiskamer/admin/v1/consent/policy`: `{"version", "url"}` becomes the version to accept."""
        version = _required_str(body, "version", MAX_VERSION_LENGTH)
        url = _required_str(body, "url", 2048)
        if not url.startswith(("https://", "http://")):
            raise invalid_param("url: must be an http(s) URL")
        now = self._clock.time_ms()
        await self._store.set_policy(version, url, now)
        if self._policy is None or self._policy.version != version:
            self._accepted.clear()
        self._policy = ConsentPolicy(version, url, now)
        return await self.get_policy()

    async def get_user_consent(self, user_id: str) -> dict[str, Any]:
        """`GET /_huiskamer/admin/v1/users/{userId}/consent`: the accepted version and when (nulls if none)."""
        await existing_local_user(self._accounts, self._server_name, user_id)
        consent = await self._store.get_user_consent(user_id)
        return {"version": consent.version if consent else None, "ts": consent.ts if consent else None}

    async def set_user_consent(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """`PUT /_huiskamer/admin/v1/users/{userId}/consent`: record that the user accepted `version` now."""
        await existing_local_user(self._accounts, self._server_name, user_id)
        version = _required_str(body, "version", MAX_VERSION_LENGTH)
        await self._store.set_user_consent(user_id, version, self._clock.time_ms())
        self._accepted.discard(user_id)
        return await self.get_user_consent(user_id)

    async def forget_user(self, user_id: str) -> int:
        """Delete the user's consent record (erasure)."""
        self._accepted.discard(user_id)
        return await self._store.delete_user_consent(user_id)

    # --- the send check ------------------------------------------------------------------------
    async def check_consent(self, room_id: str, sender: str, event_type: str, content: Mapping[str, Any],
                            state_key: str | None) -> None:
        """403 `M_CONSENT_NOT_GIVEN` for a local member who has not accepted the current policy."""
        policy = self._policy
        if policy is None or not self._block_events or sender in self._accepted:
            return
        if not sender.endswith(":" + self._server_name) or sender in self._exempt_users:
            return
        if event_type in _ALWAYS_ALLOWED_TYPES:
            return
        if event_type == "m.room.member" and state_key == sender and content.get("membership") == "leave":
            return
        consent = await self._store.get_user_consent(sender)
        if consent is not None and consent.version == policy.version:
            self._accepted.add(sender)
            return
        if self._is_app_service_user(sender) or await self._auth.is_server_admin(sender):
            return
        if await self._only_exempt_company(room_id, sender):
            return
        raise MatrixError(403, "M_CONSENT_NOT_GIVEN",
                          f"You must accept the privacy policy (version {policy.version}) at {policy.url}"
                          " before you can send messages", consent_uri=policy.url)

    async def _only_exempt_company(self, room_id: str, sender: str) -> bool:
        """Whether everyone else in the room (joined or invited) is an exempt user or an application
        service's bot (its registration's `sender_localpart`), so a config written before
        `consent.exempt_users` existed still lets members reach the privacy bot."""
        others = set(await self._events.get_members(room_id, ("join", "invite"))) - {sender}
        return bool(others) and all(user in self._exempt_users or self._is_app_service_bot(user) for user in others)


def _required_str(body: dict[str, Any], name: str, max_length: int) -> str:
    if body.get(name) is None:
        raise missing_param(f"{name}: required")
    value = optional_str(body, name, max_length)
    if not value:
        raise invalid_param(f"{name}: must not be empty")
    return value
