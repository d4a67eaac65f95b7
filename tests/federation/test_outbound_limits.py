"""Every outbound federation request has a time limit and a response size limit: a remote that answers
garbage, hangs, dribbles, floods, sends a compression bomb, giant headers, a cut-off or non-JSON body
fails that one request (a 502 for the client that caused it) and our server keeps serving."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from aiohttp import web

from federation.client import FederationError, FederationUnreachable
from tests.federation.helpers import federation_overrides, tls_session
from tests.support import misbehaving_remote as misbehaving
from tests.support.misbehaving_remote import MisbehavingServer
from tests.support.ports import free_port

BEHAVIOURS = {
    "answers_garbage": (misbehaving.garbage, FederationUnreachable),
    "hangs": (misbehaving.hang, FederationUnreachable),
    "dribbles_forever": (misbehaving.dribble, FederationUnreachable),
    "floods_an_endless_body": (misbehaving.flood, FederationError),
    "sends_a_compression_bomb": (misbehaving.gzip_bomb, FederationError),
    "sends_giant_headers": (misbehaving.huge_headers, FederationUnreachable),
    "cuts_its_answer_off": (misbehaving.cut_off, FederationUnreachable),
    "answers_something_not_json": (misbehaving.not_json, FederationError),
}


@pytest.fixture
async def limited_hs(make_homeserver, ca):
    return await make_homeserver(**federation_overrides(ca, free_port(), request_timeout_s=2,
                                                        max_response_bytes=1024 * 1024))


@pytest.mark.parametrize("name", sorted(BEHAVIOURS))
async def test_a_remote_that_misbehaves_fails_the_request_and_we_keep_serving(limited_hs, ca, make_remote, name):
    behaviour, error = BEHAVIOURS[name]
    bad = MisbehavingServer(ca, behaviour)
    await bad.start()
    try:
        with pytest.raises(error):
            await limited_hs.federation.client.get_json(bad.server_name, "/_matrix/federation/v1/version")
        async with tls_session(limited_hs, ca) as session:
            user = quote(f"@bob:{bad.server_name}")
            async with session.get(f"/_matrix/client/v3/profile/{user}") as resp:
                body = await resp.json()
                assert (resp.status, body["errcode"]) == (502, "M_UNKNOWN"), body
        assert bad.requests >= 2
    finally:
        await bad.stop()

    async def profile(request: web.Request) -> web.Response:
        return web.json_response({"displayname": "Still reachable"})

    good = await make_remote(routes=lambda remote: remote.route("GET", "/_matrix/federation/v1/query/profile",
                                                                profile))
    async with tls_session(limited_hs, ca) as session:
        async with session.get(f"/_matrix/client/v3/profile/{quote(f'@carol:{good.server_name}')}") as resp:
            assert (resp.status, await resp.json()) == (200, {"displayname": "Still reachable"})


async def test_a_large_answer_within_the_limit_is_read_whole(limited_hs, ca, make_remote):
    big = {"displayname": "x" * (512 * 1024)}

    async def profile(request: web.Request) -> web.Response:
        return web.json_response(big)

    remote = await make_remote(routes=lambda r: r.route("GET", "/_matrix/federation/v1/query/profile", profile))
    answer = await limited_hs.federation.client.get_json(remote.server_name, "/_matrix/federation/v1/query/profile",
                                                         {"user_id": f"@a:{remote.server_name}"})
    assert answer == big
