"""The service hooks the admin API will expose, and the remote media interface federation will fill."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import aiohttp

from homeserver.errors import MatrixError
from homeserver.media.remote import RemoteMedia
from tests.media.helpers import media_id_of, media_user


class StaticOrigin:
    """A stand-in origin server answering every fetch with the same bytes, counting the fetches."""

    def __init__(self, data: bytes, content_type: str = "text/plain"):
        self.data = data
        self.content_type = content_type
        self.fetches: list[tuple[str, str]] = []

    async def fetch(self, server_name: str, media_id: str, *, max_size: int, timeout_ms: int) -> RemoteMedia:
        self.fetches.append((server_name, media_id))
        if media_id == "Missing":
            raise MatrixError(404, "M_NOT_FOUND", "no such media on the origin")

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(self.data), 4):
                yield self.data[start:start + 4]

        return RemoteMedia(self.content_type, "remote.txt", chunks())


async def test_a_users_media_is_listed_newest_first_with_a_total(hs, client):
    alice = await media_user(client, "alice")
    bob = await media_user(client, "bob")
    uploaded = [media_id_of(await alice.upload(f"file {i}".encode(), "text/plain")) for i in range(3)]
    await bob.upload(b"bob's")
    page, total = await hs.media.list_user_media(alice.user_id, limit=2)
    assert total == 3
    assert len(page) == 2 and {row.media_id for row in page} <= set(uploaded)
    rest, _ = await hs.media.list_user_media(alice.user_id, offset=2, limit=2)
    assert {row.media_id for row in page + rest} == set(uploaded)


async def test_deleting_media_removes_its_bytes_unless_other_media_share_them(hs, client):
    alice = await media_user(client, "alice")
    unique = await alice.upload(b"only once", "text/plain")
    shared_a = await alice.upload(b"twice", "text/plain")
    shared_b = await alice.upload(b"twice", "text/plain")
    content_root = os.path.join(hs.config.media["store_path"], "content")

    def stored_files() -> int:
        return sum(len(names) for _, _, names in os.walk(content_root))

    assert stored_files() == 2
    assert await hs.media.delete_local_media(media_id_of(unique))
    assert stored_files() == 1
    assert (await alice.download(unique))[0] == 404
    assert await hs.media.delete_local_media(media_id_of(shared_a))
    assert stored_files() == 1
    assert (await alice.download(shared_b))[2] == b"twice"
    assert not await hs.media.delete_local_media(media_id_of(unique))


async def test_quarantined_media_is_served_as_not_found_until_released(hs, client):
    alice = await media_user(client, "alice")
    mxc = await alice.upload(b"bad stuff", "text/plain")
    assert await hs.media.quarantine_media(hs.config.server_name, media_id_of(mxc), "@admin:test")
    status, _, body = await alice.download(mxc)
    assert status == 404 and b"M_NOT_FOUND" in body
    status, _, _ = await alice.get("/_matrix/media/v3/download/" + mxc.removeprefix("mxc://"), auth=False)
    assert status == 404
    assert await hs.media.quarantine_media(hs.config.server_name, media_id_of(mxc), None)
    assert (await alice.download(mxc))[0] == 200


async def test_remote_media_is_fetched_once_cached_and_purged_by_age(hs, client):
    origin = StaticOrigin(b"from far away")
    hs.media.use_remote_fetcher(origin)
    alice = await media_user(client, "alice")
    for _ in range(2):
        status, headers, body = await alice.download("mxc://remote.example/RemoteMedia1")
        assert (status, body) == (200, b"from far away")
    assert origin.fetches == [("remote.example", "RemoteMedia1")]
    assert headers["Content-Disposition"] == "inline; filename=remote.txt"

    status, _, _ = await alice.download("mxc://remote.example/Missing")
    assert status == 404
    assert await hs.media.purge_remote_media_cache(0) == 0
    assert await hs.media.purge_remote_media_cache(hs.clock.time_ms() + 1) == 1
    content_root = os.path.join(hs.config.media["store_path"], "content")
    assert sum(len(names) for _, _, names in os.walk(content_root)) == 0
    await alice.download("mxc://remote.example/RemoteMedia1")
    assert len(origin.fetches) == 3


async def test_remote_media_larger_than_the_limit_is_502_too_large(make_homeserver):
    hs = await make_homeserver(media={"max_upload_size": 5})
    hs.media.use_remote_fetcher(StaticOrigin(b"much more than five bytes"))
    async with aiohttp.ClientSession(hs.base_url()) as client:
        alice = await media_user(client, "alice")
        status, _, body = await alice.download("mxc://remote.example/Big")
        assert status == 502 and b"M_TOO_LARGE" in body
