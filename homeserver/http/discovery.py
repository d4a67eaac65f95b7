"""Server discovery and liveness: /versions, /.well-known/matrix/*, /health."""

from __future__ import annotations

from aiohttp import web

from homeserver import __version__
from homeserver.config import Config
from homeserver.errors import MatrixError
from homeserver.http.request import json_response

# The spec versions whose client-server features this server implements. Element needs
# v1.1 listed; mautrix bridges need v1.4 or later. Keep this honest as features land.
SUPPORTED_SPEC_VERSIONS = ("r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6",
                           "v1.7", "v1.8", "v1.9", "v1.10", "v1.11")

# Only features actually served. Extended profiles (MSC4133) are served at their stable v3 paths,
# which spec v1.16 defines; until we list v1.16 this flag is how clients (matrix-js-sdk, ruma)
# learn to use them there.
UNSTABLE_FEATURES: dict[str, bool] = {
    "uk.tcpip.msc4133.stable": True,
    # Simplified sliding sync (MSC4186); matrix-rust-sdk (Element X) looks for this flag.
    "org.matrix.simplified_msc3575": True,
}


class DiscoveryHandlers:
    def __init__(self, config: Config):
        self._config = config

    async def versions(self, request: web.Request) -> web.Response:
        return json_response({"versions": list(SUPPORTED_SPEC_VERSIONS), "unstable_features": UNSTABLE_FEATURES})

    async def wellknown_client(self, request: web.Request) -> web.Response:
        return json_response({"m.homeserver": {"base_url": self._config.public_baseurl}})

    async def wellknown_server(self, request: web.Request) -> web.Response:
        if not self._config.serve_server_wellknown:
            raise MatrixError(404, "M_NOT_FOUND", "This server does not publish /.well-known/matrix/server")
        delegated = self._config.public_baseurl.split("://", 1)[1].rstrip("/")
        if ":" not in delegated.rsplit("]", 1)[-1]:
            delegated += ":443"
        return json_response({"m.server": delegated})

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK", content_type="text/plain")

    async def federation_version(self, request: web.Request) -> web.Response:
        return json_response({"server": {"name": "huiskamer-homeserver", "version": __version__}})

    def register_federation(self, app: web.Application) -> None:
        app.router.add_get("/_matrix/federation/v1/version", self.federation_version)

    def register_client(self, app: web.Application) -> None:
        app.router.add_get("/_matrix/client/versions", self.versions)
        app.router.add_get("/.well-known/matrix/client", self.wellknown_client)
        app.router.add_get("/.well-known/matrix/server", self.wellknown_server)
        app.router.add_get("/health", self.health)
