"""Client API: /keys/upload, /keys/query, /keys/claim, /keys/changes and cross-signing uploads."""

from __future__ import annotations

from aiohttp import web

from homeserver.e2ee.cross_signing import CrossSigningService
from homeserver.e2ee.keys import KeysService
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response
from homeserver.http.routing import add_client_route

# Element still calls the cross-signing endpoints under unstable, and older clients under r0.
KEYS_PREFIXES = ("/_matrix/client/v3", "/_matrix/client/r0", "/_matrix/client/unstable")


class KeysHandlers:
    def __init__(self, keys: KeysService, cross_signing: CrossSigningService, authenticate: RequestAuthenticator):
        self._keys = keys
        self._cross_signing = cross_signing
        self._authenticate = authenticate

    async def upload(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        return json_response(await self._keys.upload(requester, await json_object(request)))

    async def query(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        return json_response(await self._keys.query(requester, await json_object(request)))

    async def claim(self, request: web.Request) -> web.Response:
        await self._authenticate(request, allow_guest=True)
        return json_response(await self._keys.claim(await json_object(request)))

    async def changes(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        return json_response(await self._keys.changes(requester, request.query.get("from"),
                                                      request.query.get("to")))

    async def upload_signing_keys(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        await self._cross_signing.upload_signing_keys(requester, await json_object(request), uri=request.path)
        return json_response({})

    async def upload_signatures(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response(await self._cross_signing.upload_signatures(requester, await json_object(request)))

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "POST", "/keys/upload", self.upload, KEYS_PREFIXES)
        add_client_route(app, "POST", "/keys/query", self.query, KEYS_PREFIXES)
        add_client_route(app, "POST", "/keys/claim", self.claim, KEYS_PREFIXES)
        add_client_route(app, "GET", "/keys/changes", self.changes, KEYS_PREFIXES)
        add_client_route(app, "POST", "/keys/device_signing/upload", self.upload_signing_keys, KEYS_PREFIXES)
        add_client_route(app, "POST", "/keys/signatures/upload", self.upload_signatures, KEYS_PREFIXES)
