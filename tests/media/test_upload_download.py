"""Uploading and downloading media over HTTP: round trips, safe headers, ranges, limits, reserved IDs."""

from __future__ import annotations

import asyncio
import os

import aiohttp

from tests.media.helpers import media_id_of, media_user


async def test_an_upload_downloads_back_byte_for_byte_with_its_type_and_name(client):
    alice = await media_user(client, "alice")
    mxc = await alice.upload(b"hello media", "text/plain", filename="greeting.txt")
    assert mxc.startswith("mxc://") and len(media_id_of(mxc)) == 24

    status, headers, body = await alice.download(mxc)
    assert (status, body) == (200, b"hello media")
    assert headers["Content-Type"] == "text/plain; charset=UTF-8"
    assert headers["Content-Disposition"] == "inline; filename=greeting.txt"


async def test_downloads_carry_the_sandboxing_headers(client):
    alice = await media_user(client, "alice")
    mxc = await alice.upload(b"<p>hi</p>", "text/html")
    status, headers, _ = await alice.download(mxc)
    assert status == 200
    assert headers["Content-Security-Policy"].startswith("sandbox; default-src 'none';")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cross-Origin-Resource-Policy"] == "cross-origin"


async def test_only_allow_listed_types_are_inline_and_others_are_attachments(client):
    alice = await media_user(client, "alice")
    cases = {"image/png": "inline", "text/html": "attachment", "image/svg+xml": "attachment",
             "application/javascript": "attachment", "video/mp4": "inline", None: "attachment"}
    for content_type, disposition in cases.items():
        mxc = await alice.upload(b"data", content_type)
        _, headers, _ = await alice.download(mxc)
        assert headers["Content-Disposition"] == disposition, content_type


async def test_non_ascii_file_names_are_encoded_per_rfc_6266(client):
    alice = await media_user(client, "alice")
    mxc = await alice.upload(b"x", "text/plain", filename="foto's van Zoë.txt")
    _, headers, _ = await alice.download(mxc)
    assert headers["Content-Disposition"] == "inline; filename*=utf-8''foto%27s%20van%20Zo%C3%AB.txt"
    _, headers, _ = await alice.download(mxc, file_name="other.txt")
    assert headers["Content-Disposition"] == "inline; filename=other.txt"


async def test_a_range_request_gets_206_with_just_those_bytes(client):
    alice = await media_user(client, "alice")
    mxc = await alice.upload(bytes(range(256)) * 10, "application/octet-stream")
    status, headers, body = await alice.download(mxc, headers={"Range": "bytes=100-199"})
    assert status == 206
    assert body == (bytes(range(256)) * 10)[100:200]
    assert headers["Content-Range"] == "bytes 100-199/2560"


async def test_identical_content_is_stored_once_on_disk(hs, client):
    alice = await media_user(client, "alice")
    bob = await media_user(client, "bob")
    first = await alice.upload(b"same bytes", "text/plain")
    second = await bob.upload(b"same bytes", "text/plain", filename="copy.txt")
    assert first != second
    content_root = os.path.join(hs.config.media["store_path"], "content")
    files = [name for _, _, names in os.walk(content_root) for name in names]
    assert len(files) == 1
    assert (await bob.download(first))[2] == (await alice.download(second))[2] == b"same bytes"


async def test_the_v1_endpoints_need_an_access_token(client):
    alice = await media_user(client, "alice")
    mxc = await alice.upload(b"secret", "text/plain")
    server_and_id = mxc.removeprefix("mxc://")
    for path in (f"/_matrix/client/v1/media/download/{server_and_id}",
                 f"/_matrix/client/v1/media/thumbnail/{server_and_id}?width=32&height=32",
                 "/_matrix/client/v1/media/config"):
        async with client.get(path) as response:
            assert response.status == 401, path
            assert (await response.json())["errcode"] == "M_MISSING_TOKEN"
    async with client.post("/_matrix/media/v3/upload", data=b"x") as response:
        assert response.status == 401


async def test_config_reports_the_upload_limit(make_homeserver):
    hs = await make_homeserver(media={"max_upload_size": 12345})
    async with aiohttp.ClientSession(hs.base_url()) as client:
        alice = await media_user(client, "alice")
        status, _, body = await alice.get("/_matrix/client/v1/media/config")
        assert status == 200 and body == b'{"m.upload.size":12345}'


async def test_an_upload_over_the_limit_is_413_whether_declared_or_streamed(make_homeserver):
    hs = await make_homeserver(media={"max_upload_size": 1000})
    async with aiohttp.ClientSession(hs.base_url()) as client:
        alice = await media_user(client, "alice")
        body = await alice.upload(b"x" * 1001, expect=413)
        assert body["errcode"] == "M_TOO_LARGE"

        async def chunked():  # no Content-Length: the limit is found while streaming
            for _ in range(5):
                yield b"y" * 300

        body = await alice.upload(chunked(), expect=413)
        assert body["errcode"] == "M_TOO_LARGE"
        assert await alice.upload(b"z" * 1000)
        tmp = os.path.join(hs.config.media["store_path"], "tmp")
        assert os.listdir(tmp) == []


async def test_uploads_are_rate_limited_per_user(make_homeserver):
    hs = await make_homeserver(rate_limits={"enabled": True,
                                            "media_upload": {"per_second": 0.01, "burst_count": 2}})
    async with aiohttp.ClientSession(hs.base_url()) as client:
        alice = await media_user(client, "alice")
        bob = await media_user(client, "bob")
        await alice.upload(b"1")
        await alice.upload(b"2")
        body = await alice.upload(b"3", expect=429)
        assert body["errcode"] == "M_LIMIT_EXCEEDED" and body["retry_after_ms"] > 0
        await bob.upload(b"bob's own bucket")


