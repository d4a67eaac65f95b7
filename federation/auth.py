"""Authenticating inbound federation requests by their X-Matrix signature.

`FederationAuthenticator.authenticate(request)` returns the verified origin server name or raises
`401 M_UNAUTHORIZED` with the reason (missing or malformed header, wrong destination, unknown or
expired key, bad signature), or `403 M_FORBIDDEN` when our server lists refuse the origin. Checks
that depend on the room (server ACLs) register with `add_acl_check` and run afterwards.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from federation.keys import KeyLookup, KeyLookupError
from federation.policy import ServerPolicy
from federation.x_matrix import XMatrixParseError, parse_x_matrix, signed_request_json
from homeserver import jsonutil
from homeserver.clock import Clock
from homeserver.errors import MatrixError, forbidden
from homeserver.events.signing import SignatureError, verify_json_signature
from homeserver.http.request import read_body
from homeserver.identifiers import parse_server_name

ORIGIN_KEY = web.RequestKey("federation_origin", str)
BODY_KEY = web.RequestKey("federation_body", object)

# (origin, request) -> None, raising MatrixError(403, "M_FORBIDDEN", ...) to refuse.
AclCheck = Callable[[str, web.Request], Awaitable[None]]
# origin -> None: told of every origin that authenticated (it is up: a destination backing off may retry).
OriginListener = Callable[[str], Awaitable[None]]
FederationHandler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


def unauthorized(reason: str) -> MatrixError:
    return MatrixError(401, "M_UNAUTHORIZED", reason)


class FederationAuthenticator:
    def __init__(self, server_name: str, keys: KeyLookup, clock: Clock, policy: ServerPolicy):
        self._server_name = server_name
        self._keys = keys
        self._clock = clock
        self._policy = policy
        self._acl_checks: list[AclCheck] = []
        self._origin_listeners: list[OriginListener] = []

    def add_acl_check(self, check: AclCheck) -> None:
        """Run `check(origin, request)` after the signature verified; it may refuse with 403."""
        self._acl_checks.append(check)

    def add_origin_listener(self, listener: OriginListener) -> None:
        """Call `listener(origin)` after each successfully authenticated request."""
        self._origin_listeners.append(listener)

    async def authenticate(self, request: web.Request) -> str:
        headers = [h for h in request.headers.getall("Authorization", []) if h.lower().startswith("x-matrix")]
        if not headers:
            raise unauthorized("Missing X-Matrix Authorization header")
        try:
            auth = parse_x_matrix(headers[0])
        except XMatrixParseError as e:
            raise unauthorized(f"Malformed X-Matrix Authorization header: {e}") from None
        try:
            parse_server_name(auth.origin)
        except ValueError:
            raise unauthorized(f"origin: {auth.origin!r} is not a valid server name") from None
        if auth.destination is not None and auth.destination != self._server_name:
            raise unauthorized(f"destination: {auth.destination!r} is not this server ({self._server_name})")
        reason = self._policy.denial_reason(auth.origin)
        if reason is not None:
            raise forbidden(reason)
        raw = await read_body(request)
        content: Any = None
        if raw:
            try:
                content = jsonutil.decode(raw)
            except jsonutil.JSONDecodeError as e:
                raise MatrixError(400, "M_NOT_JSON", f"Content is not valid JSON: {e}") from None
        request[BODY_KEY] = content
        try:
            key = await self._keys.get_verify_key(auth.origin, auth.key, valid_at_ts=self._clock.time_ms())
        except KeyLookupError as e:
            raise unauthorized(f"Cannot verify the request signature: {e}") from None
        except ValueError as e:  # a key ID of an algorithm we do not know
            raise unauthorized(f"key: {e}") from None
        signed = signed_request_json(auth, request.method, request.raw_path, self._server_name, content)
        try:
            verify_json_signature(signed, auth.origin, key)
        except SignatureError:
            raise unauthorized(f"Invalid signature by {auth.origin} with key {auth.key}") from None
        for check in self._acl_checks:
            await check(auth.origin, request)
        request[ORIGIN_KEY] = auth.origin
        for listener in self._origin_listeners:
            await listener(auth.origin)
        return auth.origin

    def route(self, handler: FederationHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap a handler taking (request, origin) so it only runs for an authenticated origin."""

        async def authenticated(request: web.Request) -> web.StreamResponse:
            origin = await self.authenticate(request)
            return await handler(request, origin)

        return authenticated


def federation_body(request: web.Request) -> Any:
    """The JSON body `authenticate` already parsed (None when there was none)."""
    return request.get(BODY_KEY)
