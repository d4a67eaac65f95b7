"""synadm (the Synapse admin CLI from PyPI) driven against our server, and the same commands
against a real Synapse: each command works on ours and answers with the same shape as Synapse's.

Synapse starts once for the module (it takes a few seconds); its answers are collected once and
compared with ours on each database engine.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import shutil
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

SYNADM = Path(sys.executable).parent / "synadm"
NOTICES = {"system_mxid_localpart": "notices", "system_mxid_display_name": "Server Notices"}

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(not SYNADM.exists(), reason="synadm is not installed (pip install synadm)")]


# --- a small synchronous client for setting up either server ------------------------------------
def _http(base: str, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _register(base: str, secret: str, username: str, admin: bool) -> dict[str, Any]:
    nonce = _http(base, "GET", "/_synapse/admin/v1/register")["nonce"]
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(f"{nonce}\0{username}\0pw-{username}\0".encode() + (b"admin" if admin else b"notadmin"))
    return _http(base, "POST", "/_synapse/admin/v1/register", {
        "nonce": nonce, "username": username, "password": f"pw-{username}", "admin": admin,
        "mac": mac.hexdigest()})


def _setup(base: str, secret: str) -> dict[str, Any]:
    """An admin, a user in a named room, one upload: what the commands act on."""
    admin = _register(base, secret, "boss", True)
    user = _register(base, secret, "target", False)
    victim = _register(base, secret, "victim", False)
    room_id = _http(base, "POST", "/_matrix/client/v3/createRoom", {"name": "Lounge", "preset": "public_chat"},
                    user["access_token"])["room_id"]
    doomed = _http(base, "POST", "/_matrix/client/v3/createRoom", {"name": "Doomed"},
                   victim["access_token"])["room_id"]
    req = urllib.request.Request(base + "/_matrix/media/v3/upload", data=b"bad bytes", method="POST",
                                 headers={"Authorization": f"Bearer {user['access_token']}",
                                          "Content-Type": "text/plain"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        mxc = json.loads(resp.read())["content_uri"]
    server_name = admin["user_id"].split(":", 1)[1]
    return {"admin": admin, "user": user["user_id"], "victim": victim["user_id"], "room": room_id,
            "doomed": doomed, "mxc": mxc, "server_name": server_name}


def _commands(ctx: dict[str, Any]) -> list[tuple[str, list[str]]]:
    server, media_id = ctx["mxc"].removeprefix("mxc://").split("/", 1)
    return [
        ("version", ["version"]),
        ("user list", ["user", "list"]),
        ("user details", ["user", "details", ctx["user"]]),
        ("user modify", ["user", "modify", ctx["user"], "--display-name", "Renamed"]),
        ("user whois", ["user", "whois", ctx["user"]]),
        ("room list", ["room", "list"]),
        ("room details", ["room", "details", ctx["room"]]),
        ("media quarantine", ["media", "quarantine", "--server-name", server, "--media-id", media_id]),
        ("notice send", ["notice", "send", ctx["user"], "Maintenance tonight"]),
        ("user deactivate", ["user", "deactivate", ctx["victim"]]),
        ("room delete", ["room", "delete", ctx["doomed"]]),
    ]


def _synadm_config(directory: Path, base: str, ctx: dict[str, Any]) -> Path:
    path = directory / "synadm.yaml"
    path.write_text(yaml.safe_dump({
        "user": ctx["admin"]["user_id"], "token": ctx["admin"]["access_token"], "base_url": base,
        "admin_path": "/_synapse/admin", "matrix_path": "/_matrix", "timeout": 30, "format": "json",
        "server_discovery": "well-known", "homeserver": ctx["server_name"], "ssl_verify": False,
        "protocol": "http",
    }))
    return path


def _env(directory: Path) -> dict[str, str]:
    # synadm keeps a log file under $HOME; give it a private one.
    return {**os.environ, "HOME": str(directory), "XDG_STATE_HOME": str(directory)}


def _parse(output: str) -> Any:
    """synadm's JSON output (the delete command prints room details and members first: take the last)."""
    decoder = json.JSONDecoder()
    values, index, text = [], 0, output.strip()
    while index < len(text):
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            index += 1  # a line of prose between JSON values
            continue
        values.append(value)
        index = end
    assert values, f"synadm printed no JSON: {output!r}"
    return values[-1]


ID_KEYED = {"devices"}


def shape(value: Any, key_is_id: bool = False) -> Any:
    """The structure of a JSON value: object keys (recursively) and list element shapes, no scalars."""
    if isinstance(value, dict):
        if key_is_id:
            # A map keyed by IDs (whois devices): the shape of its entries, whatever the IDs.
            return {"*": shape(next(iter(value.values())))} if value else {}
        return {key: shape(item, key_is_id=key in ID_KEYED) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value and isinstance(value[0], (dict, list)) else []
    return None


def run_synadm_sync(config: Path, directory: Path, argv: list[str]) -> Any:
    import subprocess

    done = subprocess.run([str(SYNADM), "-c", str(config), "--batch", "-o", "json", *argv], capture_output=True,
                          text=True, env=_env(directory), timeout=120)
    assert done.returncode == 0, f"synadm {' '.join(argv)} failed: {done.stdout} {done.stderr}"
    return _parse(done.stdout)


@pytest.fixture(scope="module")
def synapse_answers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every command's answer from a real Synapse, started once for the module."""
    from scripts.synapse.run_synapse import start_synapse

    server = start_synapse(extra_config={"server_notices": NOTICES})
    try:
        directory = tmp_path_factory.mktemp("synadm-synapse")
        ctx = _setup(server.url, server.registration_shared_secret)
        config = _synadm_config(directory, server.url, ctx)
        yield {name: run_synadm_sync(config, directory, argv) for name, argv in _commands(ctx)}
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


async def test_synadm_commands_work_on_our_server_with_synapses_shapes(make_homeserver, tmp_path, synapse_answers):
    from tests.conftest import SHARED_SECRET

    hs = await make_homeserver(server_notices=NOTICES)
    base = hs.base_url("client")
    ctx = await asyncio.to_thread(_setup, base, SHARED_SECRET)
    await hs.auth.flush_last_seen()  # whois shows connections once the batched sightings are written
    config = _synadm_config(tmp_path, base, ctx)
    for name, argv in _commands(ctx):
        ours = await asyncio.to_thread(run_synadm_sync, config, tmp_path, argv)
        theirs = synapse_answers[name]
        assert shape(ours) == shape(theirs), f"{name}: ours {json.dumps(ours)} vs Synapse {json.dumps(theirs)}"
    # And the commands did what they say.
    details = await asyncio.to_thread(_http, base, "GET", f"/_synapse/admin/v2/users/{ctx['user']}", None,
                                      ctx["admin"]["access_token"])
    assert details["displayname"] == "Renamed"
    victim = await asyncio.to_thread(_http, base, "GET", f"/_synapse/admin/v2/users/{ctx['victim']}", None,
                                     ctx["admin"]["access_token"])
    assert victim["deactivated"] is True
    media_id = ctx["mxc"].rsplit("/", 1)[1]
    info = await asyncio.to_thread(_http, base, "GET", f"/_synapse/admin/v1/media/{ctx['server_name']}/{media_id}",
                                   None, ctx["admin"]["access_token"])
    assert info["media_info"]["quarantined_by"] == ctx["admin"]["user_id"]
