"""Media repository: upload, asynchronous upload, authenticated download and thumbnails, config,
URL preview refusal, and the errors (too large, unknown or malformed media, missing token)."""

from __future__ import annotations

import asyncio
import os
import struct
import zlib

import yarl

from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import CaseFailure, case
from synctest.users import User

UPLOAD = "/_matrix/media/v3/upload"
CREATE = "/_matrix/media/v1/create"
UPLOAD_TO = "/_matrix/media/v3/upload/{serverName}/{mediaId}"
CONFIG = "/_matrix/client/v1/media/config"
DOWNLOAD = "/_matrix/client/v1/media/download"
THUMBNAIL = "/_matrix/client/v1/media/thumbnail"
PREVIEW = "/_matrix/client/v1/media/preview_url"


def png(width: int, height: int) -> bytes:
    """A solid-colour RGB PNG, built with zlib so the suite needs no imaging library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" + b"\xc8\x1e\x1e" * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height))
            + chunk(b"IEND", b""))


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG, GIF or JPEG from its header bytes."""
    if data.startswith(b"\x89PNG"):
        return struct.unpack(">II", data[16:24])
    if data.startswith(b"GIF8"):
        return struct.unpack("<HH", data[6:10])
    if data.startswith(b"\xff\xd8"):
        index = 2
        while index < len(data):
            marker, length = data[index + 1], struct.unpack(">H", data[index + 2:index + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[index + 5:index + 9])
                return width, height
            index += 2 + length
    raise CaseFailure(f"thumbnail is not a PNG, GIF or JPEG: {data[:16]!r}")


async def upload(ctx: Context, user: User, data: bytes, content_type: str, filename: str | None = None) -> str:
    params = {"filename": filename} if filename is not None else None
    response = await ctx.post(UPLOAD, body=data, headers={"Content-Type": content_type},
                              token=user.access_token, params=params)
    expect_status(response, 200)
    content_uri = expect_schema(response, UPLOAD)["content_uri"]
    expect(content_uri.startswith("mxc://"), f"content_uri {content_uri!r} is not an mxc:// URI")
    return content_uri


def media_path(prefix: str, mxc: str, suffix: str = "") -> str:
    return f"{prefix}/{mxc.removeprefix('mxc://')}{suffix}"


def disposition(response) -> str:
    return response.headers.get("Content-Disposition", "")


@case
async def uploaded_media_downloads_back_with_its_name_and_sandbox_headers(ctx: Context) -> None:
    user = await ctx.register_user()
    mxc = await upload(ctx, user, b"hello from synctest", "text/plain", filename="greeting.txt")
    response = await ctx.get(media_path(DOWNLOAD, mxc), token=user.access_token)
    expect_status(response, 200)
    expect(response.body == b"hello from synctest", f"{response.describe()}: body {response.body[:50]!r}")
    expect(response.headers.get("Content-Type", "").startswith("text/plain"),
           f"{response.describe()}: Content-Type {response.headers.get('Content-Type')!r}")
    expect("greeting.txt" in disposition(response), f"{response.describe()}: disposition {disposition(response)!r}")
    expect(response.headers.get("Content-Security-Policy", "").startswith("sandbox"),
           f"{response.describe()}: no sandboxing Content-Security-Policy")
    expect(response.headers.get("Cross-Origin-Resource-Policy") == "cross-origin",
           f"{response.describe()}: Cross-Origin-Resource-Policy is not cross-origin")


@case
async def download_with_a_file_name_in_the_path_uses_that_name(ctx: Context) -> None:
    user = await ctx.register_user()
    mxc = await upload(ctx, user, b"renamed", "text/plain", filename="first.txt")
    response = await ctx.get(media_path(DOWNLOAD, mxc, "/second.txt"), token=user.access_token)
    expect_status(response, 200)
    expect("second.txt" in disposition(response), f"{response.describe()}: disposition {disposition(response)!r}")


@case
async def html_is_served_as_an_attachment(ctx: Context) -> None:
    user = await ctx.register_user()
    mxc = await upload(ctx, user, b"<script>alert(1)</script>", "text/html")
    response = await ctx.get(media_path(DOWNLOAD, mxc), token=user.access_token)
    expect_status(response, 200)
    expect(disposition(response).startswith("attachment"),
           f"{response.describe()}: HTML served with disposition {disposition(response)!r}")


@case
async def a_range_request_gets_those_bytes_or_the_whole_file(ctx: Context) -> None:
    user = await ctx.register_user()
    mxc = await upload(ctx, user, b"0123456789", "application/octet-stream")
    response = await ctx.get(media_path(DOWNLOAD, mxc), token=user.access_token, headers={"Range": "bytes=2-5"})
    expect_status(response, 200, 206)
    wanted = b"2345" if response.status == 206 else b"0123456789"
    expect(response.body == wanted, f"{response.describe()}: body {response.body!r}, expected {wanted!r}")


@case
async def thumbnails_of_an_image_are_at_least_the_requested_size(ctx: Context) -> None:
    user = await ctx.register_user()
    mxc = await upload(ctx, user, png(1000, 500), "image/png", filename="red.png")
    for width, height, method in ((32, 32, "crop"), (96, 96, "crop"), (100, 100, "scale"), (640, 480, "scale")):
        response = await ctx.get(media_path(THUMBNAIL, mxc), token=user.access_token,
                                 params={"width": str(width), "height": str(height), "method": method})
        expect_status(response, 200)
        expect(response.headers.get("Content-Type", "").startswith("image/"),
               f"{response.describe()}: Content-Type {response.headers.get('Content-Type')!r}")
        got_w, got_h = image_size(response.body)
        expect(got_w <= 1000 and got_h <= 500, f"{response.describe()}: {got_w}x{got_h} is upscaled")
        if method == "crop":
            expect(got_w >= width and got_h >= height,
                   f"{response.describe()}: crop {got_w}x{got_h} is smaller than {width}x{height}")
        else:
            expect(got_w >= width or got_h >= height,
                   f"{response.describe()}: scale {got_w}x{got_h} is smaller than {width}x{height}")


@case
async def thumbnail_without_a_height_is_400(ctx: Context) -> None:
    user = await ctx.register_user()
    mxc = await upload(ctx, user, png(64, 64), "image/png")
    response = await ctx.get(media_path(THUMBNAIL, mxc), token=user.access_token, params={"width": "32"})
    expect_error(response, 400, "M_MISSING_PARAM")


@case
async def media_config_reports_the_upload_size_limit(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.get(CONFIG, token=user.access_token)
    expect_status(response, 200)
    body = expect_schema(response, CONFIG)
    expect(isinstance(body.get("m.upload.size"), int), f"{response.describe()}: m.upload.size missing")


@case
async def authenticated_media_endpoints_need_a_token(ctx: Context) -> None:
    user = await ctx.register_user()
    mxc = await upload(ctx, user, png(8, 8), "image/png")
    for path, params in ((media_path(DOWNLOAD, mxc), None),
                         (media_path(DOWNLOAD, mxc, "/name.png"), None),
                         (media_path(THUMBNAIL, mxc), {"width": "32", "height": "32"}),
                         (CONFIG, None)):
        expect_error(await ctx.get(path, params=params), 401, "M_MISSING_TOKEN")
    expect_error(await ctx.post(UPLOAD, body=b"x", headers={"Content-Type": "text/plain"}), 401,
                 "M_MISSING_TOKEN")


@case
async def unknown_media_is_404_not_found(ctx: Context) -> None:
    user = await ctx.register_user()
    mxc = await upload(ctx, user, b"x", "text/plain")
    server_name = mxc.removeprefix("mxc://").split("/", 1)[0]
    missing = f"mxc://{server_name}/ThisMediaDoesNotExist1234"
    expect_error(await ctx.get(media_path(DOWNLOAD, missing), token=user.access_token), 404, "M_NOT_FOUND")
    response = await ctx.get(media_path(THUMBNAIL, missing), token=user.access_token,
                             params={"width": "32", "height": "32"})
    expect_error(response, 404, "M_NOT_FOUND")


@case
async def malformed_media_ids_are_404_not_found(ctx: Context) -> None:
    user = await ctx.register_user()
    mxc = await upload(ctx, user, b"x", "text/plain")
    server_name = mxc.removeprefix("mxc://").split("/", 1)[0]
    for media_id in ("bad.id", "bad%21id", "bad%2E%2E"):
        response = await ctx.get(f"{DOWNLOAD}/{server_name}/{media_id}", token=user.access_token)
        expect_error(response, 404, "M_NOT_FOUND")


async def _post_raw(ctx: Context, head: str, body_size: int) -> tuple[int | None, bytes]:
    """POST over a bare socket, sending the body while reading the answer; (None, b"") when the server
    drops the connection without answering (Synapse does this for bodies over its limit)."""
    url = yarl.URL(ctx.base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)

    async def send_body() -> None:
        block = b"\0" * (1024 * 1024)
        remaining = body_size
        while remaining > 0:
            writer.write(block[:remaining])
            remaining -= min(remaining, len(block))
            await writer.drain()

    sender = asyncio.ensure_future(send_body())
    try:
        writer.write(head.encode())
        try:
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None, b""
        status = int(answer.split(b" ", 2)[1])
        length = 0
        for line in answer.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
        return status, body
    finally:
        sender.cancel()
        writer.close()


@case
async def an_upload_larger_than_the_limit_is_never_accepted(ctx: Context) -> None:
    user = await ctx.register_user()
    config = await ctx.get(CONFIG, token=user.access_token)
    expect_status(config, 200)
    size = config.json["m.upload.size"] + 1
    url = yarl.URL(ctx.base_url)
    status, body = await _post_raw(ctx, (
        f"POST {UPLOAD} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
        f"Authorization: Bearer {user.access_token}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
    ), size)
    # The spec asks for 413 M_TOO_LARGE; dropping the connection also refuses the upload.
    if status is not None:
        expect(status == 413, f"POST {UPLOAD} of {size} bytes -> {status}, expected 413")
        expect(b"M_TOO_LARGE" in body, f"POST {UPLOAD} -> 413 without M_TOO_LARGE: {body[:200]!r}")


@case
async def created_media_id_is_filled_once_by_put_and_then_served(ctx: Context) -> None:
    user = await ctx.register_user()
    created = await ctx.post(CREATE, token=user.access_token)
    expect_status(created, 200)
    body = expect_schema(created, CREATE)
    mxc = body["content_uri"]
    pending = await ctx.get(media_path(DOWNLOAD, mxc), token=user.access_token, params={"timeout_ms": "200"})
    expect_error(pending, 504, "M_NOT_YET_UPLOADED")

    put_path = media_path("/_matrix/media/v3/upload", mxc)
    filled = await ctx.put(put_path, body=b"arrived later", headers={"Content-Type": "text/plain"},
                           token=user.access_token, params={"filename": "later.txt"})
    expect_status(filled, 200)
    expect_schema(filled, UPLOAD_TO)
    again = await ctx.put(put_path, body=b"overwrite", headers={"Content-Type": "text/plain"},
                          token=user.access_token)
    expect_error(again, 409, "M_CANNOT_OVERWRITE_MEDIA")
    response = await ctx.get(media_path(DOWNLOAD, mxc), token=user.access_token)
    expect_status(response, 200)
    expect(response.body == b"arrived later", f"{response.describe()}: body {response.body!r}")


@case
async def only_the_creator_may_fill_a_created_media_id(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    created = await ctx.post(CREATE, token=alice.access_token)
    expect_status(created, 200)
    put_path = media_path("/_matrix/media/v3/upload", created.json["content_uri"])
    response = await ctx.put(put_path, body=b"not yours", headers={"Content-Type": "text/plain"},
                             token=bob.access_token)
    expect_error(response, 403, "M_FORBIDDEN")


@case
async def url_preview_never_fetches_a_loopback_address(ctx: Context) -> None:
    user = await ctx.register_user()
    # Either previews are off (404 M_UNRECOGNIZED) or the server must refuse the private target.
    target = f"http://127.0.0.1:{yarl.URL(ctx.base_url).port}/_matrix/client/versions?{os.urandom(4).hex()}"
    response = await ctx.get(PREVIEW, token=user.access_token, params={"url": target})
    expect(response.status in (403, 404, 502), f"{response.describe()}: a loopback URL was previewed")
    expect("errcode" in response.json, f"{response.describe()}: no errcode in {response.body[:200]!r}")
