"""Remote media: our client endpoints fetch mxc:// content of other servers through the authenticated
federation media endpoint (multipart/mixed), fall back to the legacy /_matrix/media/v3/download for
servers without it, follow `Location` redirects with the IP block list applied, cache what they fetched
and serve it as safely as local media; misbehaving origins become clear client errors. Our own
/_matrix/federation/v1/media endpoints serve local media to signed requests only."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from tests.federation.helpers import federation_overrides, tls_session
from tests.media.helpers import media_user, png_bytes
from tests.support.ports import free_port

FED_PREFIX = "/_matrix/federation/v1/media/download/"
FED_DOWNLOAD = FED_PREFIX + "{mediaId}"
LEGACY_DOWNLOAD = "/_matrix/media/v3/download/{serverName}/{mediaId}"


def multipart_body(boundary: str, part_headers: dict[str, str], data: bytes, metadata: bytes = b"{}") -> bytes:
    headers = "".join(f"{k}: {v}\r\n" for k, v in part_headers.items())
    return (f"--{boundary}\r\nContent-Type: application/json\r\n\r\n".encode() + metadata
            + f"\r\n--{boundary}\r\n{headers}\r\n".encode() + data + f"\r\n--{boundary}--\r\n".encode())


def multipart_response(part_headers: dict[str, str], data: bytes = b"", **kw: Any) -> web.Response:
    return web.Response(body=multipart_body("xyzzy", part_headers, data, **kw),
                        headers={"Content-Type": "multipart/mixed; boundary=xyzzy"})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def media_routes(download: Handler, legacy: Handler | None = None, extra: dict[str, Handler] | None = None):
    def routes(remote) -> None:
        remote.route("GET", FED_DOWNLOAD, download)
        if legacy is not None:
            remote.route("GET", LEGACY_DOWNLOAD, legacy)
        for path, handler in (extra or {}).items():
            remote.route("GET", path, handler)

    return routes


async def _user(hs, ca, name: str = "alice"):
    session = tls_session(hs, ca)
    return session, await media_user(session, name)


def _requests_to(remote, prefix: str) -> list[tuple[str, str, str | None]]:
    return [r for r in remote.requests if r[1].startswith(prefix)]


async def test_remote_media_comes_over_the_signed_federation_endpoint_and_is_cached(fed_hs, ca, make_remote):
    async def download(request: web.Request) -> web.Response:
        assert request.match_info["mediaId"] == "Pic1"
        return multipart_response({"Content-Type": "image/png", "Content-Disposition": "inline; filename=cat.png"},
                                  png_bytes(4, 4))

    remote = await make_remote(routes=media_routes(download))
    session, alice = await _user(fed_hs, ca)
    async with session:
        mxc = f"mxc://{remote.server_name}/Pic1"
        for _ in range(2):
            status, headers, body = await alice.download(mxc)
            assert status == 200, body
            assert body == png_bytes(4, 4)
        assert headers["Content-Type"] == "image/png"
        assert headers["Content-Disposition"] == "inline; filename=cat.png"
        assert "sandbox" in headers["Content-Security-Policy"]
    fetches = _requests_to(remote, "/_matrix/federation/v1/media/download/Pic1")
    assert len(fetches) == 1  # the second download came from the cache
    assert fetches[0][1].endswith("timeout_ms=20000") and fetches[0][2].startswith("X-Matrix ")


async def test_clients_asking_for_the_same_remote_media_at_once_share_one_download(fed_hs, ca, make_remote):
    second_request = asyncio.Event()
    arrived = 0

    async def download(request: web.Request) -> web.Response:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            second_request.set()
        # Without sharing, a second fetch arrives while the first waits here; with it, none comes.
        try:
            await asyncio.wait_for(second_request.wait(), 3)
        except TimeoutError:
            pass
        return multipart_response({"Content-Type": "image/png"}, png_bytes(8, 8))

    remote = await make_remote(routes=media_routes(download))
    session, alice = await _user(fed_hs, ca)
    async with session:
        mxc = f"mxc://{remote.server_name}/Avatar"
        results = await asyncio.gather(*(alice.download(mxc) for _ in range(4)))
    assert [(status, body) for status, _, body in results] == [(200, png_bytes(8, 8))] * 4
    assert len(_requests_to(remote, FED_PREFIX + "Avatar")) == 1


async def test_legacy_client_endpoints_and_thumbnails_of_remote_media_work_too(fed_hs, ca, make_remote):
    async def download(request: web.Request) -> web.Response:
        return multipart_response({"Content-Type": "image/png"}, png_bytes(800, 600))

    remote = await make_remote(routes=media_routes(download))
    session, alice = await _user(fed_hs, ca)
    async with session:
        status, headers, body = await alice.get(f"/_matrix/media/v3/download/{remote.server_name}/Big", auth=False)
        assert (status, body) == (200, png_bytes(800, 600))
        status, headers, body = await alice.thumbnail(f"mxc://{remote.server_name}/Big", 32, 32)
        assert status == 200, body
        assert headers["Content-Type"] == "image/png" and body != png_bytes(800, 600)
        status, _, body = await alice.get(f"/_matrix/media/v3/thumbnail/{remote.server_name}/Other", auth=False,
                                          width=32, height=32)
        assert status == 200, body


async def test_active_remote_content_is_served_as_a_sandboxed_attachment(fed_hs, ca, make_remote):
    page = b"<html><script>alert(document.cookie)</script></html>"

    async def download(request: web.Request) -> web.Response:
        return multipart_response({"Content-Type": "text/html", "Content-Disposition": "inline; filename=x.html"},
                                  page)

    remote = await make_remote(routes=media_routes(download))
    session, alice = await _user(fed_hs, ca)
    async with session:
        status, headers, body = await alice.download(f"mxc://{remote.server_name}/Page")
    assert (status, body) == (200, page)
    assert headers["Content-Disposition"] == "attachment; filename=x.html"
    assert "script-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


async def test_servers_without_the_federation_endpoint_are_asked_on_the_legacy_one(fed_hs, ca, make_remote):
    async def unrecognized(request: web.Request) -> web.Response:
        return web.json_response({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}, status=404)

    async def legacy(request: web.Request) -> web.Response:
        assert request.query["allow_remote"] == "false"
        return web.Response(body=b"old style", headers={"Content-Type": "text/plain",
                                                        "Content-Disposition": "attachment; filename*=utf-8''%C3%A9t%C3%A9.txt"})

    remote = await make_remote(routes=media_routes(unrecognized, legacy))
    session, alice = await _user(fed_hs, ca)
    async with session:
        status, headers, body = await alice.download(f"mxc://{remote.server_name}/Old1")
    assert (status, body) == (200, b"old style")
    assert headers["Content-Disposition"] == "inline; filename*=utf-8''%C3%A9t%C3%A9.txt"
    [(_, legacy_uri, authorization)] = _requests_to(remote, "/_matrix/media/v3/download/")
    assert legacy_uri.startswith(f"/_matrix/media/v3/download/{quote(remote.server_name, safe='')}/Old1?")
    assert authorization.startswith("X-Matrix ")


async def test_media_the_origin_does_not_have_is_404_without_a_fallback(fed_hs, ca, make_remote):
    async def missing(request: web.Request) -> web.Response:
        return web.json_response({"errcode": "M_NOT_FOUND", "error": "Not found"}, status=404)

    remote = await make_remote(routes=media_routes(missing, missing))
    session, alice = await _user(fed_hs, ca)
    async with session:
        status, _, body = await alice.download(f"mxc://{remote.server_name}/Gone")
    assert status == 404 and json.loads(body)["errcode"] == "M_NOT_FOUND"
    assert _requests_to(remote, "/_matrix/media/v3/") == []


async def test_a_location_in_the_multipart_answer_is_followed(fed_hs, ca, make_remote):
    holder: dict[str, Any] = {}

    async def download(request: web.Request) -> web.Response:
        return multipart_response({"Location": f"https://{holder['remote'].server_name}/cdn/abc?sig=1"})

    async def cdn(request: web.Request) -> web.Response:
        assert "Authorization" not in request.headers  # the CDN gets no signature
        return web.Response(body=b"from the cdn", headers={"Content-Type": "text/plain",
                                                           "Content-Disposition": "inline; filename=cdn.txt"})

    remote = await make_remote(routes=media_routes(download, extra={"/cdn/abc": cdn}))
    holder["remote"] = remote
    session, alice = await _user(fed_hs, ca)
    async with session:
        status, headers, body = await alice.download(f"mxc://{remote.server_name}/Redirected")
    assert (status, body) == (200, b"from the cdn")
    assert headers["Content-Disposition"] == "inline; filename=cdn.txt"
    assert len(_requests_to(remote, "/cdn/abc")) == 1


async def test_a_location_pointing_at_a_blocked_address_is_refused(fed_hs, ca, make_remote):
    async def download(request: web.Request) -> web.Response:
        return multipart_response({"Location": "http://169.254.169.254/latest/meta-data"})

    remote = await make_remote(routes=media_routes(download))
    session, alice = await _user(fed_hs, ca)
    async with session:
        status, _, body = await alice.download(f"mxc://{remote.server_name}/Metadata")
    assert status == 403 and json.loads(body)["errcode"] == "M_FORBIDDEN"
    assert b"blocked" in body


async def test_remote_media_over_the_size_limit_is_502_too_large_declared_or_not(make_homeserver, ca, make_remote):
    big = b"x" * 5000

    async def declared(request: web.Request) -> web.Response:
        return multipart_response({"Content-Type": "text/plain", "Content-Length": str(len(big))}, big)

    async def undeclared(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "multipart/mixed; boundary=b0"})
        await response.prepare(request)
        await response.write(b"--b0\r\nContent-Type: application/json\r\n\r\n{}\r\n--b0\r\n"
                             b"Content-Type: text/plain\r\n\r\n")
        for _ in range(10):
            await response.write(big)
        await response.write(b"\r\n--b0--\r\n")
        return response

    remote = await make_remote(routes=media_routes(declared, extra={f"{FED_PREFIX}Undeclared": undeclared}))
    hs = await make_homeserver(**federation_overrides(ca, free_port()), media={"max_upload_size": 1000})
    session, alice = await _user(hs, ca)
    async with session:
        for media_id in ("Declared", "Undeclared"):
            for _ in range(2):  # nothing was cached: the second try asks the origin again
                status, _, body = await alice.download(f"mxc://{remote.server_name}/{media_id}")
                assert status == 502 and json.loads(body)["errcode"] == "M_TOO_LARGE", (media_id, body)
            assert len(_requests_to(remote, f"{FED_PREFIX}{media_id}")) == 2


async def test_garbage_and_unreachable_origins_are_502(fed_hs, ca, make_remote):
    async def not_multipart(request: web.Request) -> web.Response:
        return web.json_response({"looks": "like json"})

    async def broken_multipart(request: web.Request) -> web.Response:
        return web.Response(body=b"this is no multipart at all",
                            headers={"Content-Type": "multipart/mixed; boundary=nope"})

    async def one_part(request: web.Request) -> web.Response:
        return web.Response(body=b"--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b--\r\n",
                            headers={"Content-Type": "multipart/mixed; boundary=b"})

    async def cut_off(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "multipart/mixed; boundary=b"})
        response.content_length = 10_000
        await response.prepare(request)
        await response.write(b"--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\n\r\npartial")
        request.transport.close()
        return response

    base = "/_matrix/federation/v1/media/download/"
    remote = await make_remote(routes=media_routes(not_multipart, extra={
        base + "Broken": broken_multipart, base + "OnePart": one_part, base + "CutOff": cut_off}))
    session, alice = await _user(fed_hs, ca)
    async with session:
        for media_id in ("NotMultipart", "Broken", "OnePart", "CutOff"):
            status, _, body = await alice.download(f"mxc://{remote.server_name}/{media_id}")
            assert status == 502 and json.loads(body)["errcode"] == "M_UNKNOWN", (media_id, body)
        status, _, body = await alice.download("mxc://127.0.0.2:1/Nowhere")
        assert status == 502, body


async def test_an_origin_that_hangs_gives_up_after_the_requested_timeout(fed_hs, ca, make_remote):
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=500)

    remote = await make_remote(routes=media_routes(hang))
    session, alice = await _user(fed_hs, ca)
    try:
        async with session:
            status, _, body = await alice.download(f"mxc://{remote.server_name}/Slow", timeout_ms=1000)
        assert status == 502 and json.loads(body)["errcode"] == "M_UNKNOWN", body
    finally:
        release.set()


async def test_remote_media_is_not_fetched_when_federation_is_off(make_federating_homeserver, ca, make_remote):
    async def download(request: web.Request) -> web.Response:
        return multipart_response({"Content-Type": "text/plain"}, b"hi")

    remote = await make_remote(routes=media_routes(download))
    hs = await make_federating_homeserver(enabled=False)
    session, alice = await _user(hs, ca)
    async with session:
        status, _, _ = await alice.download(f"mxc://{remote.server_name}/Off")
    assert status == 404
    assert remote.requests == []


# --- our federation media endpoints ----------------------------------------------------------------------


async def _signed_get(remote, hs, ca, uri: str, *, signed: bool = True) -> tuple[int, Any, bytes]:
    headers = {"Authorization": remote.authorization(hs.config.server_name, "GET", uri)} if signed else {}
    async with tls_session(hs, ca) as session:
        async with session.get(uri, headers=headers) as resp:
            return resp.status, resp.headers, await resp.read()


def _parts(headers: Any, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    content_type = headers["Content-Type"]
    assert content_type.startswith("multipart/mixed; boundary=")
    boundary = content_type.split("boundary=", 1)[1].encode()
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n")
    chunks = body[: -len(boundary) - 8].split(b"--" + boundary + b"\r\n")
    assert chunks[0] == b""
    parts = []
    for chunk in chunks[1:]:
        head, _, data = chunk.partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append((fields, data.removesuffix(b"\r\n")))
    return parts


async def test_our_media_is_served_to_signed_requests_as_two_part_multipart(fed_hs, ca, remote):
    session, alice = await _user(fed_hs, ca)
    async with session:
        mxc = await alice.upload(b"hello federation", "text/plain", filename="greeting.txt")
        image = await alice.upload(png_bytes(200, 100), "image/png")
    media_id = mxc.rsplit("/", 1)[1]
    status, headers, body = await _signed_get(remote, fed_hs, ca, f"/_matrix/federation/v1/media/download/{media_id}")
    assert status == 200, body
    [(meta_headers, meta), (media_headers, data)] = _parts(headers, body)
    assert meta_headers["Content-Type"] == "application/json" and json.loads(meta) == {}
    assert media_headers["Content-Type"] == "text/plain; charset=UTF-8"
    assert media_headers["Content-Disposition"] == "inline; filename=greeting.txt"
    assert data == b"hello federation"

    uri = f"/_matrix/federation/v1/media/thumbnail/{image.rsplit('/', 1)[1]}?width=32&height=32&method=scale"
    status, headers, body = await _signed_get(remote, fed_hs, ca, uri)
    assert status == 200, body
    [_, (thumb_headers, thumb)] = _parts(headers, body)
    assert thumb_headers["Content-Type"] == "image/png" and thumb.startswith(b"\x89PNG")


async def test_our_federation_media_endpoints_refuse_unsigned_and_unknown_requests(fed_hs, ca, remote):
    session, alice = await _user(fed_hs, ca)
    async with session:
        media_id = (await alice.upload(b"secret", "text/plain")).rsplit("/", 1)[1]
    status, _, body = await _signed_get(remote, fed_hs, ca, f"/_matrix/federation/v1/media/download/{media_id}",
                                        signed=False)
    assert status == 401 and json.loads(body)["errcode"] == "M_UNAUTHORIZED"
    status, _, body = await _signed_get(remote, fed_hs, ca, "/_matrix/federation/v1/media/download/NoSuchMedia")
    assert status == 404 and json.loads(body)["errcode"] == "M_NOT_FOUND"
    status, _, body = await _signed_get(remote, fed_hs, ca, f"/_matrix/federation/v1/media/thumbnail/{media_id}")
    assert status == 400 and json.loads(body)["errcode"] == "M_MISSING_PARAM"
    assert b"width" in body


async def test_two_of_our_servers_exchange_media_and_avatars(make_federating_homeserver, ca):
    origin = await make_federating_homeserver()
    viewer = await make_federating_homeserver()
    origin_session, alice = await _user(origin, ca)
    viewer_session, bob = await _user(viewer, ca, "bob")
    async with origin_session, viewer_session:
        avatar = await alice.upload(png_bytes(64, 64), "image/png", filename="me.png")
        async with origin_session.put(f"/_matrix/client/v3/profile/{alice.user_id}/avatar_url",
                                      json={"avatar_url": avatar}, headers=alice.auth) as resp:
            assert resp.status == 200
        async with viewer_session.get(f"/_matrix/client/v3/profile/{alice.user_id}", headers=bob.auth) as resp:
            profile = await resp.json()
        assert profile["avatar_url"] == avatar
        status, headers, body = await bob.download(profile["avatar_url"])
        assert (status, body) == (200, png_bytes(64, 64))
        assert headers["Content-Disposition"] == "inline; filename=me.png"
        status, headers, _ = await bob.thumbnail(avatar, 32, 32, "crop")
        assert status == 200 and headers["Content-Type"] == "image/png"


async def test_aiohttp_client_reads_our_multipart_answer(fed_hs, ca, remote):
    """A stock multipart parser (aiohttp's) reads what we send: the format is not only our own."""
    session, alice = await _user(fed_hs, ca)
    async with session:
        media_id = (await alice.upload(b"\r\n--not-a-boundary\r\n", "application/octet-stream")).rsplit("/", 1)[1]
    uri = f"/_matrix/federation/v1/media/download/{media_id}"
    async with tls_session(fed_hs, ca) as http:
        async with http.get(uri, headers={"Authorization": remote.authorization(fed_hs.config.server_name, "GET",
                                                                                uri)}) as resp:
            reader = aiohttp.MultipartReader.from_response(resp)
            meta = await reader.next()
            assert await meta.json() == {}
            media = await reader.next()
            assert await media.read() == b"\r\n--not-a-boundary\r\n"
            assert media.headers["Content-Disposition"] == "attachment"


async def test_media_not_yet_uploaded_is_504_on_both_sides(fed_hs, ca, make_remote):
    async def pending(request: web.Request) -> web.Response:
        return web.json_response({"errcode": "M_NOT_YET_UPLOADED", "error": "not yet"}, status=504)

    remote = await make_remote(routes=media_routes(pending))
    session, alice = await _user(fed_hs, ca)
    async with session:
        status, _, body = await alice.download(f"mxc://{remote.server_name}/Pending")
        assert (status, json.loads(body)["errcode"]) == (504, "M_NOT_YET_UPLOADED")
        async with session.post("/_matrix/media/v1/create", headers=alice.auth) as resp:
            reserved = (await resp.json())["content_uri"].rsplit("/", 1)[1]
    status, _, body = await _signed_get(remote, fed_hs, ca,
                                        f"/_matrix/federation/v1/media/download/{reserved}?timeout_ms=0")
    assert (status, json.loads(body)["errcode"]) == (504, "M_NOT_YET_UPLOADED")
