"""Fetching media from other homeservers: the interface federation/media.py implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from homeserver.errors import not_found


@dataclass
class RemoteMedia:
    """Media being received from its origin server; `chunks` is consumed exactly once."""

    content_type: str | None
    upload_name: str | None
    chunks: AsyncIterator[bytes]


class RemoteMediaFetcher(Protocol):
    async def fetch(self, server_name: str, media_id: str, *, max_size: int, timeout_ms: int) -> RemoteMedia:
        """Start downloading `mxc://server_name/media_id` from its origin.

        Raises MatrixError: 404 M_NOT_FOUND if the origin has no such media, 502 M_TOO_LARGE when
        it declares more than `max_size` bytes, 504 M_NOT_YET_UPLOADED when it is still pending.
        The caller stops reading (and answers 502 M_TOO_LARGE) once `max_size` bytes have come.
        """
        ...


class NoRemoteMedia:
    """The fetcher when federation is off: every remote media ID is unknown."""

    async def fetch(self, server_name: str, media_id: str, *, max_size: int, timeout_ms: int) -> RemoteMedia:
        raise not_found("mediaId: remote media is not available (federation is off)")
