"""The HTTP core on a real loopback socket: errors, bodies, CORS, shutdown."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.app import build_app
from homeserver.http.metrics import HttpMetrics
from homeserver.http.request import json_object, json_response, query_int


async def echo(request: web.Request) -> web.Response:
    return json_response({"got": await json_object(request)})


async def explode(request: web.Request) -> web.Response:
    raise RuntimeError("secret internals")


async def refuse(request: web.Request) -> web.Response:
    raise MatrixError(403, "M_FORBIDDEN", "You may not")


async def limited(request: web.Request) -> web.Response:
    return json_response({"limit": query_int(request, "limit", 10, minimum=0)})


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(0.5)
    return json_response({"done": True})


@pytest.fixture
async def core_server():
    metrics = HttpMetrics()
    app = build_app(max_body_size=2048, metrics=metrics)
    app.router.add_post("/_matrix/client/v3/echo", echo)
    app.router.add_get("/_matrix/client/v3/explode", explode)
    app.router.add_get("/_matrix/client/v3/refuse", refuse)
    app.router.add_get("/_matrix/client/v3/limited", limited)
    app.router.add_get("/_matrix/client/v3/slow", slow)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
        yield session, runner, metrics
    await runner.cleanup()


async def test_a_json_object_body_reaches_the_handler(core_server):
    session, _, _ = core_server
    async with session.post("/_matrix/client/v3/echo", json={"a": 1}) as resp:
        assert resp.status == 200
        assert await resp.json() == {"got": {"a": 1}}


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe{}", b'{"a": NaN}', b'{"a": Infinity}', b""])
async def test_malformed_json_is_m_not_json(core_server, body):
    session, _, _ = core_server
    async with session.post("/_matrix/client/v3/echo", data=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["errcode"] == "M_NOT_JSON"


async def test_json_that_is_not_an_object_is_m_bad_json(core_server):
    session, _, _ = core_server
    async with session.post("/_matrix/client/v3/echo", data=b"[1, 2]") as resp:
        assert resp.status == 400
        assert (await resp.json())["errcode"] == "M_BAD_JSON"


async def test_an_oversized_body_is_m_too_large(core_server):
    session, _, _ = core_server
    async with session.post("/_matrix/client/v3/echo", data=b"{" + b" " * 4096 + b"}") as resp:
        assert resp.status == 413
        assert (await resp.json())["errcode"] == "M_TOO_LARGE"


async def test_an_oversized_chunked_body_is_m_too_large(core_server):
    session, _, _ = core_server

    async def chunks():
        for _ in range(10):
            yield b" " * 1024

    async with session.post("/_matrix/client/v3/echo", data=chunks()) as resp:
        assert resp.status == 413
        assert (await resp.json())["errcode"] == "M_TOO_LARGE"


async def test_an_unknown_path_is_m_unrecognized_with_cors_headers(core_server):
    session, _, _ = core_server
    async with session.get("/_matrix/client/v3/no/such/thing") as resp:
        assert resp.status == 404
        assert (await resp.json())["errcode"] == "M_UNRECOGNIZED"
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_a_known_path_with_the_wrong_method_is_405_m_unrecognized(core_server):
    session, _, _ = core_server
    async with session.delete("/_matrix/client/v3/echo") as resp:
        assert resp.status == 405
        assert (await resp.json())["errcode"] == "M_UNRECOGNIZED"


async def test_cors_preflight_is_answered_for_any_path(core_server):
    session, _, _ = core_server
    headers = {"Origin": "https://app.element.io", "Access-Control-Request-Method": "POST"}
    async with session.options("/_matrix/client/v3/echo", headers=headers) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]


async def test_a_matrix_error_is_rendered_with_its_status(core_server):
    session, _, _ = core_server
    async with session.get("/_matrix/client/v3/refuse") as resp:
        assert resp.status == 403
        assert await resp.json() == {"errcode": "M_FORBIDDEN", "error": "You may not"}
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_an_unhandled_error_is_a_500_without_a_traceback(core_server):
    session, _, _ = core_server
    async with session.get("/_matrix/client/v3/explode") as resp:
        assert resp.status == 500
        body = await resp.text()
        assert "M_UNKNOWN" in body
        assert "secret internals" not in body and "Traceback" not in body


async def test_a_malformed_integer_parameter_names_the_parameter(core_server):
    session, _, _ = core_server
    async with session.get("/_matrix/client/v3/limited?limit=ten") as resp:
        assert resp.status == 400
        body = await resp.json()
        assert body["errcode"] == "M_INVALID_PARAM" and body["error"].startswith("limit:")


async def test_requests_are_counted_by_route_template(core_server):
    session, _, metrics = core_server
    async with session.get("/_matrix/client/v3/limited?limit=3") as resp:
        assert resp.status == 200
    value = metrics.registry.get_sample_value(
        "http_requests_total", {"method": "GET", "route": "/_matrix/client/v3/limited", "status": "200"}
    )
    assert value == 1.0


async def test_shutdown_lets_an_in_flight_request_finish(core_server):
    session, runner, _ = core_server
    request = asyncio.create_task(session.get("/_matrix/client/v3/slow"))
    await asyncio.sleep(0.1)
    await runner.cleanup()
    resp = await request
    assert resp.status == 200
    assert await resp.json() == {"done": True}
