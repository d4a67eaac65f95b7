"""A 100 MB upload is streamed to disk: the server's memory never holds more than a few chunks of it."""

from __future__ import annotations

import hashlib
import os
import resource
import tracemalloc

import aiohttp

from tests.media.helpers import media_user

SIZE = 100 * 1024 * 1024
CHUNK = b"\x5a" * (1024 * 1024)


async def _body():
    for _ in range(SIZE // len(CHUNK)):
        yield CHUNK  # the same object every time: the client side allocates nothing per chunk


async def test_a_100_mb_upload_peaks_far_below_its_size_in_memory(make_homeserver, capsys):
    hs = await make_homeserver(media={"max_upload_size": 200 * 1024 * 1024})
    async with aiohttp.ClientSession(hs.base_url()) as client:
        alice = await media_user(client, "alice")
        rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        try:
            mxc = await alice.upload(_body(), "application/octet-stream")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kb) / 1024

    with capsys.disabled():
        print(f"\n100 MB upload: tracemalloc peak {peak / 2**20:.1f} MB, peak RSS growth {rss_growth_mb:.1f} MB")
    assert peak < 16 * 1024 * 1024
    digest = hashlib.sha256()
    for _ in range(SIZE // len(CHUNK)):
        digest.update(CHUNK)
    content_root = os.path.join(hs.config.media["store_path"], "content")
    stored = {name: os.path.getsize(os.path.join(d, name)) for d, _, names in os.walk(content_root) for name in names}
    assert stored == {digest.hexdigest(): SIZE}
    assert mxc.startswith("mxc://")
