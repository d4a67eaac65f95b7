"""A TLS listener with a configured certificate serves the client and federation APIs together."""

from __future__ import annotations

import ssl

import aiohttp
import pytest

from tests.federation.helpers import tls_session


async def test_one_tls_listener_serves_client_and_federation_resources(fed_hs, ca):
    assert fed_hs.base_url("client").startswith("https://127.0.0.1:")
    assert fed_hs.base_url("client") == fed_hs.base_url("federation")
    async with tls_session(fed_hs, ca) as session:
        async with session.get("/_matrix/client/versions") as resp:
            assert resp.status == 200
            assert "v1.11" in (await resp.json())["versions"]
        async with session.get("/_matrix/key/v2/server") as resp:
            assert (await resp.json())["server_name"] == fed_hs.config.server_name
        async with session.get("/_matrix/federation/v1/version") as resp:
            assert (await resp.json())["server"]["name"] == "huiskamer-homeserver"


async def test_a_client_that_does_not_trust_the_ca_cannot_connect(fed_hs):
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(fed_hs.base_url("client") + "/_matrix/client/versions",
                              ssl=ssl.create_default_context())


async def test_plain_http_is_not_answered_on_the_tls_port(fed_hs):
    plain = fed_hs.base_url("client").replace("https://", "http://")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(plain + "/_matrix/client/versions") as resp:
                await resp.read()