async def test_unknown_and_malformed_media_ids_are_404_and_bad_server_names_400(hs, client):
    alice = await media_user(client, "alice")
    server = hs.config.server_name
    for media_id in ("NoSuchMedia", "bad.id", "bad%21id"):
        status, _, body = await alice.get(f"/_matrix/client/v1/media/download/{server}/{media_id}")
        assert status == 404 and b"M_NOT_FOUND" in body, media_id
    status, _, body = await alice.get("/_matrix/client/v1/media/download/bad_server!/abc")
    assert status == 400 and b"M_INVALID_PARAM" in body


async def test_uncached_remote_media_with_allow_remote_false_is_404(client):
    # Fetching from the origin is tested in tests/federation/test_remote_media.py.
    alice = await media_user(client, "alice")
    status, _, body = await alice.get("/_matrix/client/v1/media/download/example.org/abcdef", allow_remote=False)
    assert status == 404 and b"allow_remote is false" in body


async def test_a_reserved_id_is_filled_once_by_its_creator_and_then_served(client):
    alice = await media_user(client, "alice")
    bob = await media_user(client, "bob")
    async with client.post("/_matrix/media/v1/create", headers=alice.auth) as r:
        created = await r.json()
        assert r.status == 200
    mxc = created["content_uri"]
    assert created["unused_expires_at"] > 0
    put_path = "/_matrix/media/v3/upload/" + mxc.removeprefix("mxc://")

    status, _, body = await alice.download(mxc, timeout_ms=100)
    assert status == 504 and b"M_NOT_YET_UPLOADED" in body
    async with client.put(put_path, data=b"late", headers={**bob.auth, "Content-Type": "text/plain"}) as r:
        assert r.status == 403 and (await r.json())["errcode"] == "M_FORBIDDEN"

    # A download waiting for the content is answered as soon as it arrives.
    waiting = asyncio.create_task(alice.download(mxc, timeout_ms=10_000))
    await asyncio.sleep(0.2)
    async with client.put(put_path, data=b"late", headers={**alice.auth, "Content-Type": "text/plain"},
                          params={"filename": "late.txt"}) as r:
        assert r.status == 200 and await r.json() == {}
    status, headers, body = await asyncio.wait_for(waiting, 5)
    assert (status, body) == (200, b"late")
    assert headers["Content-Disposition"] == "inline; filename=late.txt"

    async with client.put(put_path, data=b"again", headers=alice.auth) as r:
        assert r.status == 409 and (await r.json())["errcode"] == "M_CANNOT_OVERWRITE_MEDIA"


async def test_uploading_to_an_id_never_reserved_is_404(hs, client):
    alice = await media_user(client, "alice")
    server = hs.config.server_name
    async with client.put(f"/_matrix/media/v3/upload/{server}/NeverCreated", data=b"x", headers=alice.auth) as r:
        assert r.status == 404 and (await r.json())["errcode"] == "M_NOT_FOUND"


async def test_legacy_unauthenticated_download_works_unless_switched_off(make_homeserver):
    on = await make_homeserver()
    off = await make_homeserver(media={"unauthenticated_media_enabled": False})
    for hs, expected in ((on, 200), (off, 404)):
        async with aiohttp.ClientSession(hs.base_url()) as client:
            alice = await media_user(client, "alice")
            mxc = await alice.upload(b"old client", "text/plain")
            status, _, _ = await alice.get("/_matrix/media/v3/download/" + mxc.removeprefix("mxc://"), auth=False)
            assert status == expected
            status, _, body = await alice.download(mxc)
            assert (status, body) == (200, b"old client")


async def test_media_added_after_the_freeze_date_is_only_served_authenticated(make_homeserver):
    frozen = await make_homeserver(media={"unauthenticated_media_freeze_date": "2020-01-01"})
    not_yet = await make_homeserver(media={"unauthenticated_media_freeze_date": "2999-01-01"})
    for hs, expected in ((frozen, 404), (not_yet, 200)):
        async with aiohttp.ClientSession(hs.base_url()) as client:
            alice = await media_user(client, "alice")
            mxc = await alice.upload(b"new", "text/plain")
            status, _, _ = await alice.get("/_matrix/media/v3/download/" + mxc.removeprefix("mxc://"), auth=False)
            assert status == expected


async def test_an_upload_to_a_created_media_id_counts_once_against_the_upload_limit(make_homeserver):
    hs = await make_homeserver(rate_limits={"enabled": True,
                                            "media_upload": {"per_second": 0.001, "burst_count": 2}})
    async with aiohttp.ClientSession(hs.base_url()) as client:
        alice = await media_user(client, "alice")
        for content in (b"one", b"two"):
            async with client.post("/_matrix/media/v1/create", headers=alice.auth) as resp:
                assert resp.status == 200
                mxc = (await resp.json())["content_uri"]
            server_name, media_id = mxc[len("mxc://"):].split("/")
            async with client.put(f"/_matrix/media/v3/upload/{server_name}/{media_id}", data=content,
                                  headers={**alice.auth, "Content-Type": "text/plain"}) as resp:
                assert resp.status == 200, await resp.text()
        async with client.post("/_matrix/media/v1/create", headers=alice.auth) as resp:
            assert resp.status == 429
