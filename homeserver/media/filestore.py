"""Media bytes on disk, content-addressed by SHA-256 so identical uploads are stored once.

Layout under the store root:
    content/ab/cd/<sha256>                         the bytes of every upload with that hash
    thumbnails/ab/cd/<sha256>/<w>-<h>-<method>-<t>  thumbnails of that content
    tmp/                                           uploads in progress (same filesystem: rename is atomic)
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

from homeserver.errors import MatrixError

BATCH_SIZE = 1024 * 1024


@dataclass(frozen=True)
class StoredContent:
    content_hash: str
    length: int


def too_large(limit: int) -> MatrixError:
    return MatrixError(413, "M_TOO_LARGE", f"Content is larger than the upload limit of {limit} bytes")


class MediaFileStore:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self._tmp = os.path.join(self.root, "tmp")

    def ensure_directories(self) -> None:
        for sub in ("content", "thumbnails", "tmp"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)

    def content_path(self, content_hash: str) -> str:
        return os.path.join(self.root, "content", content_hash[:2], content_hash[2:4], content_hash)

    def thumbnail_dir(self, content_hash: str) -> str:
        return os.path.join(self.root, "thumbnails", content_hash[:2], content_hash[2:4], content_hash)

    def thumbnail_path(self, content_hash: str, width: int, height: int, method: str, content_type: str) -> str:
        kind = content_type.replace("/", "-")
        return os.path.join(self.thumbnail_dir(content_hash), f"{width}-{height}-{method}-{kind}")

    async def write_stream(self, chunks: AsyncIterator[bytes], max_size: int) -> StoredContent:
        """Copy chunks to disk while hashing; past `max_size` bytes stop and raise 413 M_TOO_LARGE.

        Chunks are gathered into batches of about 1 MiB that a worker thread hashes and writes
        (hashlib and file writes release the GIL) while the event loop receives the next batch;
        with at most one batch in flight, memory stays around 2 MiB whatever the upload's size.
        """
        self.ensure_directories()
        digest = hashlib.sha256()
        length = 0
        fd, tmp_path = tempfile.mkstemp(dir=self._tmp)
        out = os.fdopen(fd, "wb")

        def absorb(batch: bytes) -> None:
            digest.update(batch)
            out.write(batch)

        in_flight: asyncio.Future[None] | None = None
        try:
            batch = bytearray()
            async for chunk in chunks:
                length += len(chunk)
                if length > max_size:
                    raise too_large(max_size)
                batch += chunk
                if len(batch) >= BATCH_SIZE:
                    if in_flight is not None:
                        await in_flight
                    in_flight = asyncio.ensure_future(asyncio.to_thread(absorb, bytes(batch)))
                    batch.clear()
            if in_flight is not None:
                await in_flight
                in_flight = None
            absorb(bytes(batch))
            out.close()
            return self._commit(tmp_path, digest.hexdigest(), length)
        except BaseException:
            if in_flight is not None:
                await asyncio.gather(in_flight, return_exceptions=True)
            out.close()
            _unlink_quietly(tmp_path)
            raise

    def write_bytes(self, data: bytes) -> StoredContent:
        self.ensure_directories()
        fd, tmp_path = tempfile.mkstemp(dir=self._tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            return self._commit(tmp_path, hashlib.sha256(data).hexdigest(), len(data))
        except BaseException:
            _unlink_quietly(tmp_path)
            raise

    def _commit(self, tmp_path: str, content_hash: str, length: int) -> StoredContent:
        final = self.content_path(content_hash)
        if os.path.exists(final):
            os.unlink(tmp_path)  # the same bytes are already stored
        else:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(tmp_path, final)
        return StoredContent(content_hash, length)

    def write_thumbnail(self, path: str, data: bytes) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp_path, path)
        except BaseException:
            _unlink_quietly(tmp_path)
            raise

    def delete_content(self, content_hash: str) -> None:
        """Remove the bytes and every thumbnail of one hash (callers check no row still uses it)."""
        _unlink_quietly(self.content_path(content_hash))
        shutil.rmtree(self.thumbnail_dir(content_hash), ignore_errors=True)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
