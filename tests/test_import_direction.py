"""Imports run down the layers only: storage imports no service, no service imports /sync.

Read from the source with `ast`, so an import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What storage may use from the homeserver package: the pure core and the shared kernel.
STORAGE_MAY_IMPORT = ("homeserver.events", "homeserver.jsonutil", "homeserver.identifiers", "homeserver.errors")
# Packages allowed to import homeserver.sync: itself, its HTTP routes and the composition root.
SYNC_IMPORTERS = ("homeserver/sync/", "homeserver/http/client_sync.py", "homeserver/http/client_sliding_sync.py",
                  "homeserver/server.py")
# The pure core calls nothing with I/O.
PURE_CORE = ("homeserver/events/", "homeserver/event_auth/", "homeserver/state/")
PURE_CORE_MAY_IMPORT = ("homeserver.events", "homeserver.event_auth", "homeserver.state", "homeserver.errors",
                        "homeserver.jsonutil", "homeserver.identifiers")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_storage_imports_no_service_only_the_pure_core():
    offending = {
        relative(path): sorted(m for m in imported_modules(path)
                               if m.startswith("homeserver") and not m.startswith(STORAGE_MAY_IMPORT))
        for path in python_files("storage")
    }
    assert {k: v for k, v in offending.items() if v} == {}


def test_no_service_imports_the_sync_package():
    offending = {
        relative(path): sorted(m for m in imported_modules(path) if m.startswith("homeserver.sync"))
        for path in python_files("homeserver")
        if not relative(path).startswith(SYNC_IMPORTERS)
    }
    assert {k: v for k, v in offending.items() if v} == {}


def test_no_service_imports_federation_or_appservices():
    offending = {
        relative(path): sorted(m for m in imported_modules(path)
                               if m.split(".")[0] in ("federation", "appservices"))
        for path in python_files("homeserver")
        # The composition roots: the server, and the CLI whose generate-config writes the privacy service's config.
        if relative(path) not in ("homeserver/server.py", "homeserver/__main__.py")
    }
    assert {k: v for k, v in offending.items() if v} == {}


def test_the_pure_core_imports_nothing_with_io():
    offending = {
        relative(path): sorted(m for m in imported_modules(path)
                               if (m.startswith("homeserver") and not m.startswith(PURE_CORE_MAY_IMPORT))
                               or m.split(".")[0] in ("storage", "aiohttp", "psycopg", "sqlite3"))
        for path in python_files(*PURE_CORE)
    }
    assert {k: v for k, v in offending.items() if v} == {}


def test_the_privacy_service_uses_only_http_apis_never_the_homeservers_code():
    """It runs against Synapse too: nothing from homeserver/, storage/ or federation/."""
    offending = {
        relative(path): sorted(m for m in imported_modules(path)
                               if m.split(".")[0] in ("homeserver", "storage", "federation")
                               or (m.startswith("appservices") and not m.startswith("appservices.privacy")))
        for path in python_files("appservices/privacy")
    }
    assert {k: v for k, v in offending.items() if v} == {}
