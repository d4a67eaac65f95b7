"""kill -9 while the outbound queue holds events for a remote server that is down: after the
restart every committed event reaches it exactly once (re-sends keep their transaction ID)."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import yaml

from homeserver.config import parse_config
from homeserver.server import HomeServer
from tests.conftest import free_port, make_test_config
from tests.federation.helpers import federation_overrides, tls_session
from tests.federation.remote_rooms import TransactionInbox, join_remote_user, local_user
from tests.support.crash import send_until_killed

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def wait_for_tls_versions(base_url: str, ca_path: str, proc: subprocess.Popen, deadline_s: float = 30) -> None:
    context = ssl.create_default_context(cafile=ca_path)
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            urllib.request.urlopen(base_url + "/_matrix/client/versions", timeout=1, context=context).read()
            return
        except OSError:
            assert proc.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)


def crash_test_config(tmp_path, database_config, ca, **overrides) -> tuple[dict, Path, int]:
    """A federating config with quick retries, written where a subprocess can read it:
    (raw config, its path, the listener's port)."""
    port = free_port()
    raw = make_test_config(tmp_path, database_config, **federation_overrides(ca, port, min_retry_interval_ms=100),
                           outbound={"min_retry_interval_s": 0.1, "max_retry_interval_s": 0.5}, **overrides)
    config_path = tmp_path / "homeserver.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    return raw, config_path, port


def start_server_process(config_path: Path, port: int, ca) -> subprocess.Popen:
    """`homeserver run` on the config, once it answers over TLS."""
    proc = subprocess.Popen([sys.executable, "-m", "homeserver", "run", "--config", str(config_path)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_tls_versions(f"https://127.0.0.1:{port}", ca.ca_path, proc)
    return proc


async def test_events_queued_for_a_down_remote_arrive_exactly_once_after_a_kill_9(tmp_path, database_config, ca,
                                                                                  make_remote):
    inboxes: list[TransactionInbox] = []
    remote = await make_remote(routes=lambda r: inboxes.append(TransactionInbox(r)))
    [inbox] = inboxes
    # (the remote's join would bring it our members' presence: only PDUs are counted here)
    raw, config_path, port = crash_test_config(tmp_path, database_config, ca, presence={"enabled": False})

    # Set up in-process: Alice's room with Bob of the remote joined (his join persisted as ours would be).
    hs = HomeServer(parse_config(raw))
    await hs.start()
    try:
        async with tls_session(hs, ca) as session:
            alice = await local_user(session, "alice")
            room_id = await alice.create_room(preset="public_chat")
            await join_remote_user(hs, remote, room_id)
    finally:
        await hs.stop()

    def start() -> subprocess.Popen:
        return start_server_process(config_path, port, ca)

    inbox.fail_with = 503  # the remote is down while we send and crash
    proc = await asyncio.to_thread(start)
    try:
        async with tls_session(hs, ca) as session:
            alice.client = session
            sent = await send_until_killed(alice, room_id, proc, at_least=20, txn_prefix="f",
                                           body_prefix="queued for the remote")
        acknowledged = list(sent.values())
        assert inbox.attempts, "the queue tried the remote before the crash"
        assert not inbox.accepted

        inbox.fail_with = None  # the remote is back
        proc = await asyncio.to_thread(start)
        async with tls_session(hs, ca) as session:
            alice.client = session
            page = await alice.call("GET", f"/rooms/{quote(room_id)}/messages", dir="b", limit="1000",
                                    filter=json.dumps({"types": ["m.room.message"]}))
            committed = [e["event_id"] for e in reversed(page["chunk"])]
            assert set(acknowledged) <= set(committed)
            await inbox.wait_for(lambda: set(committed) <= set(inbox.pdu_ids), timeout=30)
            await asyncio.sleep(1.0)  # anything more would be a duplicate
        assert inbox.pdu_ids == committed  # each once, in order
        assert not inbox.resent_changed
    finally:
        proc.terminate()
        proc.wait(timeout=20)
