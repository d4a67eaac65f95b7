"""What every admin API handler shares: the path prefix, the admin check, paging parameters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from homeserver.accounts.access_tokens import AuthService
from homeserver.requester import Requester
from homeserver.errors import forbidden, invalid_param
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import query_int

ADMIN_PREFIX = "/_synapse/admin"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AdminAuthenticator:
    """The requester of an admin API call: 401 without a valid token, 403 unless a server admin."""

    def __init__(self, authenticate: RequestAuthenticator, auth: AuthService):
        self._authenticate = authenticate
        self._auth = auth

    async def __call__(self, request: web.Request) -> Requester:
        requester = await self._authenticate(request)
        if not await self._auth.is_server_admin(requester.user_id):
            raise forbidden("You are not a server admin")
        return requester


def add_admin_route(app: web.Application, method: str, path: str, handler: Handler) -> None:
    """Serve `path` (starting with `/v1/`, `/v2/`...) under `/_synapse/admin`."""
    app.router.add_route(method, ADMIN_PREFIX + path, handler)


def paging(request: web.Request, default_limit: int = 100) -> tuple[int, int]:
    """`from` and `limit` query parameters: non-negative integers, 400 naming the bad one."""
    offset = query_int(request, "from", 0, minimum=0)
    limit = query_int(request, "limit", default_limit, minimum=0)
    assert offset is not None and limit is not None
    return offset, limit


def direction(request: web.Request) -> bool:
    """`dir`: `f` (default) or `b`; True when backwards."""
    value = request.query.get("dir", "f")
    if value not in ("f", "b"):
        raise invalid_param("Query parameter 'dir' must be one of ['f', 'b']")
    return value == "b"


def choice(request: web.Request, name: str, allowed: Sequence[str], default: str) -> str:
    value = request.query.get(name, default)
    if value not in allowed:
        raise invalid_param(f"Query parameter {name!r} must be one of {sorted(allowed)}")
    return value


def optional_query_bool(request: web.Request, name: str) -> bool | None:
    text = request.query.get(name)
    if text is None:
        return None
    if text == "true":
        return True
    if text == "false":
        return False
    raise invalid_param(f"Query parameter {name!r} must be 'true' or 'false'")
