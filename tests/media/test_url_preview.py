"""URL previews against a loopback page server the config allow-lists, and the guards around them."""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from homeserver.ip_blocklist import is_address_allowed, parse_networks
from homeserver.media.opengraph import decode_html, parse_opengraph
from tests.media.helpers import media_user, png_bytes

PREVIEW = "/_matrix/client/v1/media/preview_url"
OG_PAGE = """<html><head>
<meta property="og:title" content="Huiskamer &amp; Geklets">
<meta property="og:description" content="Praten in de huiskamer">
<meta property="og:image" content="/logo.png">
<title>ignored because og:title wins</title></head><body>hi</body></html>"""
PLAIN_PAGE = """<html><head><title>  Just a
   title </title><meta name="description" content="A plain page"></head></html>"""


def test_opengraph_tags_win_and_relative_images_become_absolute():
    og = parse_opengraph(OG_PAGE, "http://example.org/dir/page.html")
    assert og == {"og:title": "Huiskamer & Geklets", "og:description": "Praten in de huiskamer",
                  "og:image": "http://example.org/logo.png"}


def test_a_page_without_opengraph_falls_back_to_title_and_description():
    assert parse_opengraph(PLAIN_PAGE, "http://example.org/") == {
        "og:title": "Just a title", "og:description": "A plain page"}


def test_page_charset_comes_from_the_header_or_the_meta_tag():
    latin = "<meta charset='iso-8859-1'><title>Café</title>".encode("iso-8859-1")
    assert "Café" in decode_html(latin, "text/html")
    assert "Café" in decode_html("<title>Café</title>".encode("cp1252"), "text/html; charset=cp1252")


@pytest.mark.parametrize(("address", "allowed"), [
    ("93.184.216.34", True), ("2606:2800:220:1::1", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("::1", False), ("fe80::1", False), ("fd00::1", False), ("::ffff:127.0.0.1", False),
])
def test_only_public_unicast_addresses_are_reachable_by_default(address, allowed):
    assert is_address_allowed(ipaddress.ip_address(address), []) is allowed


def test_the_allow_list_opens_named_private_ranges_only():
    allowlist = parse_networks(["127.0.0.1/32", "10.0.0.0/8"])
    assert is_address_allowed(ipaddress.ip_address("127.0.0.1"), allowlist)
    assert is_address_allowed(ipaddress.ip_address("10.9.9.9"), allowlist)
    assert not is_address_allowed(ipaddress.ip_address("127.0.0.2"), allowlist)


@pytest.fixture
async def page_server() -> AsyncIterator[tuple[str, Counter]]:
    """A loopback web server with a few pages; returns its base URL and a hit counter per path."""
    hits: Counter = Counter()
    logo = png_bytes(600, 300)

    async def handle(request: web.Request) -> web.StreamResponse:
        hits[request.path] += 1
        routes = {
            "/og.html": lambda: web.Response(text=OG_PAGE, content_type="text/html"),
            "/plain.html": lambda: web.Response(text=PLAIN_PAGE, content_type="text/html"),
            "/logo.png": lambda: web.Response(body=logo, content_type="image/png"),
            "/huge.html": lambda: web.Response(body=b"<html>" + b" " * (11 * 1024 * 1024), content_type="text/html"),
            "/to-private": lambda: web.Response(status=302, headers={"Location": "http://127.0.0.2:9/secret"}),
        }
        if request.path not in routes:
            return web.Response(status=404)
        return routes[request.path]()

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", hits
    await runner.cleanup()


@pytest.fixture
async def previewing(make_homeserver):
    hs = await make_homeserver(media={"url_preview_enabled": True,
                                      "url_preview_ip_range_allowlist": ["127.0.0.1/32"]})
    async with aiohttp.ClientSession(hs.base_url()) as client:
        yield await media_user(client, "alice")


async def test_a_page_preview_has_its_opengraph_data_and_a_stored_image(previewing, page_server):
    base, _ = page_server
    status, _, body = await previewing.get(PREVIEW, url=f"{base}/og.html")
    assert status == 200, body
    og = json.loads(body)
    assert og["og:title"] == "Huiskamer & Geklets"
    assert og["og:description"] == "Praten in de huiskamer"
    assert og["og:image"].startswith("mxc://")
    assert (og["og:image:width"], og["og:image:height"], og["og:image:type"]) == (600, 300, "image/png")
    status, _, image = await previewing.download(og["og:image"])
    assert status == 200 and og["matrix:image:size"] == len(image)


async def test_a_plain_page_previews_with_its_title(previewing, page_server):
    base, _ = page_server
    status, _, body = await previewing.get(PREVIEW, url=f"{base}/plain.html")
    assert status == 200
    assert json.loads(body) == {"og:title": "Just a title", "og:description": "A plain page"}


async def test_an_image_url_previews_as_that_image(previewing, page_server):
    base, _ = page_server
    status, _, body = await previewing.get(PREVIEW, url=f"{base}/logo.png")
    og = json.loads(body)
    assert status == 200 and og["og:image"].startswith("mxc://") and og["og:image:width"] == 600


async def test_previews_are_cached(previewing, page_server):
    base, hits = page_server
    for _ in range(3):
        status, _, _ = await previewing.get(PREVIEW, url=f"{base}/plain.html")
        assert status == 200
    assert hits["/plain.html"] == 1


async def test_pages_over_the_size_limit_are_refused(previewing, page_server):
    base, _ = page_server
    status, _, body = await previewing.get(PREVIEW, url=f"{base}/huge.html")
    assert status == 502 and b"M_TOO_LARGE" in body


async def test_a_redirect_to_a_private_address_is_refused(previewing, page_server):
    base, hits = page_server
    status, _, body = await previewing.get(PREVIEW, url=f"{base}/to-private")
    assert status == 403 and b"M_FORBIDDEN" in body
    assert hits["/to-private"] == 1


async def test_loopback_and_private_hosts_are_refused_unless_allow_listed(make_homeserver, page_server):
    base, hits = page_server
    port = base.rsplit(":", 1)[1]
    hs = await make_homeserver(media={"url_preview_enabled": True})
    async with aiohttp.ClientSession(hs.base_url()) as client:
        alice = await media_user(client, "alice")
        for url in (f"{base}/og.html", f"http://localhost:{port}/og.html", "http://10.0.0.1/",
                    "http://[::1]/", "http://169.254.169.254/latest/meta-data/"):
            status, _, body = await alice.get(PREVIEW, url=url)
            assert status == 403 and b"M_FORBIDDEN" in body, url
    assert hits["/og.html"] == 0


async def test_bad_preview_requests_are_400_and_disabled_previews_are_unrecognized(previewing, client):
    for params in ({}, {"url": "ftp://example.org/file"}, {"url": "not a url"}):
        status, _, body = await previewing.get(PREVIEW, **params)
        assert status == 400, params
    alice = await media_user(client, "alice")
    status, _, body = await alice.get(PREVIEW, url="http://example.org/")
    assert status == 404 and b"M_UNRECOGNIZED" in body
