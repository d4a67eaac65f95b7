"""Client API: /register, /login, /refresh, /logout, /account/whoami."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from homeserver.accounts.login import LoginService
from homeserver.accounts.registration import RegistrationService
from homeserver.accounts.sessions import SessionService
from homeserver.errors import MatrixError, missing_param
from homeserver.http.request import access_token, client_ip, json_object, json_response
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.routing import add_client_route
from homeserver.ratelimit import RateLimiter

CLIENT_V1 = ("/_matrix/client/v1",)
APP_SERVICE_LOGIN = "m.login.application_service"
# (the as_token of the request, request body) -> response body; 401 M_UNKNOWN_TOKEN for other tokens
AppServiceSessionStarter = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class SessionHandlers:
    def __init__(self, registration: RegistrationService, login: LoginService, sessions: SessionService,
                 authenticate: RequestAuthenticator, ratelimiter: RateLimiter, *,
                 app_service_register: AppServiceSessionStarter | None = None,
                 app_service_login: AppServiceSessionStarter | None = None):
        self._registration = registration
        self._login = login
        self._sessions = sessions
        self._authenticate = authenticate
        self._ratelimiter = ratelimiter
        # `m.login.application_service` registrations and logins (made with an as_token).
        self._app_service_register = app_service_register
        self._app_service_login = app_service_login

    async def _app_service_session(self, request: web.Request, body: dict[str, Any],
                                   start: AppServiceSessionStarter | None) -> web.Response:
        # Only the token counts here: a bridge's `?user_id=` names the ghost it is about to create.
        token = access_token(request)
        if not token:
            raise MatrixError(400, "M_MISSING_TOKEN", f"{APP_SERVICE_LOGIN}: the as_token must be provided")
        if start is None:
            raise MatrixError(401, "M_UNKNOWN_TOKEN", f"{APP_SERVICE_LOGIN}: the token is not an as_token")
        return json_response(await start(token, body))

    async def register(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        if body.get("type") == APP_SERVICE_LOGIN:
            return await self._app_service_session(request, body, self._app_service_register)
        # Only a completed registration takes a token (the service does); UIA rounds do not.
        self._ratelimiter.check("registration", client_ip(request), update=False)
        kind = request.query.get("kind", "user")
        return json_response(await self._registration.register(
            body, kind=kind, uri=request.path, ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", "")))

    async def register_available(self, request: web.Request) -> web.Response:
        username = request.query.get("username")
        if not username:
            raise missing_param("username: query parameter is required")
        self._ratelimiter.check("registration_checks", client_ip(request))
        await self._registration.check_username_available(username.lower())
        return json_response({"available": True})

    async def registration_token_validity(self, request: web.Request) -> web.Response:
        token = request.query.get("token")
        if token is None:
            raise missing_param("token: query parameter is required")
        self._ratelimiter.check("registration_checks", client_ip(request))
        return json_response({"valid": await self._registration.registration_token_valid(token)})

    async def login_flows(self, request: web.Request) -> web.Response:
        flows = self._login.flows()
        if self._app_service_login is not None:
            flows = [*flows, {"type": APP_SERVICE_LOGIN}]
        return json_response({"flows": flows})

    async def login(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        if body.get("type") == APP_SERVICE_LOGIN:
            return await self._app_service_session(request, body, self._app_service_login)
        return json_response(await self._login.login(body, ip=client_ip(request),
                                                     user_agent=request.headers.get("User-Agent", "")))

    async def refresh(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        token = body.get("refresh_token")
        if not isinstance(token, str):
            raise missing_param("refresh_token: must be a string")
        return json_response(await self._sessions.refresh(token))

    async def logout(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True, allow_expired=True)
        await self._sessions.end_session(requester.user_id, requester.device_id, requester.access_token_id)
        return json_response({})

    async def logout_all(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True, allow_expired=True)
        await self._sessions.end_all_sessions(requester.user_id)
        return json_response({})

    async def get_login_token(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request, allow_empty=True)
        return json_response(await self._login.issue_login_token(requester, body, uri=request.path))

    async def whoami(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        body = {"user_id": requester.user_id, "is_guest": requester.is_guest}
        if requester.device_id is not None:
            body["device_id"] = requester.device_id
        return json_response(body)

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "POST", "/register", self.register)
        add_client_route(app, "GET", "/register/available", self.register_available)
        add_client_route(app, "GET", "/register/m.login.registration_token/validity",
                         self.registration_token_validity, prefixes=CLIENT_V1)
        add_client_route(app, "GET", "/login", self.login_flows)
        add_client_route(app, "POST", "/login", self.login)
        add_client_route(app, "POST", "/refresh", self.refresh, prefixes=("/_matrix/client/v3",
                                                                          "/_matrix/client/v1"))
        add_client_route(app, "POST", "/logout", self.logout)
        add_client_route(app, "POST", "/logout/all", self.logout_all)
        add_client_route(app, "GET", "/account/whoami", self.whoami)
        # Not served at all unless enabled, as Synapse (404 M_UNRECOGNIZED).
        if self._login.get_token_enabled:
            add_client_route(app, "POST", "/login/get_token", self.get_login_token, prefixes=CLIENT_V1)


class AdminRegisterHandlers:
    """Synapse's shared-secret registration, which admin tools and test harnesses rely on."""

    def __init__(self, registration: RegistrationService):
        self._registration = registration

    async def get_nonce(self, request: web.Request) -> web.Response:
        return json_response({"nonce": self._registration.new_nonce()})

    async def register(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        return json_response(await self._registration.register_with_shared_secret(body))

    def register_routes(self, app: web.Application) -> None:
        app.router.add_get("/_synapse/admin/v1/register", self.get_nonce)
        app.router.add_post("/_synapse/admin/v1/register", self.register)
