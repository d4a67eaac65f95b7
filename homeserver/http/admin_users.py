"""Admin API: users (Synapse's `/_synapse/admin/.../users...`) and the spec's account moderation."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.whois import WhoisService
from homeserver.admin.login_audit import LoginAuditService
from homeserver.admin.redact import UserRedactionService
from homeserver.admin.users import AdminUserService
from homeserver.errors import missing_param
from homeserver.http.admin_common import (
    AdminAuthenticator,
    add_admin_route,
    choice,
    direction,
    optional_query_bool,
    paging,
)
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response, query_bool, query_int
from storage.stores.admin import USER_ORDER_COLUMNS, UserFilter


def _required_ts(request: web.Request) -> int:
    value = query_int(request, "from_ts", minimum=0)
    if value is None:
        raise missing_param("Missing integer query parameter 'from_ts'")
    return value


class AdminUserHandlers:
    def __init__(self, users: AdminUserService, whois: WhoisService, audit: LoginAuditService,
                 admin: AdminAuthenticator, authenticate: RequestAuthenticator):
        self._users = users
        self._whois = whois
        self._audit = audit
        self._admin = admin
        self._authenticate = authenticate

    # --- users ------------------------------------------------------------------------------
    async def _list(self, request: web.Request, deactivated: bool | None) -> web.Response:
        await self._admin(request)
        offset, limit = paging(request)
        user_filter = UserFilter(
            user_id=request.query.get("user_id"), name=request.query.get("name"),
            guests=query_bool(request, "guests", True), deactivated=deactivated,
            admins=optional_query_bool(request, "admins"), locked=query_bool(request, "locked", False),
            not_user_types=tuple(request.query.getall("not_user_type", [])),
        )
        order_by = choice(request, "order_by", tuple(USER_ORDER_COLUMNS), "name")
        return json_response(await self._users.list_users(
            user_filter, order_by=order_by, backwards=direction(request), offset=offset, limit=limit))

    async def list_users_v2(self, request: web.Request) -> web.Response:
        # v2: deactivated=true includes deactivated users, anything else leaves them out.
        return await self._list(request, None if query_bool(request, "deactivated", False) else False)

    async def list_users_v3(self, request: web.Request) -> web.Response:
        # v3: deactivated=true only deactivated, false only active, absent both.
        return await self._list(request, optional_query_bool(request, "deactivated"))

    async def get_user(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._users.get_user(request.match_info["userId"]))

    async def put_user(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        status, body = await self._users.put_user(requester, request.match_info["userId"],
                                                  await json_object(request))
        return json_response(body, status=status)

    async def whois(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response(await self._whois.whois(requester, request.match_info["userId"]))

    async def deactivate(self, request: web.Request) -> web.Response:
        await self._admin(request)
        body = await json_object(request, allow_empty=True)
        return json_response(await self._users.deactivate(request.match_info["userId"], body))

    async def reset_password(self, request: web.Request) -> web.Response:
        await self._admin(request)
        await self._users.reset_password(request.match_info["userId"], await json_object(request))
        return json_response({})

    async def suspend(self, request: web.Request) -> web.Response:
        await self._admin(request)
        body = await json_object(request)
        return json_response(await self._users.set_suspended(request.match_info["userId"], body))

    async def shadow_ban(self, request: web.Request) -> web.Response:
        await self._admin(request)
        await self._users.set_shadow_banned(request.match_info["userId"], request.method == "POST")
        return json_response({})

    async def login_as(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        body = await json_object(request, allow_empty=True)
        return json_response(await self._users.login_as(requester, request.match_info["userId"], body))

    async def username_available(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._users.username_available(request.query.get("username")))

    async def login_audit(self, request: web.Request) -> web.Response:
        await self._admin(request)
        offset, limit = paging(request)
        return json_response(await self._audit.entries(request.match_info["userId"], offset=offset, limit=limit,
                                                       backwards=direction(request)))

    async def get_admin_flag(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._users.get_admin_flag(request.match_info["userId"]))

    async def set_admin_flag(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        await self._users.set_admin_flag(requester, request.match_info["userId"], await json_object(request))
        return json_response({})

    async def sent_invite_count(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._users.sent_invite_count(request.match_info["userId"],
                                                                 _required_ts(request)))

    async def joined_room_count(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._users.cumulative_joined_room_count(request.match_info["userId"],
                                                                            _required_ts(request)))

    # --- devices ----------------------------------------------------------------------------
    async def list_devices(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._users.list_devices(request.match_info["userId"]))

    async def create_device(self, request: web.Request) -> web.Response:
        await self._admin(request)
        await self._users.create_device(request.match_info["userId"], await json_object(request))
        return json_response({}, status=201)

    async def get_device(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._users.get_device(request.match_info["userId"],
                                                          request.match_info["deviceId"]))

    async def update_device(self, request: web.Request) -> web.Response:
        await self._admin(request)
        body = await json_object(request, allow_empty=True)
        await self._users.update_device(request.match_info["userId"], request.match_info["deviceId"], body)
        return json_response({})

    async def delete_device(self, request: web.Request) -> web.Response:
        await self._admin(request)
        await self._users.delete_devices(request.match_info["userId"], [request.match_info["deviceId"]])
        return json_response({})

    async def delete_devices(self, request: web.Request) -> web.Response:
        await self._admin(request)
        await self._users.delete_devices_body(request.match_info["userId"], await json_object(request))
        return json_response({})

    # --- what a user has ----------------------------------------------------------------------
    async def joined_rooms(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._users.joined_rooms(request.match_info["userId"]))

    async def memberships(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._users.memberships(request.match_info["userId"]))

    async def pushers(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._users.pushers(request.match_info["userId"]))

    async def account_data(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._users.account_data(request.match_info["userId"]))

    # --- rate limits ------------------------------------------------------------------------
    async def get_ratelimit(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._users.get_ratelimit(request.match_info["userId"]))

    async def set_ratelimit(self, request: web.Request) -> web.Response:
        await self._admin(request)
        body = await json_object(request, allow_empty=True)
        return json_response(await self._users.set_ratelimit(request.match_info["userId"], body))

    async def delete_ratelimit(self, request: web.Request) -> web.Response:
        await self._admin(request)
        await self._users.delete_ratelimit(request.match_info["userId"])
        return json_response({})

    # --- lookups ----------------------------------------------------------------------------
    async def by_external_id(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._users.user_by_external_id(request.match_info["provider"],
                                                                   request.match_info["externalId"]))

    async def by_threepid(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._users.user_by_threepid(request.match_info["medium"],
                                                                 request.match_info["address"]))

    # --- the spec's /_matrix/client/v1/admin/{lock,suspend}/{userId} ---------------------------
    async def get_lock(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._users.get_moderation_flag("locked", request.match_info["userId"]))

    async def put_lock(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        return json_response(await self._users.set_moderation_flag(
            requester, "locked", request.match_info["userId"], await json_object(request)))

    async def get_suspend(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._users.get_moderation_flag("suspended", request.match_info["userId"]))

    async def put_suspend(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        return json_response(await self._users.set_moderation_flag(
            requester, "suspended", request.match_info["userId"], await json_object(request)))

    def register_routes(self, app: web.Application) -> None:
        add_admin_route(app, "GET", "/v2/users", self.list_users_v2)
        add_admin_route(app, "GET", "/v3/users", self.list_users_v3)
        add_admin_route(app, "GET", "/v2/users/{userId}", self.get_user)
        add_admin_route(app, "PUT", "/v2/users/{userId}", self.put_user)
        add_admin_route(app, "GET", "/v1/whois/{userId}", self.whois)
        add_admin_route(app, "POST", "/v1/deactivate/{userId}", self.deactivate)
        add_admin_route(app, "POST", "/v1/reset_password/{userId}", self.reset_password)
        add_admin_route(app, "PUT", "/v1/suspend/{userId}", self.suspend)
        add_admin_route(app, "POST", "/v1/users/{userId}/shadow_ban", self.shadow_ban)
        add_admin_route(app, "DELETE", "/v1/users/{userId}/shadow_ban", self.shadow_ban)
        add_admin_route(app, "POST", "/v1/users/{userId}/login", self.login_as)
        add_admin_route(app, "GET", "/v1/username_available", self.username_available)
        add_admin_route(app, "GET", "/v1/users/{userId}/login_audit", self.login_audit)
        add_admin_route(app, "GET", "/v1/users/{userId}/admin", self.get_admin_flag)
        add_admin_route(app, "PUT", "/v1/users/{userId}/admin", self.set_admin_flag)
        add_admin_route(app, "GET", "/v1/users/{userId}/sent_invite_count", self.sent_invite_count)
        add_admin_route(app, "GET", "/v1/users/{userId}/cumulative_joined_room_count", self.joined_room_count)
        add_admin_route(app, "GET", "/v2/users/{userId}/devices", self.list_devices)
        add_admin_route(app, "POST", "/v2/users/{userId}/devices", self.create_device)
        add_admin_route(app, "GET", "/v2/users/{userId}/devices/{deviceId}", self.get_device)
        add_admin_route(app, "PUT", "/v2/users/{userId}/devices/{deviceId}", self.update_device)
        add_admin_route(app, "DELETE", "/v2/users/{userId}/devices/{deviceId}", self.delete_device)
        add_admin_route(app, "POST", "/v2/users/{userId}/delete_devices", self.delete_devices)
        add_admin_route(app, "GET", "/v1/users/{userId}/joined_rooms", self.joined_rooms)
        add_admin_route(app, "GET", "/v1/users/{userId}/memberships", self.memberships)
        add_admin_route(app, "GET", "/v1/users/{userId}/pushers", self.pushers)
        add_admin_route(app, "GET", "/v1/users/{userId}/accountdata", self.account_data)
        add_admin_route(app, "GET", "/v1/users/{userId}/override_ratelimit", self.get_ratelimit)
        add_admin_route(app, "POST", "/v1/users/{userId}/override_ratelimit", self.set_ratelimit)
        add_admin_route(app, "DELETE", "/v1/users/{userId}/override_ratelimit", self.delete_ratelimit)
        add_admin_route(app, "GET", "/v1/auth_providers/{provider}/users/{externalId}", self.by_external_id)
        add_admin_route(app, "GET", "/v1/threepid/{medium}/users/{address}", self.by_threepid)

    def register_client_routes(self, app: web.Application) -> None:
        """The spec's account moderation endpoints, on the client API."""
        for kind, get, put in (("lock", self.get_lock, self.put_lock),
                               ("suspend", self.get_suspend, self.put_suspend)):
            app.router.add_route("GET", f"/_matrix/client/v1/admin/{kind}/{{userId}}", get)
            app.router.add_route("PUT", f"/_matrix/client/v1/admin/{kind}/{{userId}}", put)


class UserRedactionHandlers:
    """`POST /v1/user/{userId}/redact` and `GET /v1/user/redact_status/{redactId}`."""

    def __init__(self, redactions: UserRedactionService, admin: AdminAuthenticator):
        self._redactions = redactions
        self._admin = admin

    async def redact(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        return json_response(await self._redactions.start_redact(requester, request.match_info["userId"],
                                                                 await json_object(request)))

    async def status(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._redactions.status(request.match_info["redactId"]))

    def register_routes(self, app: web.Application) -> None:
        add_admin_route(app, "POST", "/v1/user/{userId}/redact", self.redact)
        add_admin_route(app, "GET", "/v1/user/redact_status/{redactId}", self.status)
