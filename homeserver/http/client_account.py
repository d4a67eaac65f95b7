"""Client API: /account/password, /account/deactivate, /account/3pid* and the 3PID requestToken endpoints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from homeserver.accounts.account_management import AccountService
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response
from homeserver.http.routing import add_client_route

# (path, medium) of every endpoint that would send a validation e-mail or SMS.
TOKEN_REQUEST_PATHS = (
    ("/register/email/requestToken", "email"),
    ("/register/msisdn/requestToken", "msisdn"),
    ("/account/password/email/requestToken", "email"),
    ("/account/password/msisdn/requestToken", "msisdn"),
    ("/account/3pid/email/requestToken", "email"),
    ("/account/3pid/msisdn/requestToken", "msisdn"),
)


class AccountHandlers:
    def __init__(self, accounts: AccountService, authenticate: RequestAuthenticator):
        self._accounts = accounts
        self._authenticate = authenticate

    async def change_password(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        await self._accounts.change_password(requester, body, uri=request.path)
        return json_response({})

    async def deactivate(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        return json_response(await self._accounts.deactivate(requester, body, uri=request.path))

    async def list_threepids(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response({"threepids": await self._accounts.list_threepids(requester.user_id)})

    async def add_threepid_legacy(self, request: web.Request) -> web.Response:
        await self._authenticate(request)
        self._accounts.add_threepid_legacy(await json_object(request))
        return json_response({})

    async def add_threepid(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        await self._accounts.add_threepid(requester, body, uri=request.path)
        return json_response({})

    async def bind_threepid(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        await self._accounts.bind_threepid(requester, await json_object(request))
        return json_response({})

    async def unbind_threepid(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response(await self._accounts.unbind_threepid(requester, await json_object(request)))

    def _request_token(self, medium: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            self._accounts.request_token(medium, await json_object(request))
            return json_response({})  # not reached: every medium is refused

        return handler

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "POST", "/account/password", self.change_password)
        add_client_route(app, "POST", "/account/deactivate", self.deactivate)
        add_client_route(app, "GET", "/account/3pid", self.list_threepids)
        add_client_route(app, "POST", "/account/3pid", self.add_threepid_legacy)
        add_client_route(app, "POST", "/account/3pid/add", self.add_threepid)
        add_client_route(app, "POST", "/account/3pid/bind", self.bind_threepid)
        add_client_route(app, "POST", "/account/3pid/unbind", self.unbind_threepid)
        add_client_route(app, "POST", "/account/3pid/delete", self.unbind_threepid)
        for path, medium in TOKEN_REQUEST_PATHS:
            add_client_route(app, "POST", path, self._request_token(medium))
