"""A whole homeserver on loopback, on SQLite and PostgreSQL: discovery, errors, metrics, lifecycle."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import aiohttp
import pytest

from homeserver.config import parse_config
from homeserver.server import HomeServer
from storage.migrations import SchemaTooNewError
from tests.conftest import free_port, make_test_config
from tests.support.rooms import new_user


async def test_versions_lists_v1_1_and_current_versions(client):
    async with client.get("/_matrix/client/versions") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert "v1.1" in body["versions"]
    assert isinstance(body.get("unstable_features", {}), dict)
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_versions_advertises_the_unstable_features_clients_gate_on(client):
    async with client.get("/_matrix/client/versions") as resp:
        features = (await resp.json())["unstable_features"]
    for flag in ("org.matrix.e2e_cross_signing", "org.matrix.msc2432", "org.matrix.msc2285.stable",
                 "org.matrix.msc3827.stable", "org.matrix.msc3440.stable", "org.matrix.msc3771",
                 "uk.tcpip.msc4133.stable"):
        assert features.get(flag) is True, flag


async def test_versions_go_up_to_v1_15_and_not_beyond_what_is_served(client):
    async with client.get("/_matrix/client/versions") as resp:
        versions = (await resp.json())["versions"]
    assert versions[-4:] == ["v1.12", "v1.13", "v1.14", "v1.15"]
    assert "v1.16" not in versions  # /sync's use_state_after (v1.16) is not served yet


async def test_room_aliases_are_served_at_the_msc2432_unstable_path(client):
    from tests.support.rooms import new_user
    alice = await new_user(client, "aliasowner")
    room_id = await alice.create_room(room_alias_name="listed")
    stable = await alice.call("GET", f"/rooms/{room_id}/aliases")
    unstable = await alice.call("GET", f"/_matrix/client/unstable/org.matrix.msc2432/rooms/{room_id}/aliases")
    assert unstable == stable
    assert any(alias.startswith("#listed:") for alias in unstable["aliases"])


async def test_wellknown_client_points_at_the_public_base_url(hs, client):
    async with client.get("/.well-known/matrix/client") as resp:
        assert resp.status == 200
        assert await resp.json() == {"m.homeserver": {"base_url": hs.config.public_baseurl}}


async def test_wellknown_server_is_not_published_unless_configured(client):
    async with client.get("/.well-known/matrix/server") as resp:
        assert resp.status == 404
        assert (await resp.json())["errcode"] == "M_NOT_FOUND"


async def test_wellknown_server_delegates_when_configured(make_homeserver):
    server = await make_homeserver(serve_server_wellknown=True, public_baseurl="https://matrix.example.org/")
    async with aiohttp.ClientSession(server.base_url()) as session:
        async with session.get("/.well-known/matrix/server") as resp:
            assert await resp.json() == {"m.server": "matrix.example.org:443"}


async def test_wellknown_support_is_404_unless_configured(client):
    async with client.get("/.well-known/matrix/support") as resp:
        assert resp.status == 404


async def test_wellknown_support_publishes_the_configured_contacts_and_page(make_homeserver):
    contacts = [{"matrix_id": "@admin:example.org", "email_address": "admin@example.org", "role": "m.role.admin"},
                {"email_address": "security@example.org", "role": "m.role.security"}]
    server = await make_homeserver(support={"contacts": contacts, "support_page": "https://example.org/help"})
    async with aiohttp.ClientSession(server.base_url()) as session:
        async with session.get("/.well-known/matrix/support") as resp:
            assert resp.status == 200
            assert await resp.json() == {"contacts": contacts, "support_page": "https://example.org/help"}


def test_a_support_contact_without_a_way_to_reach_it_is_a_config_error(tmp_path):
    raw = make_test_config(tmp_path, {"engine": "sqlite", "path": str(tmp_path / "x.db")},
                           support={"contacts": [{"role": "m.role.admin"}]})
    with pytest.raises(Exception, match="support"):
        parse_config(raw)


async def test_health_answers_ok(client):
    async with client.get("/health") as resp:
        assert resp.status == 200
        assert await resp.text() == "OK"


@pytest.mark.parametrize(
    "path",
    [
        "/_matrix/client/v3/not_a_thing",
        "/_matrix/federation/v1/not_a_thing",
        "/_matrix/media/v3/not_a_thing",
        "/_matrix/key/v2/not_a_thing",
        "/totally/elsewhere",
    ],
)
async def test_unknown_paths_are_404_m_unrecognized_even_without_a_token(client, path):
    async with client.get(path) as resp:
        assert resp.status == 404
        assert (await resp.json())["errcode"] == "M_UNRECOGNIZED"
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_a_wrong_method_on_a_known_path_is_405(client):
    async with client.post("/_matrix/client/versions", json={}) as resp:
        assert resp.status == 405
        assert (await resp.json())["errcode"] == "M_UNRECOGNIZED"


async def test_cors_preflight_on_a_client_path(client):
    async with client.options("/_matrix/client/v3/login", headers={"Origin": "https://app.element.io"}) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_metrics_listener_serves_request_counts_and_process_metrics(hs, client):
    async with client.get("/_matrix/client/versions") as resp:
        assert resp.status == 200
    async with aiohttp.ClientSession(hs.base_url("metrics")) as metrics:
        async with metrics.get("/metrics") as resp:
            text = await resp.text()
    assert 'http_requests_total{method="GET",route="/_matrix/client/versions",status="200"} 1.0' in text
    assert "process_resident_memory_bytes" in text
    assert "http_request_duration_seconds_bucket" in text


async def test_the_client_listener_does_not_serve_metrics(client):
    async with client.get("/metrics") as resp:
        assert resp.status == 404


async def test_a_restart_reuses_the_migrated_database(tmp_path, database_config):
    raw = make_test_config(tmp_path, database_config)
    first = HomeServer(parse_config(raw))
    await first.start()
    try:
        async with aiohttp.ClientSession(first.base_url("client")) as session:
            alice = await new_user(session, "alice")
            room_id = await alice.create_room(name="blijft")
            event_id = await alice.send(room_id, "na de herstart nog hier")
        migrations = await first.db.fetch_all("schema_rows", "SELECT version FROM schema_version ORDER BY version")
    finally:
        await first.stop()
    second = HomeServer(parse_config(raw))
    await second.start()
    try:
        # Nothing is migrated twice, and the account, its token and the room's history are all there.
        assert await second.db.fetch_all("schema_rows", "SELECT version FROM schema_version ORDER BY version") \
            == migrations
        async with aiohttp.ClientSession(second.base_url("client")) as session:
            alice.client = session
            page = await alice.call("GET", f"/rooms/{room_id}/messages", dir="b", limit="5")
            assert event_id in [event["event_id"] for event in page["chunk"]]
            assert (await alice.call("GET", f"/rooms/{room_id}/state/m.room.name"))["name"] == "blijft"
    finally:
        await second.stop()


async def test_a_database_from_a_newer_release_refuses_to_start(tmp_path, database_config):
    raw = make_test_config(tmp_path, database_config)
    server = HomeServer(parse_config(raw))
    await server.start()
    await server.db.execute("bump_version", "UPDATE schema_version SET version = version + 1000")
    await server.stop()
    with pytest.raises(SchemaTooNewError):
        await HomeServer(parse_config(raw)).start()


def test_the_cli_serves_versions_soon_after_a_cold_start(tmp_path):
    port, metrics_port = free_port(), free_port()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run(
        [sys.executable, "-m", "homeserver", "generate-config", "--server-name", "localhost:8008",
         "--data-dir", str(tmp_path), "--set", f"listeners.0.port={port}",
         "--set", f"listeners.1={{host: 127.0.0.1, port: {metrics_port}, resources: [metrics]}}"],
        check=True, cwd=root, capture_output=True,
    )
    proc = subprocess.Popen([sys.executable, "-m", "homeserver", "run", "--config", str(tmp_path / "homeserver.yaml")],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_matrix/client/versions", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "no answer within 30 s"
                time.sleep(0.1)
        assert (tmp_path / "signing.key").exists()
        assert (tmp_path / "homeserver.db").exists()
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


def test_a_generated_config_serves_no_metrics_unless_asked(tmp_path):
    from homeserver.config import generate_config_dict
    raw = generate_config_dict("example.org", str(tmp_path))
    assert [listener["resources"] for listener in raw["listeners"]] == [["client", "federation", "admin"]]


def test_a_taken_port_stops_the_cli_with_one_line_naming_the_listener(tmp_path):
    import socket
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        subprocess.run(
            [sys.executable, "-m", "homeserver", "generate-config", "--server-name", "localhost",
             "--data-dir", str(tmp_path), "--set", f"listeners.0.port={port}"],
            check=True, cwd=root, capture_output=True,
        )
        done = subprocess.run([sys.executable, "-m", "homeserver", "run", "--config", str(tmp_path / "homeserver.yaml")],
                              cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot listen on 127.0.0.1:{port} (the client, federation, admin listener)")
