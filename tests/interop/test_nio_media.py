"""matrix-nio shares pictures: it uploads an avatar and an image, sets the avatar, and another user
downloads and thumbnails both through nio's own (authenticated v1) media requests."""

from __future__ import annotations

import io

import nio
import pytest
from PIL import Image

from tests.interop.nio_support import expect, nio_client, register_user

pytestmark = pytest.mark.interop


def encoded(width: int, height: int, fmt: str) -> bytes:
    out = io.BytesIO()
    Image.linear_gradient("L").resize((width, height)).convert("RGB").save(out, fmt)
    return out.getvalue()


async def nio_upload(client: nio.AsyncClient, data: bytes, content_type: str, filename: str) -> str:
    response, _ = await client.upload(io.BytesIO(data), content_type=content_type, filename=filename,
                                      filesize=len(data))
    return expect(response, nio.UploadResponse, f"upload {filename}").content_uri


def split_mxc(mxc: str) -> tuple[str, str]:
    server_name, media_id = mxc.removeprefix("mxc://").split("/", 1)
    return server_name, media_id


async def test_nio_sets_an_uploaded_avatar_that_another_user_downloads_and_thumbnails(homeserver_url):
    avatar_png = encoded(256, 256, "PNG")
    async with nio_client(homeserver_url) as alice, nio_client(homeserver_url) as bob:
        me = await register_user(alice, "alice")
        await register_user(bob, "bob")
        avatar = await nio_upload(alice, avatar_png, "image/png", "avatar.png")
        expect(await alice.set_avatar(avatar), nio.ProfileSetAvatarResponse, "set avatar")

        seen = expect(await bob.get_avatar(me.user_id), nio.ProfileGetAvatarResponse, "get avatar")
        assert seen.avatar_url == avatar
        download = expect(await bob.download(mxc=seen.avatar_url), nio.MemoryDownloadResponse, "download")
        assert download.body == avatar_png
        assert download.content_type == "image/png"
        assert download.filename == "avatar.png"

        server_name, media_id = split_mxc(avatar)
        thumb = expect(await bob.thumbnail(server_name, media_id, 96, 96, nio.ResizingMethod.crop),
                       nio.ThumbnailResponse, "crop thumbnail")
        assert thumb.content_type.startswith("image/")
        assert Image.open(io.BytesIO(thumb.body)).size == (96, 96)


async def test_nio_uploads_an_image_and_gets_it_and_a_scaled_thumbnail_back(homeserver_url):
    photo = encoded(1200, 900, "JPEG")
    async with nio_client(homeserver_url) as alice:
        await register_user(alice, "alice")
        mxc = await nio_upload(alice, photo, "image/jpeg", "vakantie foto.jpg")

        download = expect(await alice.download(mxc=mxc), nio.MemoryDownloadResponse, "download photo")
        assert download.body == photo and download.content_type == "image/jpeg"

        server_name, media_id = split_mxc(mxc)
        thumb = expect(await alice.thumbnail(server_name, media_id, 320, 240, nio.ResizingMethod.scale),
                       nio.ThumbnailResponse, "scale thumbnail")
        assert thumb.content_type == "image/jpeg"
        assert Image.open(io.BytesIO(thumb.body)).size == (320, 240)

        missing = await alice.download(mxc=f"mxc://{server_name}/NoSuchMediaHere")
        error = expect(missing, nio.DownloadError, "download of unknown media")
        assert error.status_code == "M_NOT_FOUND"
