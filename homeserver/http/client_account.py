"""Client API: /account/password, /account/deactivate, /account/3pid* and the 3PID requestToken endpoints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from homeserver.accounts.account_management import AccountService
from homeserver.accounts.email_validation import SUBMIT_TOKEN_PATH
from homeserver.http.request import json_object, json_response
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.routing import add_client_route

# (path, purpose, medium) of every endpoint that would send a validation e-mail or SMS.
TOKEN_REQUEST_PATHS = (
    ("/register/email/requestToken", "register", "email"),
    ("/register/msisdn/requestToken", "register", "msisdn"),
    ("/account/password/email/requestToken", "password", "email"),
    ("/account/password/msisdn/requestToken", "password", "msisdn"),
    ("/account/3pid/email/requestToken", "3pid", "email"),
    ("/account/3pid/msisdn/requestToken", "3pid", "msisdn"),
)
VALIDATED_PAGE = ("<!DOCTYPE html><html><head><title>E-mail address confirmed</title></head><body>"
                  "<p>Your e-mail address has been confirmed. Return to your Matrix client to finish adding it."
                  "</p></body></html>")


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

    async def delete_threepid(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response(await self._accounts.delete_threepid(requester, await json_object(request)))

    async def submit_email_token(self, request: web.Request) -> web.Response:
        """The link in a validation mail (opened in a browser, so no access token)."""
        next_link = await self._accounts.submit_email_token(dict(request.query))
        if next_link:
            return web.Response(status=302, headers={"Location": next_link})
        return web.Response(text=VALIDATED_PAGE, content_type="text/html")

    def _request_token(self, purpose: str, medium: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            return json_response(await self._accounts.request_token(purpose, medium, await json_object(request)))

        return handler

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "POST", "/account/password", self.change_password)
        add_client_route(app, "POST", "/account/deactivate", self.deactivate)
        add_client_route(app, "GET", "/account/3pid", self.list_threepids)
        add_client_route(app, "POST", "/account/3pid", self.add_threepid_legacy)
        add_client_route(app, "POST", "/account/3pid/add", self.add_threepid)
        add_client_route(app, "POST", "/account/3pid/bind", self.bind_threepid)
        add_client_route(app, "POST", "/account/3pid/unbind", self.unbind_threepid)
        add_client_route(app, "POST", "/account/3pid/delete", self.delete_threepid)
        for path, purpose, medium in TOKEN_REQUEST_PATHS:
            add_client_route(app, "POST", path, self._request_token(purpose, medium))
        app.router.add_route("GET", SUBMIT_TOKEN_PATH, self.submit_email_token)
