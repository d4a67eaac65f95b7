"""The federation HTTP surface that needs no event pipeline: key publishing and the notary,
/query/profile, /query/directory and /publicRooms (/version, unauthenticated by the spec, is served
by homeserver/http/discovery.py). Handlers stay thin: they parse, call a service, and answer."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from federation.auth import FederationAuthenticator, federation_body
from federation.keys import KeyFetcher, LocalKeys
from homeserver.accounts.profiles import ProfileService
from homeserver.directory.aliases import AliasService
from homeserver.directory.public_rooms import (
    PublicRoomsQuery,
    RoomDirectoryService,
    parse_limit,
    parse_public_rooms_body,
    parse_since,
)
from homeserver.errors import bad_json, invalid_param, missing_param
from homeserver.http.request import json_object, json_response, query_int
from homeserver.identifiers import parse_server_name, parse_user_id

FEDERATION_V1 = "/_matrix/federation/v1"


def _minimum_valid_until(value: Any, field: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_param(f"{field}: must be an integer timestamp")
    return value


class KeyHandlers:
    """`/_matrix/key/v2/server` and the notary `/_matrix/key/v2/query`; unauthenticated, as specified."""

    def __init__(self, local: LocalKeys, fetcher: KeyFetcher):
        self._local = local
        self._fetcher = fetcher

    async def server_keys(self, request: web.Request) -> web.Response:
        return json_response(self._local.server_keys_response())

    async def _answer(self, wanted: dict[str, int]) -> web.Response:
        responses = []
        for server_name, minimum in wanted.items():
            response = await self._fetcher.notary_response(server_name, minimum)
            if response is not None:
                responses.append(response)
        return json_response({"server_keys": responses})

    async def query_get(self, request: web.Request) -> web.Response:
        server_name = request.match_info["serverName"]
        try:
            parse_server_name(server_name)
        except ValueError as e:
            raise invalid_param(f"serverName: {e}") from None
        minimum = query_int(request, "minimum_valid_until_ts", 0, minimum=0) or 0
        return await self._answer({server_name: minimum})

    async def query_post(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        server_keys = body.get("server_keys")
        if not isinstance(server_keys, dict):
            raise bad_json("server_keys: must be an object of server names")
        wanted: dict[str, int] = {}
        for server_name, key_ids in server_keys.items():
            try:
                parse_server_name(server_name)
            except ValueError as e:
                raise invalid_param(f"server_keys: {e}") from None
            if not isinstance(key_ids, dict):
                raise bad_json(f"server_keys.{server_name}: must be an object of key IDs")
            minimum = 0
            for key_id, criteria in key_ids.items():
                if not isinstance(criteria, dict):
                    raise bad_json(f"server_keys.{server_name}.{key_id}: must be an object")
                field = f"server_keys.{server_name}.{key_id}.minimum_valid_until_ts"
                minimum = max(minimum, _minimum_valid_until(criteria.get("minimum_valid_until_ts"), field))
            wanted[server_name] = minimum
        return await self._answer(wanted)

    def register_routes(self, app: web.Application) -> None:
        app.router.add_get("/_matrix/key/v2/server", self.server_keys)
        # The key ID suffix is deprecated; servers answer with all their keys regardless.
        app.router.add_get("/_matrix/key/v2/server/{keyId}", self.server_keys)
        app.router.add_get("/_matrix/key/v2/query/{serverName}", self.query_get)
        app.router.add_post("/_matrix/key/v2/query", self.query_post)


class FederationQueryHandlers:
    """Read-only federation endpoints, every one behind X-Matrix authentication."""

    def __init__(self, server_name: str, authenticator: FederationAuthenticator, profiles: ProfileService,
                 aliases: AliasService, directory: RoomDirectoryService):
        self._server_name = server_name
        self._auth = authenticator
        self._profiles = profiles
        self._aliases = aliases
        self._directory = directory

    async def query_profile(self, request: web.Request, origin: str) -> web.Response:
        user_id = request.query.get("user_id")
        if user_id is None:
            raise missing_param("user_id: required")
        if parse_user_id(user_id, "user_id")[1] != self._server_name:
            raise invalid_param(f"user_id: {user_id} is not a user of this server")
        field = request.query.get("field")
        if field is None:
            return json_response(await self._profiles.get_profile(user_id))
        return json_response(await self._profiles.get_field(user_id, field))

    async def query_directory(self, request: web.Request, origin: str) -> web.Response:
        alias = request.query.get("room_alias")
        if alias is None:
            raise missing_param("room_alias: required")
        return json_response(await self._aliases.resolve(alias))

    async def public_rooms_get(self, request: web.Request, origin: str) -> web.Response:
        query = PublicRoomsQuery(limit=parse_limit(query_int(request, "limit", minimum=0)),
                                 offset=parse_since(request.query.get("since")))
        return json_response(await self._directory.public_rooms(query))

    async def public_rooms_post(self, request: web.Request, origin: str) -> web.Response:
        body = federation_body(request)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise bad_json("Content must be a JSON object")
        return json_response(await self._directory.public_rooms(parse_public_rooms_body(body)))

    def register_routes(self, app: web.Application) -> None:
        route = self._auth.route
        app.router.add_get(f"{FEDERATION_V1}/query/profile", route(self.query_profile))
        app.router.add_get(f"{FEDERATION_V1}/query/directory", route(self.query_directory))
        app.router.add_get(f"{FEDERATION_V1}/publicRooms", route(self.public_rooms_get))
        app.router.add_post(f"{FEDERATION_V1}/publicRooms", route(self.public_rooms_post))
