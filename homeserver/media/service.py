"""The media repository service: uploads, reserved IDs, downloads, thumbnails, previews, admin hooks."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from homeserver.clock import Clock
from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.media import thumbnails
from homeserver.media.filestore import MediaFileStore, StoredContent, too_large
from homeserver.media.ids import check_media_address, mxc_uri, new_media_id
from homeserver.media.remote import NoRemoteMedia, RemoteMediaFetcher
from homeserver.media.url_preview import UrlPreviewer
from homeserver.ratelimit import RateLimiter
from storage.stores.media import CachedRemoteMedia, LocalMedia, MediaStore

logger = logging.getLogger(__name__)

UNUSED_ID_LIFETIME_MS = 24 * 60 * 60 * 1000
MAX_PENDING_UPLOADS = 10
DEFAULT_WAIT_MS = 20_000
MAX_WAIT_MS = 120_000
CLEANUP_INTERVAL_S = 600


@dataclass(frozen=True)
class MediaFile:
    """Content ready to serve: where it is on disk and what the uploader said about it."""

    path: str
    content_type: str | None
    upload_name: str | None
    length: int


@dataclass(frozen=True)
class _Located:
    content_hash: str
    content_type: str | None
    upload_name: str | None
    length: int


def parse_freeze_date(value: str | None) -> int | None:
    """`media.unauthenticated_media_freeze_date` (ISO date or date-time, UTC if no zone) in ms."""
    if not value:
        return None
    moment = datetime.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


class MediaService:
    def __init__(self, server_name: str, store: MediaStore, files: MediaFileStore, clock: Clock,
                 ratelimiter: RateLimiter, config: dict[str, Any], *,
                 remote: RemoteMediaFetcher | None = None):
        self._server_name = server_name
        self._store = store
        self._files = files
        self._clock = clock
        self._ratelimiter = ratelimiter
        self.max_upload_size: int = config["max_upload_size"]
        self._max_image_pixels: int = config["max_image_pixels"]
        self.unauthenticated_enabled: bool = config["unauthenticated_media_enabled"]
        self._freeze_ms = parse_freeze_date(config.get("unauthenticated_media_freeze_date"))
        self._remote: RemoteMediaFetcher = remote or NoRemoteMedia()
        self.previewer: UrlPreviewer | None = None
        if config["url_preview_enabled"]:
            self.previewer = UrlPreviewer(store, clock, self._save_preview_image,
                                          allowlist=config["url_preview_ip_range_allowlist"])
        # One in-flight generation per thumbnail file; concurrent requests await the same task.
        self._thumbnail_tasks: dict[str, asyncio.Future[None]] = {}
        self._uploaded_events: dict[str, asyncio.Event] = {}
        self._remote_fetches: dict[tuple[str, str], asyncio.Future[CachedRemoteMedia]] = {}
        self.thumbnails_generated = 0
        self._cleanup_task: asyncio.Task[None] | None = None

    # --- lifecycle --------------------------------------------------------------
    def start(self) -> None:
        self._files.ensure_directories()
        self._cleanup_task = asyncio.get_running_loop().create_task(self._cleanup_loop())

    async def stop(self) -> None:
        for fetch in list(self._remote_fetches.values()):
            fetch.cancel()
        if self._cleanup_task is not None:
            self._cleanup_task.cancel()
            try:
                await self._cleanup_task
            except asyncio.CancelledError:
                pass
        if self.previewer is not None:
            await self.previewer.stop()

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(CLEANUP_INTERVAL_S)
            try:
                now = self._clock.time_ms()
                await self._store.delete_expired_reservations(now)
                await self._store.delete_expired_url_previews(now)
            except Exception:
                logger.exception("media cleanup failed; retrying later")

    def use_remote_fetcher(self, remote: RemoteMediaFetcher) -> None:
        """Replace the fetcher given at construction (tests stand in an origin server with it)."""
        self._remote = remote

    def config(self) -> dict[str, Any]:
        """The body of GET /media/config."""
        return {"m.upload.size": self.max_upload_size}

    # --- uploads ----------------------------------------------------------------
    def _check_upload_start(self, user_id: str, content_length: int | None, *, counted: bool = False) -> None:
        # An upload to a reserved ID was counted when the ID was created.
        if not counted:
            self._ratelimiter.check("media_upload", user_id)
        if content_length is not None and content_length > self.max_upload_size:
            raise too_large(self.max_upload_size)

    async def upload(self, user_id: str, chunks: AsyncIterator[bytes], *, content_length: int | None,
                     content_type: str | None, upload_name: str | None) -> str:
        """Store an upload streamed from `chunks` and return its mxc:// URI."""
        self._check_upload_start(user_id, content_length)
        stored = await self._files.write_stream(chunks, self.max_upload_size)
        media_id = new_media_id()
        await self._store.insert_local_media(
            media_id=media_id, user_id=user_id, content_type=content_type, upload_name=upload_name,
            content_hash=stored.content_hash, media_length=stored.length, now_ms=self._clock.time_ms(),
        )
        return mxc_uri(self._server_name, media_id)

    async def create_media_id(self, user_id: str) -> dict[str, Any]:
        """Reserve a media ID whose content comes later (POST /media/v1/create)."""
        self._ratelimiter.check("media_upload", user_id)
        now = self._clock.time_ms()
        expires = now + UNUSED_ID_LIFETIME_MS
        media_id = new_media_id()
        if not await self._store.reserve_media_id(media_id, user_id, now, expires, MAX_PENDING_UPLOADS):
            raise MatrixError(429, "M_LIMIT_EXCEEDED",
                              f"Too many media IDs waiting for content (at most {MAX_PENDING_UPLOADS})",
                              retry_after_ms=60_000)
        return {"content_uri": mxc_uri(self._server_name, media_id), "unused_expires_at": expires}

    async def upload_to_reserved(self, user_id: str, server_name: str, media_id: str,
                                 chunks: AsyncIterator[bytes], *, content_length: int | None,
                                 content_type: str | None, upload_name: str | None) -> None:
        """Fill a reserved ID with content (PUT /media/v3/upload/{serverName}/{mediaId})."""
        check_media_address(server_name, media_id)
        if server_name != self._server_name:
            raise not_found("mediaId: unknown media ID")
        row = await self._store.get_local_media(media_id)
        if row is None or (row.content_hash is None and row.unused_expires_ts <= self._clock.time_ms()):
            raise not_found("mediaId: unknown media ID")
        if row.user_id != user_id:
            raise forbidden("mediaId: this media ID was reserved by another user")
        if row.content_hash is not None:
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "mediaId: this media ID already has content")
        self._check_upload_start(user_id, content_length, counted=True)
        stored = await self._files.write_stream(chunks, self.max_upload_size)
        filled = await self._store.fill_reserved_media(
            media_id, content_type=content_type, upload_name=upload_name, content_hash=stored.content_hash,
            media_length=stored.length, now_ms=self._clock.time_ms(),
        )
        if not filled:
            await self._forget_if_orphaned(stored.content_hash)
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "mediaId: this media ID already has content")
        event = self._uploaded_events.pop(media_id, None)
        if event is not None:
            event.set()

    # --- downloads --------------------------------------------------------------
    async def get_media(self, server_name: str, media_id: str, *, allow_remote: bool = True,
                        timeout_ms: int | None = None, unauthenticated: bool = False) -> MediaFile:
        """The content of mxc://server_name/media_id, waiting up to `timeout_ms` for a pending upload."""
        located = await self._locate(server_name, media_id, allow_remote=allow_remote, timeout_ms=timeout_ms,
                                     unauthenticated=unauthenticated)
        return MediaFile(self._files.content_path(located.content_hash), located.content_type,
                         located.upload_name, located.length)

    async def _locate(self, server_name: str, media_id: str, *, allow_remote: bool, timeout_ms: int | None,
                      unauthenticated: bool) -> _Located:
        check_media_address(server_name, media_id)
        if unauthenticated and not self.unauthenticated_enabled:
            raise not_found("Not found: use the authenticated /_matrix/client/v1/media API")
        if server_name == self._server_name:
            row = await self._local_row(media_id, timeout_ms)
            added_ts = row.created_ts
        else:
            row = await self._remote_row(server_name, media_id, allow_remote, timeout_ms)
            added_ts = row.cached_ts
        if row.quarantined_by is not None:
            raise not_found("mediaId: no media has this ID")
        if unauthenticated and self._freeze_ms is not None and added_ts >= self._freeze_ms:
            raise not_found("Not found: use the authenticated /_matrix/client/v1/media API")
        return _Located(row.content_hash, row.content_type, row.upload_name, row.media_length)

    async def _local_row(self, media_id: str, timeout_ms: int | None) -> LocalMedia:
        row = await self._store.get_local_media(media_id)
        if row is None:
            raise not_found("mediaId: no media has this ID")
        if row.content_hash is not None:
            return row
        if row.unused_expires_ts <= self._clock.time_ms():
            raise not_found("mediaId: no media has this ID")
        wait_ms = min(DEFAULT_WAIT_MS if timeout_ms is None else timeout_ms, MAX_WAIT_MS)
        event = self._uploaded_events.setdefault(media_id, asyncio.Event())
        try:
            async with asyncio.timeout(wait_ms / 1000):
                await event.wait()
        except TimeoutError:
            pass
        row = await self._store.get_local_media(media_id)
        if row is None:
            raise not_found("mediaId: no media has this ID")
        if row.content_hash is None:
            raise MatrixError(504, "M_NOT_YET_UPLOADED", "mediaId: the content has not been uploaded yet")
        return row

    async def _remote_row(self, server_name: str, media_id: str, allow_remote: bool,
                          timeout_ms: int | None) -> CachedRemoteMedia:
        row = await self._store.get_remote_media(server_name, media_id)
        if row is not None:
            return row
        if not allow_remote:
            raise not_found("mediaId: remote media is not cached and allow_remote is false")
        # One download per remote media ID: a room full of clients asking for the same avatar waits for it.
        key = (server_name, media_id)
        fetch = self._remote_fetches.get(key)
        if fetch is None:
            fetch = asyncio.ensure_future(self._fetch_remote(server_name, media_id, timeout_ms))
            self._remote_fetches[key] = fetch
            fetch.add_done_callback(lambda done: self._fetch_done(key, done))
        return await asyncio.shield(fetch)

    def _fetch_done(self, key: tuple[str, str], fetch: asyncio.Future[CachedRemoteMedia]) -> None:
        self._remote_fetches.pop(key, None)
        if not fetch.cancelled():
            fetch.exception()  # retrieved here so that a fetch nobody waits for any more logs nothing

    async def _fetch_remote(self, server_name: str, media_id: str, timeout_ms: int | None) -> CachedRemoteMedia:
        remote = await self._remote.fetch(server_name, media_id, max_size=self.max_upload_size,
                                          timeout_ms=min(timeout_ms or DEFAULT_WAIT_MS, MAX_WAIT_MS))
        try:
            stored = await self._files.write_stream(remote.chunks, self.max_upload_size)
        except MatrixError as e:
            if e.errcode == "M_TOO_LARGE":
                raise MatrixError(502, "M_TOO_LARGE", "remote media is larger than the limit") from None
            raise
        finally:
            # Stopping early (too large) must drop the connection now, not when the iterator is collected.
            close = getattr(remote.chunks, "aclose", None)
            if close is not None:
                await close()
        await self._store.insert_remote_media(
            server_name=server_name, media_id=media_id, content_type=remote.content_type,
            upload_name=remote.upload_name, content_hash=stored.content_hash, media_length=stored.length,
            now_ms=self._clock.time_ms(),
        )
        row = await self._store.get_remote_media(server_name, media_id)
        assert row is not None
        return row

    # --- thumbnails -------------------------------------------------------------
    async def get_thumbnail(self, server_name: str, media_id: str, width: int, height: int, method: str, *,
                            animated: bool = False, allow_remote: bool = True, timeout_ms: int | None = None,
                            unauthenticated: bool = False) -> MediaFile:
        """A thumbnail of at least width x height where the image allows, generated once and cached."""
        if method not in thumbnails.METHODS:
            raise invalid_param("method: must be 'crop' or 'scale'")
        located = await self._locate(server_name, media_id, allow_remote=allow_remote, timeout_ms=timeout_ms,
                                     unauthenticated=unauthenticated)
        source_type = (located.content_type or "").split(";", 1)[0].strip().lower()
        if source_type not in thumbnails.THUMBNAILABLE:
            raise MatrixError(400, "M_UNKNOWN", "mediaId: this media is not an image that can be thumbnailed")
        animated = animated and source_type in thumbnails.ANIMATABLE
        box_w, box_h, method = thumbnails.choose_size(width, height, method)
        out_type = thumbnails.output_type(source_type, animated)
        path = self._files.thumbnail_path(located.content_hash, box_w, box_h, method, out_type)
        marker = path + ".original"
        if not os.path.exists(path) and not os.path.exists(marker):
            task = self._thumbnail_tasks.get(path)
            if task is None:
                task = asyncio.ensure_future(self._generate(located, source_type, box_w, box_h, method,
                                                            animated, path, marker))
                self._thumbnail_tasks[path] = task
                task.add_done_callback(lambda _: self._thumbnail_tasks.pop(path, None))
            await asyncio.shield(task)
        if os.path.exists(path):
            return MediaFile(path, out_type, None, os.path.getsize(path))
        # The original is no larger than the box: serve it rather than upscale.
        return MediaFile(self._files.content_path(located.content_hash), located.content_type, None,
                         located.length)

    async def _generate(self, located: _Located, source_type: str, box_w: int, box_h: int, method: str,
                        animated: bool, path: str, marker: str) -> None:
        source = self._files.content_path(located.content_hash)
        try:
            thumb = await asyncio.to_thread(
                thumbnails.render_thumbnail, source, source_type, box_w, box_h, method,
                max_pixels=self._max_image_pixels, animated=animated,
            )
        except thumbnails.ImageTooLarge:
            raise MatrixError(413, "M_TOO_LARGE", "mediaId: the image is too large to thumbnail") from None
        except thumbnails.NotThumbnailable:
            raise MatrixError(400, "M_UNKNOWN", "mediaId: the content could not be read as an image") from None
        self.thumbnails_generated += 1
        if thumb is None:
            self._files.write_thumbnail(marker, b"")
        else:
            self._files.write_thumbnail(path, thumb.data)

    # --- URL previews -----------------------------------------------------------
    async def preview_url(self, url: str) -> dict[str, Any]:
        if self.previewer is None:
            raise MatrixError(404, "M_UNRECOGNIZED", "URL previews are disabled on this server")
        return await self.previewer.preview(url)

    async def _save_preview_image(self, data: bytes, content_type: str | None, url: str) -> dict[str, Any]:
        stored: StoredContent = self._files.write_bytes(data)
        media_id = new_media_id()
        await self._store.insert_local_media(
            media_id=media_id, user_id=None, content_type=content_type, upload_name=None,
            content_hash=stored.content_hash, media_length=stored.length, now_ms=self._clock.time_ms(),
            url_cache=url,
        )
        og: dict[str, Any] = {"og:image": mxc_uri(self._server_name, media_id), "matrix:image:size": stored.length}
        if content_type:
            og["og:image:type"] = content_type
        if content_type in thumbnails.THUMBNAILABLE:
            try:
                width, height = await asyncio.to_thread(
                    thumbnails.image_size, self._files.content_path(stored.content_hash), content_type,
                    self._max_image_pixels,
                )
                og["og:image:width"], og["og:image:height"] = width, height
            except (thumbnails.ImageTooLarge, thumbnails.NotThumbnailable):
                pass
        return og

    # --- admin hooks ------------------------------------------------------------
    async def list_user_media(self, user_id: str, *, offset: int = 0, limit: int = 100,
                              newest_first: bool = True) -> tuple[list[LocalMedia], int]:
        """A page of the media a local user uploaded, and how many there are in total."""
        return await self._store.list_user_media(user_id, offset=offset, limit=limit, newest_first=newest_first)

    async def delete_local_media(self, media_id: str) -> bool:
        """Delete a local media ID; its bytes go too unless other media share them."""
        deleted, orphan = await self._store.delete_local_media(media_id)
        if orphan is not None:
            self._files.delete_content(orphan)
        return deleted

    async def quarantine_media(self, server_name: str, media_id: str, by_user_id: str | None) -> bool:
        """Mark media as quarantined (served as 404), or release it with `by_user_id=None`."""
        if server_name == self._server_name:
            return await self._store.set_local_quarantine(media_id, by_user_id)
        return await self._store.set_remote_quarantine(server_name, media_id, by_user_id)

    async def purge_remote_media_cache(self, before_ms: int) -> int:
        """Forget remote media cached before `before_ms`; returns how many items were removed."""
        count, orphans = await self._store.purge_remote_media_before(before_ms)
        for content_hash in orphans:
            self._files.delete_content(content_hash)
        return count

    async def _forget_if_orphaned(self, content_hash: str) -> None:
        if not await self._store.content_in_use(content_hash):
            self._files.delete_content(content_hash)
