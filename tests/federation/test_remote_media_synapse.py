"""Media across servers against a real Synapse: an avatar uploaded on Synapse downloads (and thumbnails)
through our authenticated client media endpoints, and Synapse fetches media uploaded on ours through its
own, over our /_matrix/federation/v1/media endpoints."""

from __future__ import annotations

import time

import aiohttp

from tests.federation.helpers import tls_session
from tests.media.helpers import media_user, png_bytes
from tests.support.synapse_federation import FederatingSynapse


def _synapse_session(synapse: FederatingSynapse) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(synapse.url, connector=aiohttp.TCPConnector(ssl=synapse.ssl_context()))


async def test_an_avatar_uploaded_on_synapse_downloads_through_our_authenticated_media(fed_hs, ca, synapse):
    avatar = png_bytes(640, 480, (10, 120, 200))
    bob = await synapse.register(f"bob{int(time.time() * 1000)}", "Bob on Synapse")
    bob_auth = {"Authorization": f"Bearer {bob['access_token']}"}
    async with _synapse_session(synapse) as session:
        async with session.post("/_matrix/media/v3/upload", data=avatar, params={"filename": "bob.png"},
                                headers={**bob_auth, "Content-Type": "image/png"}) as resp:
            assert resp.status == 200, await resp.text()
            mxc = (await resp.json())["content_uri"]
        async with session.put(f"/_matrix/client/v3/profile/{bob['user_id']}/avatar_url",
                               json={"avatar_url": mxc}, headers=bob_auth) as resp:
            assert resp.status == 200, await resp.text()

    async with tls_session(fed_hs, ca) as session:
        alice = await media_user(session, "alice")
        async with session.get(f"/_matrix/client/v3/profile/{bob['user_id']}", headers=alice.auth) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["avatar_url"] == mxc
        status, headers, body = await alice.download(mxc)
        assert status == 200, (body, synapse.log_tail())
        assert body == avatar
        assert headers["Content-Type"] == "image/png"
        assert headers["Content-Disposition"] == "inline; filename=bob.png"
        status, headers, thumb = await alice.thumbnail(mxc, 96, 96, "crop")
        assert status == 200, thumb
        assert headers["Content-Type"] == "image/png" and thumb != avatar


async def test_synapse_fetches_media_uploaded_on_our_server(fed_hs, ca, synapse):
    data = b"made on huiskamer \xe2\x9c\x93"
    async with tls_session(fed_hs, ca) as session:
        alice = await media_user(session, "alice")
        mxc = await alice.upload(data, "text/plain", filename="notes.txt")
        image_mxc = await alice.upload(png_bytes(500, 400), "image/png")
    bob = await synapse.register(f"bob{int(time.time() * 1000)}")
    bob_auth = {"Authorization": f"Bearer {bob['access_token']}"}
    async with _synapse_session(synapse) as session:
        async with session.get(f"/_matrix/client/v1/media/download/{mxc.removeprefix('mxc://')}",
                               headers=bob_auth) as resp:
            body = await resp.read()
            assert resp.status == 200, (body, synapse.log_tail())
            assert body == data
            assert "notes.txt" in resp.headers["Content-Disposition"]
        async with session.get(f"/_matrix/client/v1/media/thumbnail/{image_mxc.removeprefix('mxc://')}",
                               params={"width": "64", "height": "64", "method": "scale"}, headers=bob_auth) as resp:
            thumb = await resp.read()
            assert resp.status == 200, (thumb, synapse.log_tail())
            assert resp.headers["Content-Type"].startswith("image/")
