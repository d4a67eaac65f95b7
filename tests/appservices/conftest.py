"""Fixtures: a test appservice on loopback and a homeserver that has it registered."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.appservices.support import AsClient, TestAppService, registration_yaml


@pytest.fixture
async def appservice() -> AsyncIterator[TestAppService]:
    service = TestAppService()
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def bridged_hs(make_homeserver, appservice, tmp_path):
    """A homeserver with the test appservice registered as `bridge` (users @bridge_*, aliases #bridge_*)."""
    path = registration_yaml(tmp_path, appservice.url)
    return await make_homeserver(app_service_config_files=[path])


@pytest.fixture
async def client(bridged_hs) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(bridged_hs.base_url("client")) as session:
        yield session


@pytest.fixture
def bridge(client) -> AsClient:
    return AsClient(client)
