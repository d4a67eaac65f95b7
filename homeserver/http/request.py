"""Request helpers shared by every handler: JSON bodies, query parameters, access tokens."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver import jsonutil
from homeserver.client_input import MIN_SAFE_INT, check_json_value, parse_int_text
from homeserver.errors import MatrixError, bad_json, invalid_param

# Set by the app on each request: the listener's configured body limit.
MAX_BODY_KEY = web.AppKey("max_body_size", int)
X_FORWARDED_KEY = web.AppKey("x_forwarded", bool)


async def read_body(request: web.Request) -> bytes:
    """The raw body, refused with 413 M_TOO_LARGE past the listener's limit."""
    limit = request.app[MAX_BODY_KEY]
    if request.content_length is not None and request.content_length > limit:
        raise MatrixError(413, "M_TOO_LARGE", f"Request body is larger than the limit of {limit} bytes")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise MatrixError(413, "M_TOO_LARGE", f"Request body is larger than the limit of {limit} bytes") from None


async def json_body(request: web.Request, *, allow_empty: bool = False) -> Any:
    """Any JSON value from the body; `400 M_NOT_JSON` if it does not parse."""
    raw = await read_body(request)
    if not raw.strip() and allow_empty:
        return {}
    try:
        value = jsonutil.decode(raw)
    except jsonutil.JSONDecodeError as e:
        raise MatrixError(400, "M_NOT_JSON", f"Content is not valid JSON: {e}") from None
    check_json_value(value)
    return value


async def json_object(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """A JSON object from the body: `M_NOT_JSON` if unparsable, `M_BAD_JSON` if not an object."""
    value = await json_body(request, allow_empty=allow_empty)
    if not isinstance(value, dict):
        raise bad_json("Content must be a JSON object")
    return value


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=jsonutil.encode(body), status=status, content_type="application/json",
                        headers=headers)


def access_token(request: web.Request) -> str | None:
    """The access token from `Authorization: Bearer` or the deprecated `access_token` query param.

    A request may carry one token only: a header together with the query parameter, or two
    headers, is refused (`401 M_MISSING_TOKEN`, as Synapse does) rather than trusting either.
    """
    headers = request.headers.getall("Authorization", [])
    if len(headers) > 1:
        raise MatrixError(401, "M_MISSING_TOKEN", "Too many Authorization headers")
    if headers and "access_token" in request.query:
        raise MatrixError(401, "M_MISSING_TOKEN",
                          "Mixing the Authorization header and the access_token query parameter")
    if len(request.query.getall("access_token", [])) > 1:
        raise MatrixError(401, "M_MISSING_TOKEN", "Too many access_token query parameters")
    header = headers[0] if headers else None
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise MatrixError(401, "M_MISSING_TOKEN", "Invalid Authorization header: expected 'Bearer <token>'")
        return token.strip()
    return request.query.get("access_token")


def query_int(request: web.Request, name: str, default: int | None = None, *, minimum: int | None = None,
              maximum: int | None = None) -> int | None:
    """An integer query parameter in the safe range; `400 M_INVALID_PARAM` naming it when malformed
    or out of range. Values above `maximum` are clamped to it."""
    text = request.query.get(name)
    if text is None:
        return default
    value = parse_int_text(text, name, minimum=MIN_SAFE_INT if minimum is None else minimum)
    if maximum is not None and value > maximum:
        value = maximum
    return value


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    text = request.query.get(name)
    if text is None:
        return default
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise invalid_param(f"Query parameter {name!r} must be true or false")


def client_ip(request: web.Request) -> str:
    """The client's address; X-Forwarded-For is believed only when the config says so."""
    if request.app.get(X_FORWARDED_KEY):
        forwarded = request.headers.get("X-Forwarded-For")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.remote or "-"
