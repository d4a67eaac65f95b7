"""Shared fixtures: a real homeserver on a free loopback port, on SQLite and on PostgreSQL."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from homeserver.config import parse_config
from homeserver.server import HomeServer
from tests.support.ports import free_port  # noqa: F401  (imported from here by many tests)
from tests.support.postgres import (  # noqa: F401  (fixtures)
    migrated_postgres_dsn,
    postgres_dsn,
    postgres_server,
    postgres_template,
)

SHARED_SECRET = "test-shared-secret"



@pytest.fixture(params=["sqlite", "postgres"])
def database_config(request: pytest.FixtureRequest, tmp_path) -> dict[str, Any]:
    """The `database` config section of an isolated, empty database of each engine."""
    if request.param == "sqlite":
        return {"engine": "sqlite", "path": str(tmp_path / "homeserver.db")}
    return {"engine": "postgres", "dsn": request.getfixturevalue("migrated_postgres_dsn"), "pool_min": 1,
            "pool_max": 4}


def make_test_config(tmp_path, database_config: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    port = free_port()
    raw: dict[str, Any] = {
        "server_name": f"localhost:{port}",
        "data_dir": str(tmp_path),
        "listeners": [
            {"host": "127.0.0.1", "port": port, "resources": ["client", "federation", "admin"]},
            {"host": "127.0.0.1", "port": 0, "resources": ["metrics"]},
        ],
        "database": copy.deepcopy(database_config),
        "registration": {"enabled": True, "shared_secret": SHARED_SECRET},
        "passwords": {"bcrypt_rounds": 4},
        "rate_limits": {"enabled": False},
        "logging": {"level": "INFO"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


@pytest.fixture
async def make_homeserver(tmp_path, database_config) -> AsyncIterator[Callable[..., Any]]:
    """Start homeservers with config overrides: `hs = await make_homeserver(registration={...})`."""
    started: list[HomeServer] = []

    async def start(**overrides: Any) -> HomeServer:
        directory = tmp_path / f"hs{len(started)}"
        directory.mkdir()
        db = database_config if not started else {"engine": "sqlite", "path": str(directory / "hs.db")}
        server = HomeServer(parse_config(make_test_config(directory, db, **overrides)))
        await server.start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        await server.stop()


@pytest.fixture
async def hs(make_homeserver) -> HomeServer:
    """A running homeserver with default test settings."""
    return await make_homeserver()


@pytest.fixture
async def client(hs: HomeServer) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP session against the homeserver's client listener."""
    async with aiohttp.ClientSession(hs.base_url("client")) as session:
        yield session
