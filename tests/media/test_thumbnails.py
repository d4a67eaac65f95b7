"""Thumbnails: the geometry rules, generation over HTTP, the cache, and refusing decompression bombs."""

from __future__ import annotations

import asyncio
import io
import struct
import time
import zlib

import aiohttp
import pytest
from PIL import Image

from homeserver.media import thumbnails
from tests.media.helpers import jpeg_bytes, media_user, png_bytes


@pytest.mark.parametrize(("asked", "served"), [
    ((10, 10, "crop"), (32, 32, "crop")),
    ((50, 40, "crop"), (96, 96, "crop")),
    ((500, 500, "crop"), (96, 96, "crop")),
    ((100, 100, "scale"), (320, 240, "scale")),
    ((641, 100, "scale"), (800, 600, "scale")),
    ((4000, 4000, "scale"), (800, 600, "scale")),
])
def test_requests_snap_to_the_smallest_configured_size_covering_them(asked, served):
    assert thumbnails.choose_size(*asked) == served


def test_scaling_keeps_the_aspect_ratio_and_never_upscales():
    assert thumbnails.scaled_size(4000, 3000, 320, 240) == (320, 240)
    assert thumbnails.scaled_size(1000, 4000, 320, 240) == (60, 240)
    assert thumbnails.scaled_size(100, 50, 320, 240) == (100, 50)


def test_crop_takes_the_centre_with_the_boxs_aspect_ratio():
    assert thumbnails.crop_box(400, 200, 96, 96) == (100, 0, 300, 200)
    assert thumbnails.crop_box(200, 400, 96, 96) == (0, 100, 200, 300)


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height; its single IDAT could never fill it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(
        b"IEND", b"")


async def test_crop_and_scale_thumbnails_have_the_expected_sizes_and_types(client):
    alice = await media_user(client, "alice")
    png = await alice.upload(png_bytes(1000, 500), "image/png")
    jpeg = await alice.upload(jpeg_bytes(4000, 3000), "image/jpeg")
    expectations = [
        (png, 32, 32, "crop", (32, 32), "image/png"),
        (png, 100, 100, "scale", (320, 160), "image/png"),
        (jpeg, 96, 96, "crop", (96, 96), "image/jpeg"),
        (jpeg, 640, 480, "scale", (640, 480), "image/jpeg"),
    ]
    for mxc, width, height, method, size, content_type in expectations:
        status, headers, body = await alice.thumbnail(mxc, width, height, method)
        assert status == 200, body
        assert headers["Content-Type"] == content_type
        assert Image.open(io.BytesIO(body)).size == size
        assert headers["Content-Disposition"].startswith("inline")
        assert headers["X-Content-Type-Options"] == "nosniff"


async def test_an_image_smaller_than_the_request_is_served_as_it_is(client):
    alice = await media_user(client, "alice")
    original = png_bytes(20, 10)
    mxc = await alice.upload(original, "image/png")
    status, _, body = await alice.thumbnail(mxc, 320, 240, "scale")
    assert (status, body) == (200, original)


async def test_concurrent_requests_generate_a_thumbnail_once(hs, client):
    alice = await media_user(client, "alice")
    mxc = await alice.upload(jpeg_bytes(2000, 1500), "image/jpeg")
    before = hs.media.thumbnails_generated
    results = await asyncio.gather(*(alice.thumbnail(mxc, 640, 480, "scale") for _ in range(8)))
    assert {r[0] for r in results} == {200}
    assert len({r[2] for r in results}) == 1
    assert hs.media.thumbnails_generated - before == 1
    await alice.thumbnail(mxc, 600, 400, "scale")  # same configured size: served from the cache
    assert hs.media.thumbnails_generated - before == 1


async def test_an_image_over_the_pixel_limit_is_refused_without_decoding_it(make_homeserver):
    hs = await make_homeserver(media={"max_image_pixels": 10_000_000})
    async with aiohttp.ClientSession(hs.base_url()) as client:
        alice = await media_user(client, "alice")
        bomb = await alice.upload(huge_png_header(60_000, 60_000), "image/png")  # 3.6 gigapixels
        started = time.monotonic()
        status, _, body = await alice.thumbnail(bomb, 96, 96, "crop")
        assert status == 413 and b"M_TOO_LARGE" in body
        assert time.monotonic() - started < 2
        assert hs.media.thumbnails_generated == 0


async def test_non_images_and_corrupt_images_cannot_be_thumbnailed(client):
    alice = await media_user(client, "alice")
    text = await alice.upload(b"just text", "text/plain")
    corrupt = await alice.upload(b"\x89PNG\r\n\x1a\nnot really", "image/png")
    for mxc in (text, corrupt):
        status, _, body = await alice.thumbnail(mxc, 32, 32, "crop")
        assert status == 400, body


async def test_thumbnail_parameters_are_validated(client):
    alice = await media_user(client, "alice")
    mxc = await alice.upload(png_bytes(100, 100), "image/png")
    path = "/_matrix/client/v1/media/thumbnail/" + mxc.removeprefix("mxc://")
    status, _, body = await alice.get(path, width=32)
    assert status == 400 and b"M_MISSING_PARAM" in body
    status, _, body = await alice.get(path, width="abc", height=3)
    assert status == 400 and b"M_INVALID_PARAM" in body
    status, _, body = await alice.get(path, width=32, height=32, method="stretch")
    assert status == 400 and b"M_INVALID_PARAM" in body


async def test_an_animated_gif_keeps_its_frames_when_animation_is_asked_for(client):
    frames = [Image.new("RGB", (400, 400), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    alice = await media_user(client, "alice")
    mxc = await alice.upload(out.getvalue(), "image/gif")

    status, headers, body = await alice.thumbnail(mxc, 96, 96, "crop", animated=True)
    assert status == 200 and headers["Content-Type"] == "image/gif"
    image = Image.open(io.BytesIO(body))
    assert (image.size, image.n_frames) == ((96, 96), 3)

    status, headers, body = await alice.thumbnail(mxc, 96, 96, "crop")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert getattr(Image.open(io.BytesIO(body)), "n_frames", 1) == 1
