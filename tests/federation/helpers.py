"""HTTP helpers for federation tests: TLS sessions trusting the test CA, a user with a profile."""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp

from homeserver.server import HomeServer
from tests.support.tls_ca import TestCA


def tls_session(hs: HomeServer, ca: TestCA) -> aiohttp.ClientSession:
    """A session against `hs`'s TLS listener that trusts only the test CA."""
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=ca.ca_path))
    return aiohttp.ClientSession(hs.base_url("client"), connector=connector)


async def user_with_displayname(hs: HomeServer, ca: TestCA, localpart: str, displayname: str) -> dict[str, Any]:
    """Register `localpart` on `hs` and set its display name; returns the registration answer."""
    async with tls_session(hs, ca) as session:
        body = {"username": localpart, "password": "correct horse", "auth": {"type": "m.login.dummy"}}
        async with session.post("/_matrix/client/v3/register", json=body) as resp:
            assert resp.status == 200, await resp.text()
            registered = await resp.json()
        headers = {"Authorization": f"Bearer {registered['access_token']}"}
        async with session.put(f"/_matrix/client/v3/profile/{registered['user_id']}/displayname",
                               json={"displayname": displayname}, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
    return registered


def federation_overrides(ca: TestCA, port: int, **federation: Any) -> dict[str, Any]:
    """Config overrides for a TLS homeserver named 127.0.0.1:port federating over loopback."""
    cert = ca.issue("127.0.0.1")
    return {
        "server_name": f"127.0.0.1:{port}",
        "listeners": [
            {"host": "127.0.0.1", "port": port, "resources": ["client", "federation", "admin"],
             "tls": {"certificate_path": cert.certificate_path, "private_key_path": cert.private_key_path}},
        ],
        "federation": {"ca_bundle_path": ca.ca_path, "allow_loopback": True, **federation},
    }
