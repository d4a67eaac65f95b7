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


# Composition roots: the only places that wire one object into another after building it.
COMPOSITION_ROOTS = ("homeserver/server.py", "federation/wiring.py")
HOOK_PREFIXES = ("add_", "set_", "register", "subscribe")
# prometheus-client's way to report a value read at scrape time: a gauge, not a collaborator.
NOT_HOOKS = ("set_function",)


def test_no_constructor_registers_a_hook_on_another_object():
    """Wiring lives in the composition roots: a service's `__init__` never hooks itself into a
    collaborator (`other.add_x(self.y)`), so behaviour cannot depend on construction order."""
    offending = []
    for path in python_files("homeserver", "federation", "appservices"):
        if relative(path) in COMPOSITION_ROOTS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not (isinstance(node, ast.FunctionDef) and node.name == "__init__"):
                continue
            for call in ast.walk(node):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr.startswith(HOOK_PREFIXES) and call.func.attr not in NOT_HOOKS
                        and not (isinstance(call.func.value, ast.Name) and call.func.value.id == "self")):
                    offending.append(f"{relative(path)}:{call.lineno} {ast.unparse(call.func)}")
    assert offending == []


# The layers, bottom to top; an import may only point at its own layer or one below it.
KERNEL = ("homeserver.errors", "homeserver.clock", "homeserver.jsonutil", "homeserver.identifiers",
          "homeserver.requester", "homeserver.ip_blocklist", "homeserver.logging_setup", "homeserver.periodic",
          "homeserver.events", "homeserver.event_auth", "homeserver.state")
COMPOSITION = ("homeserver.server", "homeserver.__main__", "homeserver.admin_cli", "homeserver.register_user")
LAYERS = ("the kernel and pure core", "storage", "services", "/sync", "HTTP handlers",
          "federation and appservices", "the privacy service", "the composition root and CLI")


def layer_of(module: str) -> int | None:
    top = module.split(".")[0]
    if top == "storage":
        return 1
    if top == "federation":
        return 5
    if top == "appservices":
        return 6 if module.startswith("appservices.privacy") else 5
    if top != "homeserver":
        return None
    if module.startswith(KERNEL):
        return 0
    if module.startswith(COMPOSITION):
        return 7
    if module.startswith("homeserver.http"):
        return 4
    if module.startswith("homeserver.sync"):
        return 3
    return 2


def test_no_import_runs_back_up_the_layers():
    back = []
    for path in python_files("homeserver", "storage", "federation", "appservices"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        own = layer_of(module)
        for imported in imported_modules(path):
            target = layer_of(imported)
            if own is not None and target is not None and target > own:
                back.append(f"{module} ({LAYERS[own]}) -> {imported} ({LAYERS[target]})")
    assert back == []
