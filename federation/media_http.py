"""Routes of the federation content repository: GET /_matrix/federation/v1/media/download/{mediaId} and
/media/thumbnail/{mediaId}, behind X-Matrix authentication. Only this server's own media is served
(never fetched onwards), as a multipart/mixed answer: an empty JSON metadata part, then the bytes with
the same Content-Type and Content-Disposition a client download gets."""

from __future__ import annotations

import asyncio
import secrets

from aiohttp import web

from federation.auth import FederationAuthenticator
from homeserver.errors import missing_param
from homeserver.http.request import query_bool, query_int
from homeserver.media.service import MediaFile, MediaService
from homeserver.media.serving import content_disposition, served_content_type

FEDERATION_MEDIA = "/_matrix/federation/v1/media"
CHUNK_BYTES = 256 * 1024


async def multipart_media_response(request: web.Request, media: MediaFile, file_name: str | None
                                   ) -> web.StreamResponse:
    """Stream `media` as the spec's two-part multipart/mixed answer (metadata `{}`, then the content)."""
    boundary = secrets.token_hex(16)
    head = (
        f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n"
        f"--{boundary}\r\nContent-Type: {served_content_type(media.content_type)}\r\n"
        f"Content-Disposition: {content_disposition(media.content_type, file_name)}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    response = web.StreamResponse(headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})
    response.content_length = len(head) + media.length + len(tail)
    await response.prepare(request)
    await response.write(head)
    with open(media.path, "rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
            await response.write(chunk)
    await response.write(tail)
    await response.write_eof()
    return response


def _required_int(request: web.Request, name: str) -> int:
    if name not in request.query:
        raise missing_param(f"{name}: the query parameter is required")
    value = query_int(request, name, minimum=0)
    assert value is not None
    return value


class FederationMediaHandlers:
    def __init__(self, server_name: str, authenticator: FederationAuthenticator, media: MediaService):
        self._server_name = server_name
        self._auth = authenticator
        self._media = media

    async def download(self, request: web.Request, origin: str) -> web.StreamResponse:
        media = await self._media.get_media(self._server_name, request.match_info["mediaId"], allow_remote=False,
                                            timeout_ms=query_int(request, "timeout_ms", minimum=0))
        return await multipart_media_response(request, media, media.upload_name)

    async def thumbnail(self, request: web.Request, origin: str) -> web.StreamResponse:
        width, height = _required_int(request, "width"), _required_int(request, "height")
        media = await self._media.get_thumbnail(
            self._server_name, request.match_info["mediaId"], width, height, request.query.get("method", "scale"),
            animated=query_bool(request, "animated", False), allow_remote=False,
            timeout_ms=query_int(request, "timeout_ms", minimum=0))
        extension = (media.content_type or "").rpartition("/")[2] or "bin"
        return await multipart_media_response(request, media, f"thumbnail.{extension}")

    def register_routes(self, app: web.Application) -> None:
        route = self._auth.route
        app.router.add_get(f"{FEDERATION_MEDIA}/download/{{mediaId}}", route(self.download))
        app.router.add_get(f"{FEDERATION_MEDIA}/thumbnail/{{mediaId}}", route(self.thumbnail))
