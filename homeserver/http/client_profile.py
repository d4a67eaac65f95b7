"""Client API: /profile/{userId} and its fields."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.profiles import DISPLAYNAME, ProfileService
from homeserver.errors import missing_param
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import access_token, json_object, json_response
from homeserver.http.routing import add_client_route


class ProfileHandlers:
    def __init__(
        self,
        profiles: ProfileService,
        authenticate: RequestAuthenticator,
        *,
        require_auth_for_lookup: bool = False,
    ):
        self._profiles = profiles
        self._authenticate = authenticate
        # The spec lets anyone look profiles up; a deployment may demand a token instead.
        self._require_auth_for_lookup = require_auth_for_lookup

    async def _authenticate_lookup(self, request: web.Request) -> None:
        # A token that is sent must be valid even where none is needed.
        if self._require_auth_for_lookup or access_token(request) is not None:
            await self._authenticate(request, allow_guest=True)

    async def get_profile(self, request: web.Request) -> web.Response:
        await self._authenticate_lookup(request)
        return json_response(await self._profiles.get_profile(request.match_info["user_id"]))

    async def get_field(self, request: web.Request) -> web.Response:
        await self._authenticate_lookup(request)
        user_id, key = request.match_info["user_id"], request.match_info["key"]
        return json_response(await self._profiles.get_field(user_id, key))

    async def set_field(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        # Guests may name themselves, as Synapse lets them, but change nothing else.
        requester = await self._authenticate(request, allow_guest=key == DISPLAYNAME)
        body = await json_object(request)
        if key not in body:
            raise missing_param(f"{key}: missing from the request body")
        await self._profiles.set_field(requester.user_id, request.match_info["user_id"], key, body[key])
        return json_response({})

    async def delete_field(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        requester = await self._authenticate(request, allow_guest=key == DISPLAYNAME)
        await self._profiles.delete_field(requester.user_id, request.match_info["user_id"], key)
        return json_response({})

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "GET", "/profile/{user_id}", self.get_profile)
        add_client_route(app, "GET", "/profile/{user_id}/{key}", self.get_field)
        add_client_route(app, "PUT", "/profile/{user_id}/{key}", self.set_field)
        add_client_route(app, "DELETE", "/profile/{user_id}/{key}", self.delete_field)
