"""Registering handlers under the Matrix path prefixes clients actually call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Older Element and matrix-nio still call r0; the spec's current prefix is v3.
CLIENT_PREFIXES_V3 = ("/_matrix/client/v3", "/_matrix/client/r0")


def add_client_route(app: web.Application, method: str, path: str, handler: Handler,
                     prefixes: Iterable[str] = CLIENT_PREFIXES_V3) -> None:
    """Serve `path` (starting with `/`) under each client prefix."""
    for prefix in prefixes:
        app.router.add_route(method, prefix + path, handler)
