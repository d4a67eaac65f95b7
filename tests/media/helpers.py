"""HTTP helpers for media tests: a user that uploads and fetches media."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
from PIL import Image

from tests.accounts.helpers import bearer, register


def png_bytes(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def jpeg_bytes(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.linear_gradient("L").resize((width, height)).convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


class MediaUser:
    def __init__(self, client: aiohttp.ClientSession, body: dict[str, Any]):
        self.client = client
        self.user_id: str = body["user_id"]
        self.token: str = body["access_token"]

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)

    async def upload(self, data: Any, content_type: str | None = "application/octet-stream",
                     filename: str | None = None, expect: int = 200) -> Any:
        headers = dict(self.auth)
        if content_type is not None:
            headers["Content-Type"] = content_type
        params = {"filename": filename} if filename is not None else None
        async with self.client.post("/_matrix/media/v3/upload", data=data, headers=headers, params=params) as r:
            body = await r.json()
            assert r.status == expect, f"upload -> {r.status} {body}"
            return body["content_uri"] if expect == 200 else body

    async def get(self, path: str, headers: dict[str, str] | None = None, auth: bool = True,
                  **params: Any) -> tuple[int, Any, bytes]:
        all_headers = {**(self.auth if auth else {}), **(headers or {})}
        query = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}
        async with self.client.get(path, headers=all_headers, params=query or None) as r:
            return r.status, r.headers, await r.read()

    async def download(self, mxc: str, file_name: str | None = None, **kw: Any) -> tuple[int, Any, bytes]:
        server_and_id = mxc.removeprefix("mxc://")
        suffix = f"/{file_name}" if file_name else ""
        return await self.get(f"/_matrix/client/v1/media/download/{server_and_id}{suffix}", **kw)

    async def thumbnail(self, mxc: str, width: int, height: int, method: str = "scale",
                        **kw: Any) -> tuple[int, Any, bytes]:
        server_and_id = mxc.removeprefix("mxc://")
        return await self.get(f"/_matrix/client/v1/media/thumbnail/{server_and_id}", width=width, height=height,
                              method=method, **kw)


async def media_user(client: aiohttp.ClientSession, name: str) -> MediaUser:
    return MediaUser(client, await register(client, name))


def media_id_of(mxc: str) -> str:
    return mxc.rsplit("/", 1)[1]
