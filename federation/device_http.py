"""The federation endpoints about our users' devices and keys, behind X-Matrix authentication:
`GET /user/devices/{userId}`, `POST /user/keys/query` and `POST /user/keys/claim`. Thin: they
parse, ask KeysService, answer."""

from __future__ import annotations

from aiohttp import web

from federation.auth import FederationAuthenticator, federation_body
from federation.membership_resident import UserExists
from homeserver.e2ee.keys import KeysService
from homeserver.errors import bad_json, invalid_param, not_found
from homeserver.http.request import json_response
from homeserver.identifiers import parse_user_id

FEDERATION_V1 = "/_matrix/federation/v1"


def _object_body(request: web.Request) -> dict:
    body = federation_body(request)
    if not isinstance(body, dict):
        raise bad_json("Content must be a JSON object")
    return body


class FederationDeviceHandlers:
    def __init__(self, server_name: str, authenticator: FederationAuthenticator, keys: KeysService,
                 user_exists: UserExists):
        self._server_name = server_name
        self._auth = authenticator
        self._keys = keys
        self._user_exists = user_exists

    async def user_devices(self, request: web.Request, origin: str) -> web.Response:
        user_id = request.match_info["userId"]
        if parse_user_id(user_id, "userId")[1] != self._server_name:
            raise invalid_param(f"userId: {user_id} is not a user of this server")
        if await self._user_exists(user_id) is None:
            raise not_found(f"userId: no user {user_id} here")
        return json_response(await self._keys.user_devices_for_federation(user_id))

    async def query_keys(self, request: web.Request, origin: str) -> web.Response:
        return json_response(await self._keys.query_for_federation(_object_body(request)))

    async def claim_keys(self, request: web.Request, origin: str) -> web.Response:
        return json_response(await self._keys.claim_for_federation(_object_body(request)))

    def register_routes(self, app: web.Application) -> None:
        route = self._auth.route
        app.router.add_get(f"{FEDERATION_V1}/user/devices/{{userId}}", route(self.user_devices))
        app.router.add_post(f"{FEDERATION_V1}/user/keys/query", route(self.query_keys))
        app.router.add_post(f"{FEDERATION_V1}/user/keys/claim", route(self.claim_keys))
