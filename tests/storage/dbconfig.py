"""Database configs for storage tests, one per engine, each naming an isolated database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ENGINES = ["sqlite", "postgres"]


def make_config(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path, **overrides: Any
) -> dict[str, Any]:
    """A config for a fresh database; for PostgreSQL this creates one (or skips without a server)."""
    if engine == "sqlite":
        return {"engine": "sqlite", "path": str(tmp_path / "homeserver.db"), **overrides}
    return {"engine": "postgres", "dsn": request.getfixturevalue("postgres_dsn"), "pool_max": 4, **overrides}
