"""Server discovery and liveness: /versions, /.well-known/matrix/*, /health."""

from __future__ import annotations

from aiohttp import web

from homeserver import __version__
from homeserver.config import Config
from homeserver.errors import not_found
from homeserver.http.request import json_response

# The spec versions whose client-server features this server implements. Element needs
# v1.1 listed; mautrix bridges need v1.4 or later. Keep this honest as features land: v1.16
# waits for `use_state_after` on /sync (docs/decisions.md has the per-version reasoning).
SUPPORTED_SPEC_VERSIONS = ("r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6",
                           "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15")

# Only features actually served; clients gate whole features on these flags (Element Web starts
# cross-signing set-up only when it sees `org.matrix.e2e_cross_signing`). Extended profiles
# (MSC4133) are served at their stable v3 paths, which spec v1.16 defines; until we list v1.16
# that flag is how clients (matrix-js-sdk, ruma) learn to use them there.
UNSTABLE_FEATURES: dict[str, bool] = {
    "org.matrix.e2e_cross_signing": True,  # /keys/device_signing/upload, /keys/signatures/upload
    "org.matrix.msc2432": True,  # GET /rooms/{roomId}/aliases, also at its unstable path
    "org.matrix.msc2285.stable": True,  # private read receipts (m.read.private)
    "org.matrix.msc3827.stable": True,  # /publicRooms filter.room_types
    "org.matrix.msc3440.stable": True,  # threads: m.thread relations, /threads, thread filters
    "org.matrix.msc3771": True,  # threaded read receipts (thread_id)
    "uk.half-shot.msc2666.query_mutual_rooms.stable": True,  # GET /_matrix/client/v1/mutual_rooms
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
            raise not_found("This server does not publish /.well-known/matrix/server")
        delegated = self._config.public_baseurl.split("://", 1)[1].rstrip("/")
        if ":" not in delegated.rsplit("]", 1)[-1]:
            delegated += ":443"
        return json_response({"m.server": delegated})

    async def wellknown_support(self, request: web.Request) -> web.Response:
        support = self._config.section("support")
        body: dict[str, object] = {}
        if support.get("contacts"):
            body["contacts"] = support["contacts"]
        if support.get("support_page"):
            body["support_page"] = support["support_page"]
        if not body:
            raise not_found("This server publishes no support information")
        return json_response(body)

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
        app.router.add_get("/.well-known/matrix/support", self.wellknown_support)
        app.router.add_get("/health", self.health)
