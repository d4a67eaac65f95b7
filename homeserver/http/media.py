"""Media API: uploads (/_matrix/media/v3, v1/create), authenticated downloads, thumbnails, config and
URL previews (/_matrix/client/v1/media), and the deprecated unauthenticated /_matrix/media/v3 reads."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from homeserver.errors import missing_param
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_response, query_bool, query_int
from homeserver.media.service import MediaFile, MediaService
from homeserver.media.serving import media_headers

CLIENT_V1 = "/_matrix/client/v1/media"
LEGACY_PREFIXES = ("/_matrix/media/v3", "/_matrix/media/r0")


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    # Chunks as they arrive: aiohttp pauses the socket when its buffer fills, so memory stays bounded.
    async for chunk in request.content.iter_any():
        yield chunk


def _file_response(media: MediaFile, file_name: str | None) -> web.FileResponse:
    # FileResponse streams from disk (sendfile where possible) and answers Range requests with 206.
    return web.FileResponse(media.path, headers=media_headers(media.content_type, file_name))


class MediaHandlers:
    def __init__(self, media: MediaService, authenticate: RequestAuthenticator):
        self._media = media
        self._authenticate = authenticate

    # --- uploads ----------------------------------------------------------------
    async def upload(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        mxc = await self._media.upload(
            requester.user_id, _body_chunks(request), content_length=request.content_length,
            content_type=request.headers.get("Content-Type"), upload_name=request.query.get("filename"),
        )
        return json_response({"content_uri": mxc})

    async def create(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response(await self._media.create_media_id(requester.user_id))

    async def upload_to_reserved(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        await self._media.upload_to_reserved(
            requester.user_id, request.match_info["server_name"], request.match_info["media_id"],
            _body_chunks(request), content_length=request.content_length,
            content_type=request.headers.get("Content-Type"), upload_name=request.query.get("filename"),
        )
        return json_response({})

    # --- reads ------------------------------------------------------------------
    async def download(self, request: web.Request) -> web.StreamResponse:
        await self._authenticate(request, allow_guest=True)
        return await self._download(request, unauthenticated=False)

    async def legacy_download(self, request: web.Request) -> web.StreamResponse:
        return await self._download(request, unauthenticated=True)

    async def _download(self, request: web.Request, *, unauthenticated: bool) -> web.StreamResponse:
        m = request.match_info
        media = await self._media.get_media(
            m["server_name"], m["media_id"], allow_remote=query_bool(request, "allow_remote", True),
            timeout_ms=query_int(request, "timeout_ms", minimum=0), unauthenticated=unauthenticated,
        )
        return _file_response(media, m.get("file_name") or media.upload_name)

    async def thumbnail(self, request: web.Request) -> web.StreamResponse:
        await self._authenticate(request, allow_guest=True)
        return await self._thumbnail(request, unauthenticated=False)

    async def legacy_thumbnail(self, request: web.Request) -> web.StreamResponse:
        return await self._thumbnail(request, unauthenticated=True)

    async def _thumbnail(self, request: web.Request, *, unauthenticated: bool) -> web.StreamResponse:
        m = request.match_info
        width, height = _required_int(request, "width"), _required_int(request, "height")
        media = await self._media.get_thumbnail(
            m["server_name"], m["media_id"], width, height, request.query.get("method", "scale"),
            animated=query_bool(request, "animated", False),
            allow_remote=query_bool(request, "allow_remote", True),
            timeout_ms=query_int(request, "timeout_ms", minimum=0), unauthenticated=unauthenticated,
        )
        extension = (media.content_type or "").rpartition("/")[2] or "bin"
        return _file_response(media, f"thumbnail.{extension}")

    async def config(self, request: web.Request) -> web.Response:
        await self._authenticate(request, allow_guest=True)
        return json_response(self._media.config())

    async def preview_url(self, request: web.Request) -> web.Response:
        await self._authenticate(request)
        url = request.query.get("url")
        if not url:
            raise missing_param("url: the query parameter is required")
        query_int(request, "ts", minimum=0)  # validated; previews are always of the page as it is now
        return json_response(await self._media.preview_url(url))

    def register_routes(self, app: web.Application) -> None:
        router = app.router
        for prefix in LEGACY_PREFIXES:
            router.add_post(f"{prefix}/upload", self.upload)
            router.add_put(f"{prefix}/upload/{{server_name}}/{{media_id}}", self.upload_to_reserved)
        router.add_post("/_matrix/media/v1/create", self.create)

        previews = self._media.previewer is not None
        router.add_get(f"{CLIENT_V1}/download/{{server_name}}/{{media_id}}", self.download)
        router.add_get(f"{CLIENT_V1}/download/{{server_name}}/{{media_id}}/{{file_name}}", self.download)
        router.add_get(f"{CLIENT_V1}/thumbnail/{{server_name}}/{{media_id}}", self.thumbnail)
        router.add_get(f"{CLIENT_V1}/config", self.config)
        if previews:
            router.add_get(f"{CLIENT_V1}/preview_url", self.preview_url)
        for prefix in LEGACY_PREFIXES:
            router.add_get(f"{prefix}/download/{{server_name}}/{{media_id}}", self.legacy_download)
            router.add_get(f"{prefix}/download/{{server_name}}/{{media_id}}/{{file_name}}", self.legacy_download)
            router.add_get(f"{prefix}/thumbnail/{{server_name}}/{{media_id}}", self.legacy_thumbnail)
            # The legacy config and preview endpoints always required a token; only reads were open.
            router.add_get(f"{prefix}/config", self.config)
            if previews:
                router.add_get(f"{prefix}/preview_url", self.preview_url)


def _required_int(request: web.Request, name: str) -> int:
    if name not in request.query:
        raise missing_param(f"{name}: the query parameter is required")
    value = query_int(request, name, minimum=0)
    assert value is not None
    return value
