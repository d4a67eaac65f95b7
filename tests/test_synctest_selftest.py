"""Self-tests of the synctest machinery: no homeserver needed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import pytest
from aiohttp import web

from synctest import schema
from synctest.context import Context
from synctest.registry import CaseFailure, all_cases, run_cases, select
from synctest.users import shared_secret_mac
from tests.support.spec import need_spec


@pytest.fixture(autouse=True)
def _the_spec_checkout(request: pytest.FixtureRequest) -> None:
    """Schema checks need the spec: skipped without it, failing under CI=true."""
    if not request.function.__name__.startswith("test_the_spec_directory"):
        need_spec("data", "api")


def test_the_spec_directory_defaults_to_shared_matrix_spec_beside_the_project(monkeypatch: pytest.MonkeyPatch
                                                                               ) -> None:
    monkeypatch.delenv("MATRIX_SPEC_DIR", raising=False)
    project_root = Path(schema.__file__).resolve().parent.parent
    assert schema.spec_dir() == (project_root.parent / "shared" / "matrix-spec").resolve()


def test_the_spec_directory_can_be_overridden_by_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("MATRIX_SPEC_DIR", str(tmp_path))
    assert schema.spec_dir() == tmp_path.resolve()
    with pytest.raises(schema.SpecError, match="MATRIX_SPEC_DIR"):
        schema.Spec(tmp_path)


def test_the_spec_directory_missing_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    monkeypatch.setenv("MATRIX_SPEC_DIR", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="MATRIX_SPEC_DIR"):
        need_spec("data", "api")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="MATRIX_SPEC_DIR"):
        need_spec("data", "api")
    (tmp_path / "data" / "api").mkdir(parents=True)
    assert need_spec("data", "api") == tmp_path.resolve() / "data" / "api"


def test_a_valid_versions_response_passes() -> None:
    schema.validate_response("GET", "/_matrix/client/versions", 200, {"versions": ["v1.1", "v1.12"]})


def test_a_wrong_item_type_is_reported_with_its_json_path() -> None:
    with pytest.raises(schema.SchemaViolation, match=r"\$\.versions\[1\]: 3 is not of type 'string'"):
        schema.validate_response("GET", "/_matrix/client/versions", 200, {"versions": ["v1.1", 3]})


def test_a_missing_required_property_is_reported() -> None:
    with pytest.raises(schema.SchemaViolation, match="'versions' is a required property"):
        schema.validate_response("GET", "/_matrix/client/versions", 200, {})


def test_error_responses_follow_a_relative_ref_into_the_shared_error_schema() -> None:
    schema.validate_response("POST", "/_matrix/client/v3/login", 400, {"errcode": "M_NOT_JSON", "error": "x"})
    with pytest.raises(schema.SchemaViolation, match=r"\$: 'errcode' is a required property"):
        schema.validate_response("POST", "/_matrix/client/v3/login", 400, {"error": "no code"})


def test_a_schema_level_ref_to_the_rate_limit_schema_is_followed() -> None:
    with pytest.raises(schema.SchemaViolation, match=r"\$\.retry_after_ms: 'soon' is not of type 'integer'"):
        schema.validate_response(
            "POST", "/_matrix/client/v3/login", 429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": "soon"}
        )


def test_a_response_level_ref_to_shared_components_is_followed() -> None:
    # content-repo.yaml answers 429 with `$ref: '#/components/responses/rateLimited'`.
    uri = schema.load_spec().response_schema_uri("POST", "/_matrix/media/v3/upload", 429)
    assert uri is not None and uri.endswith(
        "#/components/responses/rateLimited/content/application~1json/schema"
    )
    with pytest.raises(schema.SchemaViolation, match=r"\$\.retry_after_ms"):
        schema.validate_response(
            "POST", "/_matrix/media/v3/upload", 429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": "soon"}
        )


def test_refs_into_event_schemas_are_resolved_deep_inside_sync() -> None:
    body = {
        "next_batch": "s1",
        "rooms": {"join": {"!r:x": {"timeline": {"events": [{"type": "m.room.message"}]}}}},
    }
    with pytest.raises(schema.SchemaViolation) as failure:
        schema.validate_response("GET", "/_matrix/client/v3/sync", 200, body)
    assert "$.rooms.join['!r:x'].timeline.events[0]: 'event_id' is a required property" in str(failure.value)


def test_path_parameter_names_need_not_match_the_spec() -> None:
    op = schema.load_spec().operation("get", "/_matrix/client/v3/rooms/{room}/state/{t}/{k}")
    assert op.full_path == "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}"


def test_federation_and_wellknown_base_paths_are_indexed() -> None:
    spec = schema.load_spec()
    assert spec.operation("GET", "/_matrix/federation/v1/version").file.name == "version.yaml"
    assert spec.operation("GET", "/.well-known/matrix/server").file.parent.name == "server-server"
    assert spec.operation("GET", "/.well-known/matrix/client").file.parent.name == "client-server"


def test_no_operation_is_defined_twice_in_the_spec() -> None:
    assert {key: ops for key, ops in schema.load_spec().operations.items() if len(ops) > 1} == {}


def test_a_documented_response_without_a_body_accepts_anything() -> None:
    schema.validate_response("GET", "/.well-known/matrix/client", 404, "not json at all")


def test_an_undocumented_status_is_a_spec_error() -> None:
    with pytest.raises(schema.SpecError, match="status 418 is not documented"):
        schema.validate_response("GET", "/_matrix/client/versions", 418, {})


def test_an_unknown_operation_is_a_spec_error() -> None:
    with pytest.raises(schema.SpecError, match="no operation DELETE /_matrix/client/versions"):
        schema.validate_response("DELETE", "/_matrix/client/versions", 200, {})


def test_a_whole_schema_file_can_be_used_directly() -> None:
    schema.validate_against_file("api/client-server/definitions/errors/error.yaml", {"errcode": "M_UNKNOWN"})
    with pytest.raises(schema.SchemaViolation, match=r"\$\.errcode: 5 is not of type 'string'"):
        schema.validate_against_file("api/client-server/definitions/errors/error.yaml", {"errcode": 5})


def _refs(node: Any):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for key, value in node.items():
            if key not in ("examples", "example"):
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_every_ref_reachable_from_every_json_response_schema_resolves() -> None:
    spec = schema.load_spec()
    resolver = spec.registry.resolver()
    pending: list[str] = []
    for (method, path), (op, *_) in spec.operations.items():
        responses = resolver.lookup(f"{op.uri}#{op.pointer}").contents.get("responses") or {}
        for status in responses:
            if str(status).isdigit():
                uri = spec.response_schema_uri(method, path, int(status))
                if uri is not None:
                    pending.append(uri)
    assert len(pending) > 300
    seen: set[str] = set()
    while pending:
        uri = pending.pop()
        if uri in seen:
            continue
        seen.add(uri)
        contents = resolver.lookup(uri).contents  # raises if the ref is dangling
        base = uri.partition("#")[0]
        pending.extend(urljoin(base, ref) for ref in _refs(contents))
    assert any("event-schemas" in uri for uri in seen)
    assert any("/data/schemas/" in uri for uri in seen)


def test_the_shared_secret_mac_matches_an_independent_hmac_sha1() -> None:
    expected = hmac.new(b"s3cret", b"nonce\x00alice\x00pw\x00admin", hashlib.sha1).hexdigest()
    assert shared_secret_mac("s3cret", "nonce", "alice", "pw", admin=True) == expected
    assert shared_secret_mac("s3cret", "nonce", "alice", "pw", admin=False) != expected


def test_cases_are_registered_with_unique_area_qualified_names() -> None:
    names = [case.name for case in all_cases()]
    assert len(names) == len(set(names))
    assert "versions.lists_v1_1_and_a_current_version" in names
    assert all("." in name for name in names)


def test_the_filter_selects_cases_by_substring() -> None:
    chosen = select(all_cases(), "cors")
    assert chosen and all("cors" in case.name for case in chosen)


def test_the_runner_reports_pass_fail_and_a_plain_summary_line() -> None:
    from synctest.registry import Case

    async def passes(ctx: object) -> None:
        return None

    async def fails(ctx: object) -> None:
        raise CaseFailure("expected 404, got 500")

    async def fails_quoting_an_html_body(ctx: object) -> None:
        raise CaseFailure("got <html>\n  <body>\n1 passed, 0 failed")

    async def crashes(ctx: object) -> None:
        raise KeyError("errcode")

    lines: list[str] = []
    cases = [
        Case("demo.passes", passes),
        Case("demo.fails", fails),
        Case("demo.html", fails_quoting_an_html_body),
        Case("demo.crashes", crashes),
    ]
    failed = asyncio.run(run_cases(cases, object(), lines.append))
    assert failed == 3
    assert lines == [
        "PASS demo.passes",
        "FAIL demo.fails: expected 404, got 500",
        "FAIL demo.html: got <html> <body> 1 passed, 0 failed",
        "FAIL demo.crashes: KeyError: 'errcode'",
        "1 passed, 3 failed",
    ]


async def _run_against(app: web.Application, substring: str | None = None) -> dict[str, str]:
    """Serve ``app`` on a loopback port, run the selected cases against it, return name -> line."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    lines: list[str] = []
    try:
        async with aiohttp.ClientSession() as session:
            ctx = Context(f"http://127.0.0.1:{port}", session, "secret")
            await run_cases(select(all_cases(), substring), ctx, lines.append)
    finally:
        await runner.cleanup()
    return {line.split()[1].rstrip(":"): line for line in lines[:-1]}


