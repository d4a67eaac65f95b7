"""Fixtures for driving stock Matrix clients (matrix-nio, matrix-js-sdk) against a homeserver.

The server under test is chosen by env `INTEROP_TARGET`:
- unset or `ours`: our homeserver, started in-process per test through the `hs` fixture
  (so once per database engine);
- `synapse`: one real Synapse for the whole session, started by `scripts/synapse/run_synapse.py`.
  Running the scenarios against Synapse is what proves the scenarios themselves are right.

Room scenarios request `rooms_url` instead of `homeserver_url`: it skips the test while the server
does not route `POST /createRoom` yet, so the suite stays green until rooms land on our server.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import aiohttp
import pytest

TARGET_ENV = "INTEROP_TARGET"
TARGETS = ("ours", "synapse")


def interop_target() -> str:
    target = os.environ.get(TARGET_ENV, "ours").strip().lower() or "ours"
    if target not in TARGETS:
        raise pytest.UsageError(f"{TARGET_ENV}={target!r} is not one of {', '.join(TARGETS)}")
    return target


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "interop: drives a stock Matrix client (matrix-nio, matrix-js-sdk) against the server"
    )


if interop_target() == "synapse":

    @pytest.fixture(scope="session")
    def synapse_url() -> Iterator[str]:
        """A Synapse on loopback shared by every interop test of the session."""
        from scripts.synapse.run_synapse import start_synapse

        server = start_synapse()
        try:
            yield server.url
        finally:
            server.stop()
            shutil.rmtree(server.workdir, ignore_errors=True)

    @pytest.fixture
    def homeserver_url(synapse_url: str) -> str:
        """Base URL of the client-server API under test."""
        return synapse_url

else:

    @pytest.fixture
    def homeserver_url(hs) -> str:
        """Base URL of the client-server API under test."""
        return hs.base_url("client")


async def create_room_is_routed(base_url: str) -> bool:
    """Whether the server knows `POST /createRoom` at all (an unauthenticated probe)."""
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base_url}/_matrix/client/v3/createRoom", json={}) as response:
            if response.status != 404:
                return True
            body = await response.json(content_type=None)
    return not (isinstance(body, dict) and body.get("errcode") == "M_UNRECOGNIZED")


@pytest.fixture
async def rooms_url(homeserver_url: str) -> str:
    """Base URL of a server that serves rooms; skips while ours answers createRoom with M_UNRECOGNIZED."""
    if not await create_room_is_routed(homeserver_url):
        pytest.skip("server under test has no rooms yet: POST /createRoom answers 404 M_UNRECOGNIZED")
    return homeserver_url
