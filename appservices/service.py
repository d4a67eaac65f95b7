"""The Application Service API inside the homeserver: as_token requests, ghost users, queries, ping.

`server.py` plugs the methods here into the homeserver's services (request authentication,
registration and login, alias and profile lookups, rate limits); those services never import
this package.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from appservices.client import AppServiceClient
from appservices.interest import RoomContext, services_for_event
from appservices.metrics import AppServiceMetrics
from appservices.registration import AppServiceRegistration
from appservices.registry import AppServiceRegistry
from homeserver.accounts.sessions import SessionService
from homeserver.clock import Clock
from homeserver.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.identifiers import is_valid_user_id, split_id
from homeserver.requester import Requester
from storage.stores.accounts import AccountStore
from storage.stores.aliases import AliasStore
from storage.stores.events import EventStore
from storage.stores.users import UserExistsError

logger = logging.getLogger(__name__)

THIRD_PARTY_KINDS = ("user", "location")
# Users an appservice acted as are remembered: accounts are never deleted, so a positive answer stays
# true, and a bridge's every request asserts a user.
KNOWN_USERS_CACHE_SIZE = 50_000


class AppServices:
    def __init__(self, server_name: str, registry: AppServiceRegistry, client: AppServiceClient,
                 metrics: AppServiceMetrics, accounts: AccountStore, sessions: SessionService, clock: Clock,
                 events: EventStore, aliases: AliasStore):
        self._server_name = server_name
        self.registry = registry
        self._client = client
        self._metrics = metrics
        self._accounts = accounts
        self._sessions = sessions
        self._clock = clock
        self._events = events
        self._aliases = aliases
        self._known_users: OrderedDict[str, None] = OrderedDict()
        self._on_ping_success: list[Callable[[AppServiceRegistration], Awaitable[None]]] = []

    def add_ping_success_callback(self, callback: Callable[[AppServiceRegistration], Awaitable[None]]) -> None:
        """Call `callback(registration)` after a successful ping (the outbound queue retries at once)."""
        self._on_ping_success.append(callback)

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Create every service's sender user if it does not exist yet."""
        for registration in self.registry.registrations:
            self._metrics.register(registration.id)
            if await self._accounts.get_user(registration.sender) is None:
                try:
                    await self._accounts.create_user(registration.sender, None, created_ts=self._clock.time_ms(),
                                                     appservice_id=registration.id,
                                                     displayname=split_id(registration.sender, "@")[0])
                    logger.info("Created the sender %s of application service %s", registration.sender,
                                registration.id)
                except UserExistsError:
                    pass
            logger.info("Application service %s: url %s, sender %s", registration.id,
                        registration.url or "(none)", registration.sender)

    async def stop(self) -> None:
        await self._client.close()

    # --- authentication ----------------------------------------------------------------------------
    async def requester_for_token(self, token: str, query: Mapping[str, str]) -> Requester | None:
        """The requester for an as_token, honouring `user_id` and `device_id`; None for other tokens."""
        registration = self.registry.by_token(token)
        if registration is None:
            return None
        user_id = query.get("user_id") or registration.sender
        if user_id != registration.sender:
            if not registration.is_interested_in_user(user_id):
                raise forbidden(f"user_id: {user_id} is outside the application service's user namespace")
            if not await self._is_registered(user_id):
                raise forbidden(f"user_id: the application service has not registered {user_id}")
        device_id = query.get("device_id") or query.get("org.matrix.msc3202.device_id")
        if device_id and await self._accounts.get_device(user_id, device_id) is None:
            raise MatrixError(400, "M_UNKNOWN_DEVICE", f"device_id: {user_id} has no device {device_id}")
        return Requester(user_id, device_id or None, None, app_service_id=registration.id)

    async def _is_registered(self, user_id: str) -> bool:
        if user_id in self._known_users:
            self._known_users.move_to_end(user_id)
            return True
        if await self._accounts.get_user(user_id) is None:
            return False
        self._known_users[user_id] = None
        if len(self._known_users) > KNOWN_USERS_CACHE_SIZE:
            self._known_users.popitem(last=False)
        return True

    def _by_token(self, as_token: str) -> AppServiceRegistration:
        registration = self.registry.by_token(as_token)
        if registration is None:
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "m.login.application_service: the token is not an as_token")
        return registration

    def _own(self, requester: Requester) -> AppServiceRegistration:
        registration = self.registry.by_id(requester.app_service_id or "")
        if registration is None:
            raise forbidden("Only application services may do this")
        return registration

    # --- registration and login ----------------------------------------------------------------
    async def register_user(self, as_token: str, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /register` with `m.login.application_service`: create a user in the namespace."""
        registration = self._by_token(as_token)
        username = body.get("username")
        if not isinstance(username, str) or not username or len(username) > 512:
            raise invalid_param("username: required, a non-empty string")
        inhibit_login = body.get("inhibit_login", False)
        if not isinstance(inhibit_login, bool):
            raise invalid_param("inhibit_login: must be true or false")
        user_id = f"@{username}:{self._server_name}"
        if not is_valid_user_id(user_id):
            raise MatrixError(400, "M_INVALID_USERNAME", f"username: {username!r} does not make a valid user ID")
        if not registration.is_interested_in_user(user_id):
            raise MatrixError(400, "M_EXCLUSIVE", f"username: {user_id} is outside the application service's "
                                                  "user namespace")
        self.registry.check_user_id_not_reserved(user_id, allowed=registration)
        if registration.msc4190 and not inhibit_login:
            raise MatrixError(400, "M_APPSERVICE_LOGIN_UNSUPPORTED",
                              "inhibit_login: must be true for an application service using MSC4190 devices")
        try:
            # Bridges rely on historical user IDs (upper case, '_' first): only the grammar is checked.
            await self._accounts.create_user(
                user_id, None, created_ts=self._clock.time_ms(),
                appservice_id=registration.id if registration.is_exclusive_user(user_id) else None,
                displayname=username)
        except UserExistsError:
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken") from None
        if inhibit_login:
            return {"user_id": user_id, "home_server": self._server_name}
        response = await self._sessions.start_session(
            user_id, device_id=body.get("device_id"), display_name=body.get("initial_device_display_name"))
        response["home_server"] = self._server_name
        return response

    async def login(self, as_token: str, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /login` with `m.login.application_service`: a session for a user in the namespace."""
        registration = self._by_token(as_token)
        identifier = body.get("identifier")
        if identifier is None and isinstance(body.get("user"), str):
            identifier = {"type": "m.id.user", "user": body["user"]}
        if not isinstance(identifier, dict) or identifier.get("type") != "m.id.user":
            raise invalid_param("identifier: must be an m.id.user identifier")
        user = identifier.get("user")
        if not isinstance(user, str) or not user:
            raise invalid_param("identifier.user: must be a non-empty string")
        user_id = user if user.startswith("@") else f"@{user}:{self._server_name}"
        if not registration.is_interested_in_user(user_id):
            raise MatrixError(403, "M_EXCLUSIVE", f"identifier.user: {user_id} is outside the application "
                                                  "service's user namespace")
        row = await self._accounts.get_user(user_id)
        if row is None:
            raise forbidden(f"identifier.user: {user_id} is not registered")
        if row.deactivated:
            raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        refresh = body.get("refresh_token", False)
        if not isinstance(refresh, bool):
            raise bad_json("refresh_token: must be true or false")
        response = await self._sessions.start_session(
            user_id, device_id=body.get("device_id"), display_name=body.get("initial_device_display_name"),
            want_refresh_token=refresh)
        response["home_server"] = self._server_name
        return response

    # --- checks for the homeserver's services --------------------------------------------------
    def check_user_id_for_registration(self, user_id: str) -> None:
        """Normal registration may not take a user ID an appservice claims exclusively."""
        self.registry.check_user_id_not_reserved(user_id)

    def check_alias_creation(self, requester: Requester, alias: str) -> None:
        self.registry.check_alias_creation(requester, alias)

    def check_room_alias_name(self, creator: str, alias: str) -> None:
        self.registry.check_alias_for_room_creator(creator, alias)

    def is_rate_limit_exempt(self, key: str) -> bool:
        return self.registry.is_rate_limit_exempt(key)

    # --- interest, for the outbound queue ------------------------------------------------------
    async def room_context(self, room_id: str) -> RoomContext:
        """The room's local joined members and local aliases: what interest depends on."""
        suffix = f":{self._server_name}"
        members = [m for m in await self._events.get_members(room_id) if m.endswith(suffix)]
        return RoomContext(members=frozenset(members),
                           aliases=frozenset(await self._aliases.get_aliases_for_room(room_id)))

    async def services_for_event(self, event: Any) -> list[AppServiceRegistration]:
        """The registrations that should receive a persisted event (an Event or a client-format dict)."""
        if not self.registry:
            return []
        room_id = event["room_id"] if isinstance(event, Mapping) else event.room_id
        return services_for_event(self.registry.registrations, event, await self.room_context(room_id))

    # --- queries -------------------------------------------------------------------------------
    async def resolve_unknown_user(self, user_id: str) -> bool:
        """Ask the services whose namespace covers an unknown local user; True once it exists."""
        try:
            _, server = split_id(user_id, "@")
        except ValueError:
            return False
        if server != self._server_name or await self._accounts.get_user(user_id) is not None:
            return False
        for registration in self.registry.interested_in_user(user_id):
            if await self._client.query_user(registration, user_id):
                return await self._accounts.get_user(user_id) is not None
        return False

    async def resolve_unknown_alias(self, alias: str) -> bool:
        """Ask the services whose namespace covers an unknown local alias; True when one says it made it."""
        if not alias.endswith(f":{self._server_name}"):
            return False
        for registration in self.registry.interested_in_alias(alias):
            if await self._client.query_alias(registration, alias):
                return True
        return False

    async def resolve_unknown_id(self, identifier: str) -> bool:
        """Users (`@`) and aliases (`#`), for callers that meet both."""
        if identifier.startswith("@"):
            return await self.resolve_unknown_user(identifier)
        if identifier.startswith("#"):
            return await self.resolve_unknown_alias(identifier)
        return False

    # --- third-party networks --------------------------------------------------------------------
    async def protocols(self) -> dict[str, Any]:
        """Every protocol a registration lists, with the metadata its service gives (instances merged)."""
        names = sorted({p for r in self.registry.registrations for p in r.protocols})
        found = await asyncio.gather(*(self._protocol_or_none(name) for name in names))
        return {name: info for name, info in zip(names, found, strict=True) if info is not None}

    async def protocol(self, protocol: str) -> dict[str, Any]:
        info = await self._protocol_or_none(protocol)
        if info is None:
            raise not_found(f"protocol: no application service serves {protocol!r}")
        return info

    async def _protocol_or_none(self, protocol: str) -> dict[str, Any] | None:
        merged: dict[str, Any] | None = None
        for registration in self.registry.for_protocol(protocol):
            info = await self._client.get_protocol(registration, protocol)
            if info is None:
                continue
            instances = []
            for instance in info.get("instances", []):
                if isinstance(instance, dict):
                    instance = dict(instance)
                    if isinstance(instance.get("network_id"), str):
                        # The id /publicRooms takes as third_party_instance_id for this network.
                        instance["instance_id"] = f"{registration.id}|{instance['network_id']}"
                    instances.append(instance)
            if merged is None:
                merged = {**info, "instances": instances}
            else:
                merged["instances"].extend(instances)
        if merged is None and self.registry.for_protocol(protocol):
            # Listed but the service did not describe it: an empty description, as Synapse answers.
            merged = {"user_fields": [], "location_fields": [], "icon": "", "field_types": {}, "instances": []}
        return merged

    async def third_party_lookup(self, kind: str, protocol: str | None,
                                 fields: Mapping[str, str]) -> list[dict[str, Any]]:
        """/thirdparty/user|location[/{protocol}]: the answers of every service that may know."""
        if kind not in THIRD_PARTY_KINDS:
            raise MatrixError(404, "M_UNRECOGNIZED", f"Unknown third-party lookup kind {kind!r}")
        if protocol is not None:
            services = self.registry.for_protocol(protocol)
        else:
            services = [r for r in self.registry.registrations if r.protocols]
        results = await asyncio.gather(*(self._client.query_third_party(r, kind, protocol, fields)
                                         for r in services))
        return [item for found in results for item in found]

    # --- ping ----------------------------------------------------------------------------------
    async def ping(self, requester: Requester, app_service_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /appservice/{id}/ping` by that service itself: the round trip to its /ping."""
        if requester.app_service_id is None:
            raise forbidden("Only application services can use the ping endpoint")
        if requester.app_service_id != app_service_id:
            raise forbidden("appserviceId: not the application service of this as_token")
        registration = self._own(requester)
        transaction_id = body.get("transaction_id")
        if transaction_id is not None and not isinstance(transaction_id, str):
            raise invalid_param("transaction_id: must be a string")
        duration_ms = await self._client.ping(registration, transaction_id)
        for callback in self._on_ping_success:
            try:
                await callback(registration)
            except Exception:
                logger.exception("Ping success callback failed for %s", registration.id)
        return {"duration_ms": duration_ms}
