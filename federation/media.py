"""Fetching media from its origin server (implements homeserver/media/remote.RemoteMediaFetcher).

The authenticated `/_matrix/federation/v1/media/download` endpoint first: a multipart/mixed answer whose
first part is JSON metadata and whose second is the media or a `Location` to fetch it from. Servers that
do not know that endpoint (404/405 M_UNRECOGNIZED, or the older 400) get the deprecated
`/_matrix/media/v3/download` with `allow_remote=false`, as the spec asks. Redirects are followed with
the IP block list applied to every hop. Every step has a time limit, and the caller caps the bytes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp.multipart import (
    BodyPartReader,
    MultipartReader,
    content_disposition_filename,
    parse_content_disposition,
)

from federation.client import (
    FederationClient,
    FederationDenied,
    FederationError,
    FederationHttpError,
    quote_segment,
)
from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.media.remote import RemoteMedia

logger = logging.getLogger(__name__)

FEDERATION_MEDIA = "/_matrix/federation/v1/media/download"
LEGACY_MEDIA = "/_matrix/media/v3/download"
# The metadata part is a small JSON object; anything bigger is not a media answer.
MAX_METADATA_BYTES = 64 * 1024
# However slowly the origin sends a large file, the download ends after this long.
MAX_DOWNLOAD_SECONDS = 600.0
CHUNK_BYTES = 64 * 1024


def is_unknown_endpoint(error: FederationHttpError) -> bool:
    """Whether the origin does not know the endpoint (as Synapse judges it, older servers included)."""
    if error.status in (404, 405):
        return not isinstance(error.body, dict) or error.errcode == "M_UNRECOGNIZED"
    return error.status == 400 and error.errcode == "M_UNRECOGNIZED"


def media_error(error: FederationError, server_name: str, media_id: str) -> MatrixError:
    """The client's error for a failed fetch: the origin's not-found and pending answers passed on,
    our own refusal as 403, everything else (unreachable, garbage, 5xx) 502."""
    what = f"mxc://{server_name}/{media_id}"
    if isinstance(error, FederationHttpError):
        if error.status == 404:
            return not_found(f"mediaId: {what} is not known to its server")
        if error.status == 504 and error.errcode == "M_NOT_YET_UPLOADED":
            return MatrixError(504, "M_NOT_YET_UPLOADED", f"mediaId: {what} has not been uploaded yet")
        if error.errcode == "M_TOO_LARGE":
            return MatrixError(502, "M_TOO_LARGE", f"mediaId: {what} is too large for its server to serve")
    if isinstance(error, FederationDenied):
        return forbidden(f"mediaId: fetching {what} is not allowed: {error}")
    return MatrixError(502, "M_UNKNOWN", f"mediaId: could not fetch {what}: {error}")


def upload_name_of(headers: Any) -> str | None:
    """The file name a Content-Disposition header gives (RFC 6266, `filename*` preferred), if any."""
    value = headers.get("Content-Disposition")
    if not value:
        return None
    try:
        _, params = parse_content_disposition(value)
        name = content_disposition_filename(params, "filename")
    except (ValueError, UnicodeError):
        return None
    return name or None


def _declared_length(headers: Any) -> int | None:
    try:
        return int(headers.get("Content-Length", ""))
    except ValueError:
        return None


class FederationMediaFetcher:
    def __init__(self, client: FederationClient):
        self._client = client

    async def fetch(self, server_name: str, media_id: str, *, max_size: int, timeout_ms: int) -> RemoteMedia:
        """Start downloading mxc://server_name/media_id from its origin (see RemoteMediaFetcher)."""
        # `timeout_ms` bounds connecting and each wait for bytes; the whole download has a wider bound.
        wait_s = max(timeout_ms, 1000) / 1000
        timeout = aiohttp.ClientTimeout(total=MAX_DOWNLOAD_SECONDS, connect=wait_s, sock_read=wait_s)
        try:
            try:
                return await self._fetch_federation(server_name, media_id, max_size, timeout_ms, timeout)
            except FederationHttpError as e:
                if not is_unknown_endpoint(e):
                    raise
            logger.info("%s has no federation media endpoint; using %s", server_name, LEGACY_MEDIA)
            return await self._fetch_legacy(server_name, media_id, max_size, timeout_ms, timeout)
        except FederationError as e:
            logger.info("fetching mxc://%s/%s failed: %s", server_name, media_id, e)
            raise media_error(e, server_name, media_id) from None

    async def _fetch_federation(self, server_name: str, media_id: str, max_size: int, timeout_ms: int,
                                timeout: aiohttp.ClientTimeout) -> RemoteMedia:
        response = await self._client.open_stream(
            server_name, f"{FEDERATION_MEDIA}/{quote_segment(media_id)}", query={"timeout_ms": timeout_ms},
            timeout=timeout)
        try:
            media_part = await _media_part(response, server_name)
            location = media_part.headers.get("Location")
            if location is not None:
                response.release()
                return await self._fetch_url(location, max_size, timeout)
            _check_declared(media_part.headers, max_size, server_name, media_id)
            return RemoteMedia(media_part.headers.get("Content-Type"), upload_name_of(media_part.headers),
                               _part_chunks(media_part, response))
        except BaseException:
            response.release()
            raise

    async def _fetch_legacy(self, server_name: str, media_id: str, max_size: int, timeout_ms: int,
                            timeout: aiohttp.ClientTimeout) -> RemoteMedia:
        path = f"{LEGACY_MEDIA}/{quote_segment(server_name)}/{quote_segment(media_id)}"
        query = {"allow_remote": "false", "allow_redirect": "true", "timeout_ms": timeout_ms}
        try:
            response = await self._client.open_stream(server_name, path, query=query, timeout=timeout)
        except FederationHttpError as e:
            if e.location is None or e.status not in (301, 302, 303, 307, 308):
                raise
            return await self._fetch_url(e.location, max_size, timeout)
        return _body_media(response, max_size, server_name, media_id)

    async def _fetch_url(self, url: str, max_size: int, timeout: aiohttp.ClientTimeout) -> RemoteMedia:
        response = await self._client.open_url(url, timeout=timeout)
        return _body_media(response, max_size, "redirect", url)


