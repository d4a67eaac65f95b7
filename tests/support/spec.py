"""Locating the Matrix spec checkout that schema and rule-definition tests compare against.

The checkout is where `synctest.schema.spec_dir()` says (`$MATRIX_SPEC_DIR`, else its default
beside the repository; `docs/architecture.md` explains). Without it those tests are skipped on a developer machine, but under
`CI=true` they fail: a CI run must not pass by skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from synctest.schema import spec_dir


def need_spec(*parts: str) -> Path:
    """The path inside the spec checkout; skip (fail under CI=true) when it is missing."""
    path = spec_dir().joinpath(*parts)
    if path.exists():
        return path
    message = (f"Matrix spec not found at {path}: set MATRIX_SPEC_DIR to a checkout of "
               "https://github.com/matrix-org/matrix-spec")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
