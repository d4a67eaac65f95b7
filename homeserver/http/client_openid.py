"""OpenID: the client endpoint that issues tokens and the federation endpoint that resolves them."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.openid import OpenIdService
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response
from homeserver.http.routing import add_client_route


class OpenIdHandlers:
    def __init__(self, openid: OpenIdService, authenticate: RequestAuthenticator):
        self._openid = openid
        self._authenticate = authenticate

    async def request_token(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        await json_object(request, allow_empty=True)
        return json_response(await self._openid.request_token(requester, request.match_info["userId"]))

    async def user_info(self, request: web.Request) -> web.Response:
        return json_response(await self._openid.user_info(request.query.get("access_token")))

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "POST", "/user/{userId}/openid/request_token", self.request_token)

    def register_federation(self, app: web.Application) -> None:
        # No X-Matrix auth: the caller is a third party holding only the token.
        app.router.add_get("/_matrix/federation/v1/openid/userinfo", self.user_info)
