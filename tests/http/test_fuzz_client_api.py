"""Schemathesis over the spec's client-server OpenAPI against a running server of ours.

Every operation the spec describes gets a bounded number of generated requests, sent with a
valid access token. The test fails on any 5xx and on any response whose body violates the
spec's schema for its status code. The spec is split across one file per API area with
relative `$ref`s into `definitions/` and `event-schemas/`, so it is bundled here into one
document first (every `$ref` inlined, each file's paths prefixed with its own base path).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from synctest.schema import spec_dir
from tests.support.rooms import new_user

CLIENT_SERVER = spec_dir() / "data" / "api" / "client-server"

pytestmark = pytest.mark.skipif(not CLIENT_SERVER.is_dir(), reason="no matrix-spec checkout next to the project")

# Bounded so that the whole test stays well under a minute on a 2-core machine.
EXAMPLES_PER_OPERATION = 10
SECONDS_BUDGET = 15.0

# Operations not sent at all, each with the reason.
SKIPPED_OPERATIONS = {
    # Ends the session whose token the rest of the run uses.
    ("POST", "/_matrix/client/v3/logout"),
    ("POST", "/_matrix/client/v3/logout/all"),
    ("POST", "/_matrix/client/v3/account/deactivate"),
    ("POST", "/_matrix/client/v3/account/password"),
    ("POST", "/_matrix/client/v3/delete_devices"),
    ("DELETE", "/_matrix/client/v3/devices/{deviceId}"),
    # Redirects to an identity provider: the generated redirectUrl is followed by the HTTP client.
    ("GET", "/_matrix/client/v3/login/sso/redirect"),
    ("GET", "/_matrix/client/v3/login/sso/redirect/{idpId}"),
    # Long-polls until its timeout (the generated one can be minutes): covered by tests/sync.
    ("GET", "/_matrix/client/v3/events"),
}

# Files the spec keeps in this directory that are not client-server endpoints we serve.
SKIPPED_FILES = {
    "oauth_server_metadata.yaml",  # OAuth 2.0 (MSC3861) delegation: the server does not offer it
}

# Schema violations excused, each with the reason: (method, path, text found in the failure).
SCHEMA_QUIRKS: list[tuple[str, str, str]] = [
    # Device fields we do not know are sent as null, not left out: matrix-nio's response schema
    # requires them and Synapse sends null too (docs/decisions.md).
    ("GET", "/_matrix/client/v3/devices", "null is not of type"),
    ("GET", "/_matrix/client/v3/devices/{deviceId}", "null is not of type"),
    # With no TURN server configured the answer is `{}`, as Synapse's; the spec's 200 schema
    # assumes one is configured and has no way to say there is none.
    ("GET", "/_matrix/client/v3/voip/turnServer", "is a required property"),
]


def excused(method: str, path: str, message: str) -> bool:
    return any(method == m and path == p and text in message for m, p, text in SCHEMA_QUIRKS)


def _load(path: Path, cache: dict[Path, Any]) -> Any:
    if path not in cache:
        cache[path] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return cache[path]


def _pointer(document: Any, fragment: str) -> Any:
    node = document
    for part in fragment.lstrip("/").split("/") if fragment.strip("/") else []:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _inline(node: Any, base: Path, document: Any, cache: dict[Path, Any], stack: tuple[str, ...]) -> Any:
    """`node` with every `$ref` (to another file or within `document`) replaced by its target."""
    if isinstance(node, list):
        return [_inline(item, base, document, cache, stack) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        target_file, _, fragment = ref.partition("#")
        if target_file:
            path = (base.parent / target_file).resolve()
            target_document = _load(path, cache)
        else:
            path, target_document = base, document
        key = f"{path}#{fragment}"
        if key in stack:  # a recursive schema: accept anything below the cycle
            return {}
        target = _inline(copy.deepcopy(_pointer(target_document, fragment)), path, target_document, cache,
                         stack + (key,))
        siblings = {k: _inline(v, base, document, cache, stack) for k, v in node.items() if k != "$ref"}
        if siblings and isinstance(target, dict):
            return {**target, **siblings}
        return target
    return {k: _inline(v, base, document, cache, stack) for k, v in node.items()}


@functools.cache
def bundle_client_server_spec() -> dict[str, Any]:
    """One OpenAPI 3.1 document holding every client-server operation, with absolute paths.

    Cached: both engines' runs fuzz the same document (schemathesis does not modify it)."""
    cache: dict[Path, Any] = {}
    paths: dict[str, Any] = {}
    for path in sorted(CLIENT_SERVER.glob("*.yaml")):
        if path.name in SKIPPED_FILES:
            continue
        document = _load(path.resolve(), cache)
        if not isinstance(document, dict) or "paths" not in document:
            continue
        base_path = document["servers"][0]["variables"]["basePath"]["default"]
        for template, item in document["paths"].items():
            paths[base_path + template] = _inline(item, path.resolve(), document, cache, ())
    return {
        "openapi": "3.1.0",
        "info": {"title": "Matrix client-server API (bundled)", "version": "1"},
        "paths": paths,
    }