def test_only_the_optional_well_known_cases_pass_against_a_server_that_404s_everything() -> None:
    async def plain_404(request: web.Request) -> web.Response:
        return web.Response(status=404, text="nothing here")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", plain_404)
    results = asyncio.run(_run_against(app))
    passed = sorted(name for name, line in results.items() if line.startswith("PASS"))
    assert passed == [
        "wellknown.client_discovery_is_valid_or_absent",
        "wellknown.server_delegation_is_valid_or_absent",
        "wellknown.support_information_is_valid_or_absent",
    ]


def test_a_preflight_answered_by_the_endpoint_logic_fails() -> None:
    async def always_401(request: web.Request) -> web.Response:
        headers = {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
        }
        return web.json_response({"errcode": "M_MISSING_TOKEN"}, status=401, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", always_401)
    results = asyncio.run(_run_against(app, "cors.preflight_runs_no_endpoint_logic"))
    line = results["cors.preflight_runs_no_endpoint_logic"]
    assert line.startswith("FAIL cors.preflight_runs_no_endpoint_logic: ")
    assert "OPTIONS /_matrix/client/v3/account/whoami -> 401, expected 200 or 204" in line


def test_versions_without_a_current_release_fail_with_the_list_in_the_message() -> None:
    async def old_versions(request: web.Request) -> web.Response:
        return web.json_response({"versions": ["r0.6.1", "v1.1"]})

    app = web.Application()
    app.router.add_get("/_matrix/client/versions", old_versions)
    results = asyncio.run(_run_against(app, "versions.lists"))
    assert results["versions.lists_v1_1_and_a_current_version"] == (
        "FAIL versions.lists_v1_1_and_a_current_version: no version >= v1.11 advertised in ['r0.6.1', 'v1.1']"
    )


def _key_document(server_name: str, *, tamper: bool = False) -> dict[str, Any]:
    import signedjson.key
    import signedjson.sign

    signing_key = signedjson.key.generate_signing_key("st1")
    keys = {
        "server_name": server_name,
        "valid_until_ts": 4_000_000_000_000,
        "verify_keys": {"ed25519:st1": {"key": signedjson.key.encode_verify_key_base64(signing_key.verify_key)}},
        "old_verify_keys": {},
    }
    signed = signedjson.sign.sign_json(keys, server_name, signing_key)
    if tamper:
        signed["valid_until_ts"] += 1
    return signed


async def _run_split(client_app: web.Application, federation_app: web.Application, substring: str
                     ) -> dict[str, str]:
    """Like _run_against, with the server-server API on a second listener (--federation-base-url)."""
    runners, ports = [], []
    for app in (client_app, federation_app):
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        ports.append(site._server.sockets[0].getsockname()[1])
    lines: list[str] = []
    try:
        async with aiohttp.ClientSession() as session:
            ctx = Context(f"http://127.0.0.1:{ports[0]}", session, "secret",
                          federation_base_url=f"http://127.0.0.1:{ports[1]}")
            await run_cases(select(all_cases(), substring), ctx, lines.append)
    finally:
        for runner in runners:
            await runner.cleanup()
    return {line.split()[1].rstrip(":"): line for line in lines[:-1]}


def _nothing_app() -> web.Application:
    async def plain_404(request: web.Request) -> web.Response:
        return web.Response(status=404, text="nothing here")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", plain_404)
    return app


def _key_server_app(document: dict[str, Any]) -> web.Application:
    async def keys(request: web.Request) -> web.Response:
        return web.json_response(document)

    app = web.Application()
    app.router.add_get("/_matrix/key/v2/server", keys)
    return app


def test_server_key_cases_reach_the_federation_base_url_and_verify_the_self_signature() -> None:
    results = asyncio.run(_run_split(_nothing_app(), _key_server_app(_key_document("fake.example")),
                                     "federation.server_keys"))
    assert sorted(results) == [
        "federation.server_keys_are_ed25519",
        "federation.server_keys_are_signed_by_the_server_itself",
        "federation.server_keys_are_valid_for_a_while_and_old_keys_have_expired",
        "federation.server_keys_match_the_schema",
    ]
    assert all(line.startswith("PASS") for line in results.values()), results


def test_a_tampered_server_key_document_fails_the_signature_case() -> None:
    results = asyncio.run(_run_split(_nothing_app(), _key_server_app(_key_document("fake.example", tamper=True)),
                                     "federation.server_keys_are_signed"))
    line = results["federation.server_keys_are_signed_by_the_server_itself"]
    assert line.startswith("FAIL") and "does not verify" in line, line


def test_a_federation_api_that_accepts_any_request_fails_the_authentication_cases() -> None:
    document = _key_document("fake.example")

    async def anything(request: web.Request) -> web.Response:
        if request.path == "/_matrix/key/v2/server":
            return web.json_response(document)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    results = asyncio.run(_run_split(_nothing_app(), app, "_is_401"))
    federation = {name: line for name, line in results.items() if name.startswith("federation.")}
    assert len(federation) >= 7
    assert all(line.startswith("FAIL") and "-> 200, expected 401" in line for line in federation.values()), federation


@pytest.mark.parametrize(("delegation", "passes"), [("matrix.example.org:443", True), ("[::1]", True),
                                                     ("https://matrix.example.org", False)])
def test_server_delegation_must_name_a_server_with_an_optional_port(delegation: str, passes: bool) -> None:
    async def well_known(request: web.Request) -> web.Response:
        return web.json_response({"m.server": delegation})

    app = web.Application()
    app.router.add_get("/.well-known/matrix/server", well_known)
    results = asyncio.run(_run_against(app, "wellknown.server_delegation"))
    line = results["wellknown.server_delegation_is_valid_or_absent"]
    assert line.startswith("PASS" if passes else "FAIL"), line
