"""Fixtures for storage tests: every test gets a fresh database, once per engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from storage import Database, create_database
from tests.storage.dbconfig import ENGINES, make_config
from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401  (fixtures)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db_config(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Config for an empty, isolated database of the engine under test."""
    return make_config(engine, request, tmp_path)


@pytest.fixture
async def db(db_config: dict[str, Any]) -> AsyncIterator[Database]:
    database = await create_database(db_config)
    yield database
    await database.close()