@dataclass
class FuzzReport:
    requests: int = 0
    operations: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    server_errors: list[str] = field(default_factory=list)
    schema_violations: list[str] = field(default_factory=list)
    generation_errors: list[str] = field(default_factory=list)


@dataclass
class KnownIds:
    """Real identifiers substituted into every other generated request, so that the run reaches past
    the 404s of random IDs into the handlers' own validation."""

    user_id: str
    device_id: str
    room_id: str

    def apply(self, case: Any) -> None:
        params = case.path_parameters or {}
        for name, value in (("userId", self.user_id), ("deviceId", self.device_id), ("roomId", self.room_id),
                            ("roomIdOrAlias", self.room_id)):
            if name in params:
                params[name] = value


def run_fuzz(base_url: str, token: str, known: KnownIds, report: FuzzReport) -> None:
    """Blocking: schemathesis sends its requests with `requests`, so this runs in a worker thread."""
    import requests
    import schemathesis

    schema = schemathesis.openapi.from_dict(bundle_client_server_spec())
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    operations = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation is None:
            report.generation_errors.append(str(result.err())[:200])
            continue
        if (operation.method.upper(), operation.path) not in SKIPPED_OPERATIONS:
            operations.append(operation)
    report.operations = len(operations)
    # Every operation gets at least one request; the time share only caps the further examples.
    per_operation = SECONDS_BUDGET / max(1, len(operations))
    for operation in operations:
        fuzz_operation(operation, base_url, session, known, report, time.monotonic() + per_operation)


def _strategy(operation: Any) -> Any:
    """Valid requests and, as often, requests that break the schema (wrong types, missing fields)."""
    from hypothesis import strategies
    from schemathesis import GenerationMode

    positive = operation.as_strategy(GenerationMode.POSITIVE)
    try:
        return strategies.one_of(positive, operation.as_strategy(GenerationMode.NEGATIVE))
    except Exception:  # an operation with nothing to negate
        return positive


def fuzz_operation(operation: Any, base_url: str, session: Any, known: KnownIds, report: FuzzReport,
                   stop_at: float) -> None:
    import hypothesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import FailureGroup
    from schemathesis.specs.openapi.checks import response_schema_conformance

    method, path = operation.method.upper(), operation.path
    examples = iter(range(1_000_000))

    @hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck), derandomize=True,
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
    @hypothesis.given(case=_strategy(operation))
    def send(case: Any) -> None:
        example = next(examples)
        if example and time.monotonic() > stop_at:
            return
        if example % 2:
            known.apply(case)
        response = case.call(base_url=base_url, session=session, timeout=10, allow_redirects=False)
        report.requests += 1
        report.statuses[response.status_code] += 1
        if response.status_code >= 500:
            report.server_errors.append(f"{method} {path} -> {response.status_code}: {response.text[:200]}")
            return
        try:
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
        except FailureGroup as group:
            for failure in group.exceptions:
                message = f"{failure.title}: {failure.message}"
                if not excused(method, path, message):
                    report.schema_violations.append(
                        f"{method} {path} -> {response.status_code}: {message[:600]} (body {response.text[:300]})")

    try:
        send()
    except hypothesis.errors.Unsatisfiable:
        report.generation_errors.append(f"{method} {path}: no example satisfies the schema")


@pytest.fixture
async def hs(make_homeserver):
    """A server that sends nothing off this machine whatever the fuzzer names: generated
    identity servers are refused (none is trusted) and federation is off."""
    return await make_homeserver(identity={"trusted_servers": []}, federation={"enabled": False})


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(hs, client):
    logging.getLogger("homeserver.access").setLevel(logging.WARNING)
    alice = await new_user(client, "fuzzer")
    room_id = await alice.create_room(name="fuzzing ground")
    await alice.send(room_id, "something to find")
    known = KnownIds(alice.user_id, alice.device_id, room_id)
    report = FuzzReport()
    started = time.monotonic()
    await asyncio.to_thread(run_fuzz, hs.base_url("client"), alice.token, known, report)
    elapsed = time.monotonic() - started
    summary = (f"{report.requests} requests over {report.operations} operations in {elapsed:.1f}s; "
               f"statuses {dict(sorted(report.statuses.items()))}; {len(report.server_errors)} 5xx, "
               f"{len(report.schema_violations)} schema violations")
    print(summary)
    assert report.requests >= report.operations, summary
    assert not report.server_errors, "\n".join([summary, *report.server_errors])
    assert not report.schema_violations, "\n".join([summary, *report.schema_violations])
