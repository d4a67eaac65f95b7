"""kill -9 while a bridged room is busy: after the restart the service gets every event exactly once.

The homeserver runs as a subprocess with the test appservice registered. It is killed mid-send;
after the restart every acknowledged message must reach the service, in order, and no transaction
ID may ever carry different events (the service deduplicates by transaction ID, as the spec asks,
so "exactly once" is what it processed).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from urllib.parse import quote

import aiohttp
import yaml

from tests.appservices.support import AsClient, TransactionRecorder, registration_yaml
from tests.conftest import free_port, make_test_config
from tests.support.rooms import new_user
from tests.support.crash import send_until_killed, wait_for_versions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def test_a_kill_9_neither_loses_nor_repeats_what_the_appservice_receives(tmp_path, database_config):
    recorder = TransactionRecorder()
    await recorder.start()
    raw = make_test_config(tmp_path, database_config, outbound={"min_retry_interval_s": 0.1,
                                                                "max_retry_interval_s": 0.5})
    raw["listeners"][1]["port"] = free_port()
    raw["app_service_config_files"] = [registration_yaml(tmp_path, recorder.url)]
    config_path = tmp_path / "homeserver.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    base_url = f"http://127.0.0.1:{raw['listeners'][0]['port']}"
    ghost = f"@bridge_max:{raw['server_name']}"

    def start() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "homeserver", "run", "--config", str(config_path)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_versions(base_url, proc)
        return proc

    proc = await asyncio.to_thread(start)
    try:
        async with aiohttp.ClientSession(base_url) as client:
            alice = await new_user(client, "alice")
            room_id = await alice.create_room(preset="public_chat")
            bridge = AsClient(client)
            await bridge.register("bridge_max", inhibit_login=True)
            await bridge.call("POST", f"/join/{quote(room_id)}", {}, user_id=ghost)
            sent = await send_until_killed(alice, room_id, proc, at_least=40, txn_prefix="k",
                                           body_prefix="bridged number")
            acknowledged = list(sent.values())

        proc = await asyncio.to_thread(start)
        async with aiohttp.ClientSession(base_url) as client:
            alice.client = client
            page = await alice.call("GET", f"/rooms/{quote(room_id)}/messages", dir="b", limit="1000",
                                    filter=json.dumps({"types": ["m.room.message"]}))
            committed = [e["event_id"] for e in reversed(page["chunk"])]
            assert set(acknowledged) <= set(committed)
            # One more after the restart: once it arrives, everything before it has been handed off.
            last = await alice.send(room_id, "after the restart")
            await recorder.wait_for_event(last, timeout=30)

        messages = [e["event_id"] for e in recorder.events if e["type"] == "m.room.message"]
        assert messages == [*committed, last]
        # A retried transaction ID always carried the same events.
        by_id: dict[str, list[str]] = {}
        for put in recorder.puts:
            events = [e["event_id"] for e in put.body["events"]]
            assert by_id.setdefault(put.txn_id, events) == events
        assert recorder.unauthorised == 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        await recorder.stop()
