"""Fixtures for federation tests: a throwaway CA, our homeserver on TLS with an IP-literal server name
(127.0.0.1:PORT) that trusts that CA and may reach loopback, and fake remote servers on 127.0.0.2."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from homeserver.server import HomeServer
from tests.conftest import free_port
from tests.federation.helpers import federation_overrides
from tests.support.fake_remote import FakeRemoteServer
from tests.support.synapse_federation import FederatingSynapse, start_federating_synapse
from tests.support.tls_ca import TestCA


@pytest.fixture(scope="session")
def ca(tmp_path_factory) -> TestCA:
    """One throwaway CA per test process: our servers, fake remotes and Synapse all trust it."""
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def synapse(ca, tmp_path_factory) -> Iterator[FederatingSynapse]:
    """A real Synapse federating on 127.0.0.2, one per test module (it takes seconds to start)."""
    server = start_federating_synapse(tmp_path_factory.mktemp("synapse"), ca)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def make_federating_homeserver(make_homeserver, ca) -> Callable[..., Any]:
    """`await make_federating_homeserver(server_denylist=[...])`: federation settings as keywords."""

    async def start(**federation: Any) -> HomeServer:
        return await make_homeserver(**federation_overrides(ca, free_port(), **federation))

    return start


@pytest.fixture
async def fed_hs(make_federating_homeserver) -> HomeServer:
    return await make_federating_homeserver()


@pytest.fixture
async def make_remote(ca) -> AsyncIterator[Callable[..., Any]]:
    """Start fake remote servers: `remote = await make_remote()` (on 127.0.0.2 by default)."""
    started: list[FakeRemoteServer] = []

    async def start(host: str = "127.0.0.2", *, routes: Callable[[FakeRemoteServer], None] | None = None,
                    key_version: str = "fake1", cert_names: tuple[str, ...] | None = None) -> FakeRemoteServer:
        remote = FakeRemoteServer(ca, host, key_version=key_version, cert_names=cert_names)
        if routes is not None:
            routes(remote)
        await remote.start()
        started.append(remote)
        return remote

    yield start
    for remote in started:
        await remote.stop()


@pytest.fixture
async def remote(make_remote) -> FakeRemoteServer:
    return await make_remote()


@pytest.fixture
async def room_remote(make_remote) -> tuple[Any, FakeRemoteServer]:
    """(view, remote): a fake remote on 127.0.0.2 serving its view of a room (tests/support/fake_room.py)."""
    from tests.support.fake_room import RemoteRoomView

    view = RemoteRoomView()
    remote = await make_remote(routes=view.install)
    view.remote = remote
    return view, remote
