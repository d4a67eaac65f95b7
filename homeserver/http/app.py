"""Building the aiohttp application of one listener: error rendering, CORS, logging, metrics.

Requests that aiohttp's HTTP parser refuses before any route runs (oversized request line or
headers, unknown method, contradictory framing) are answered with a Matrix error body too,
by `MatrixAppRunner`'s connections, and logged as one line.

Routing happens before any handler (and so before authentication) runs: a path we do
not serve is `404 M_UNRECOGNIZED` even without a token, and a known path with the
wrong method is `405 M_UNRECOGNIZED`.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong, PayloadEncodingError

from homeserver.errors import MatrixError, bad_json, invalid_param
from homeserver.http.metrics import HttpMetrics
from homeserver.http.request import MAX_BODY_KEY, X_FORWARDED_KEY, client_ip, json_response

logger = logging.getLogger("homeserver.access")
error_logger = logging.getLogger("homeserver.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, Date",
    "Access-Control-Expose-Headers": "X-Request-Id",
}

_request_ids = itertools.count(1)
REQUEST_ID_KEY = web.RequestKey("request_id", str)


def _route_name(request: web.Request) -> str:
    """The route template for metrics (bounded cardinality), not the concrete path."""
    resource = request.match_info.route.resource
    if resource is None:
        return "unmatched"
    return resource.canonical


def _safe_path(request: web.Request) -> str:
    # Never log access tokens passed in the query string.
    if "access_token" in request.query:
        query = request.query.copy()
        query["access_token"] = "<redacted>"
        return request.path + "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return request.path_qs


def _error_response(err: MatrixError) -> web.Response:
    headers = None
    if err.http_status == 429 and "retry_after_ms" in err.extra:
        headers = {"Retry-After": str(max(1, int(err.extra["retry_after_ms"]) // 1000))}
    return json_response(err.to_json(), status=err.http_status, headers=headers)


def _http_exception_as_matrix(exc: web.HTTPException) -> MatrixError:
    if isinstance(exc, web.HTTPNotFound):
        return MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MatrixError(405, "M_UNRECOGNIZED", f"Method {exc.method} is not allowed on this path")
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return MatrixError(413, "M_TOO_LARGE", "Request body is too large")
    errcode = "M_UNKNOWN" if exc.status_code >= 500 else "M_UNRECOGNIZED"
    return MatrixError(exc.status_code, errcode, exc.reason or "Error")


def _refuse_nul_in_url(request: web.Request) -> None:
    """U+0000 in a path part or query parameter is refused, as in JSON bodies."""
    for name, value in request.match_info.items():
        if "\x00" in value:
            raise invalid_param(f"{name}: must not contain U+0000")
    for name, value in request.query.items():
        if "\x00" in value or "\x00" in name:
            raise invalid_param(f"{name!r}: query parameters must not contain U+0000")


def make_middleware(metrics: HttpMetrics | None, cors: bool) -> Callable:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = f"{request.method}-{next(_request_ids)}"
        request[REQUEST_ID_KEY] = request_id
        start = time.perf_counter()
        response: web.StreamResponse
        if cors and request.method == "OPTIONS":
            response = web.Response(status=204)
        else:
            try:
                _refuse_nul_in_url(request)
                response = await handler(request)
            except MatrixError as err:
                response = _error_response(err)
            except web.HTTPException as exc:
                if 300 <= exc.status_code < 400:
                    response = exc  # redirects pass through as they are
                else:
                    response = _error_response(_http_exception_as_matrix(exc))
            except Exception:
                error_logger.exception("%s: unhandled error in %s %s", request_id, request.method, request.path)
                response = _error_response(MatrixError(500, "M_UNKNOWN", "Internal server error"))
        if cors and not response.prepared:
            response.headers.update(CORS_HEADERS)
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
        elapsed = time.perf_counter() - start
        if metrics is not None:
            metrics.observe(request.method, _route_name(request), response.status, elapsed)
        logger.info(
            "%s %s %s %s %d %.1fms",
            request_id,
            client_ip(request),
            request.method,
            _safe_path(request),
            response.status,
            elapsed * 1000,
        )
        return response

    return middleware


def build_app(*, max_body_size: int, metrics: HttpMetrics | None, cors: bool = True,
              x_forwarded: bool = False) -> web.Application:
    """An empty application with the shared middleware; callers add routes."""
    # aiohttp's own limit is one byte above ours so that we answer with our error first.
    app = web.Application(middlewares=[make_middleware(metrics, cors)], client_max_size=max_body_size + 1)
    app[MAX_BODY_KEY] = max_body_size
    app[X_FORWARDED_KEY] = x_forwarded
    return app


def _parser_error(exc: HttpProcessingError) -> MatrixError:
    """The Matrix error for a request aiohttp's parser refused; never echoes the request back."""
    reason = (getattr(exc, "message", "") or type(exc).__name__).splitlines()[0][:120].rstrip(": ")
    if isinstance(exc, LineTooLong) or reason.startswith("Too many headers"):
        return MatrixError(400, "M_TOO_LARGE", "The request line or headers are too large")
    if isinstance(exc, BadHttpMethod):
        return MatrixError(400, "M_UNRECOGNIZED", "Unrecognized HTTP method")
    if isinstance(exc, PayloadEncodingError):
        return bad_json(f"The request body could not be read: {reason}")
    return MatrixError(400, "M_UNRECOGNIZED", f"Malformed HTTP request: {reason}")


class _MatrixRequestHandler(web.RequestHandler):
    """A connection whose own error responses (those no route produced) are Matrix JSON."""

    __slots__ = ()

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        if isinstance(exc, HttpProcessingError):
            err = _parser_error(exc)
            error_logger.info("Refused an unparsable request from %s: %s %s", request.remote, err.errcode,
                              err.message)
        else:
            # Not a client's fault: everything a handler raises is caught by the middleware.
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
            err = MatrixError(status if status >= 400 else 500, "M_UNKNOWN", "Internal server error")
        response = json_response(err.to_json(), status=err.http_status)
        response.force_close()
        return response


class _MatrixServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _MatrixRequestHandler(self, loop=self._loop, **self._kwargs)


class MatrixAppRunner(web.AppRunner):
    """An AppRunner whose connections answer requests refused by the HTTP parser with Matrix errors."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _MatrixServer(server.request_handler, request_factory=server.request_factory,
                             loop=server._loop, **server._kwargs)