def _body_media(response: aiohttp.ClientResponse, max_size: int, server_name: str, media_id: str) -> RemoteMedia:
    try:
        _check_declared(response.headers, max_size, server_name, media_id)
    except BaseException:
        response.release()
        raise
    return RemoteMedia(response.headers.get("Content-Type"), upload_name_of(response.headers),
                       _body_chunks(response))


def _check_declared(headers: Any, max_size: int, server_name: str, media_id: str) -> None:
    length = _declared_length(headers)
    if length is not None and length > max_size:
        raise MatrixError(502, "M_TOO_LARGE", f"mediaId: mxc://{server_name}/{media_id} is larger than "
                                              f"{max_size} bytes")


async def _media_part(response: aiohttp.ClientResponse, server_name: str) -> BodyPartReader:
    """The second part of a multipart/mixed media answer, after checking the first is JSON metadata."""
    if response.content_type != "multipart/mixed":
        raise FederationError(f"{server_name}: the media answer is {response.content_type!r}, not multipart/mixed")
    try:
        reader = MultipartReader(response.headers, response.content)
        metadata = await reader.next()
        if not isinstance(metadata, BodyPartReader):
            raise FederationError(f"{server_name}: the media answer has no metadata part")
        raw = bytearray()
        while chunk := await metadata.read_chunk(CHUNK_BYTES):
            raw += chunk
            if len(raw) > MAX_METADATA_BYTES:
                raise FederationError(f"{server_name}: the media metadata is larger than {MAX_METADATA_BYTES} bytes")
        if not isinstance(json.loads(raw or b"{}"), dict):
            raise FederationError(f"{server_name}: the media metadata is not a JSON object")
        media = await reader.next()
    except FederationError:
        raise
    except (ValueError, AssertionError, RuntimeError, aiohttp.ClientError, TimeoutError) as e:
        # Malformed multipart (no boundary, broken headers), cut connections and stalls alike.
        raise FederationError(f"{server_name}: unreadable multipart media answer: {e!r}") from None
    if not isinstance(media, BodyPartReader):
        raise FederationError(f"{server_name}: the media answer has no media part")
    return media


async def _part_chunks(part: BodyPartReader, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        while True:
            try:
                chunk = await part.read_chunk(CHUNK_BYTES)
            except (ValueError, AssertionError, RuntimeError, aiohttp.ClientError, TimeoutError) as e:
                raise MatrixError(502, "M_UNKNOWN", f"mediaId: the origin's media answer broke off: {e!r}") from None
            if not chunk:
                return
            yield chunk
    finally:
        response.release()


async def _body_chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        while True:
            try:
                chunk = await response.content.read(CHUNK_BYTES)
            except (aiohttp.ClientError, TimeoutError) as e:
                raise MatrixError(502, "M_UNKNOWN", f"mediaId: the origin's media answer broke off: {e!r}") from None
            if not chunk:
                return
            yield chunk
    finally:
        response.release()
