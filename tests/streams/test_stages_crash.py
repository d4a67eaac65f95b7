"""kill -9 during sustained sending: the background stages resume and catch up exactly once.

Counts, the search index and pusher hand-off follow the events stream after commit. After a
crash they must resume from their saved positions: every committed message counted once,
indexed once, and handed to the push gateway (at least once; only a notification that was in
flight at the moment of the kill may arrive twice).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from urllib.parse import quote

import aiohttp
import yaml

from tests.conftest import free_port, make_test_config
from tests.push.helpers import PushGateway, pusher_body
from tests.support.rooms import new_user
from tests.support.crash import send_until_killed, wait_for_versions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def test_stages_resume_after_a_kill_9_without_losing_or_repeating_work(tmp_path, database_config):
    raw = make_test_config(tmp_path, database_config, outbound={"min_retry_interval_s": 0.1,
                                                                "max_retry_interval_s": 0.5})
    raw["listeners"][1]["port"] = free_port()
    config_path = tmp_path / "homeserver.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    base_url = f"http://127.0.0.1:{raw['listeners'][0]['port']}"

    def start() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "homeserver", "run", "--config", str(config_path)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_versions(base_url, proc)
        return proc

    gateway = PushGateway()
    await gateway.start()
    proc = await asyncio.to_thread(start)
    acknowledged: list[str] = []
    try:
        async with aiohttp.ClientSession(base_url) as client:
            alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
            room_id = await alice.create_room(preset="public_chat")
            await bob.join(room_id)
            await bob.call("POST", "/pushers/set", pusher_body(gateway.url))

            sent = await send_until_killed(alice, room_id, proc, at_least=40, txn_prefix="s",
                                           body_prefix="sustained number")
            acknowledged = list(sent.values())

        proc = await asyncio.to_thread(start)
        async with aiohttp.ClientSession(base_url) as client:
            alice.client = bob.client = client
            page = await bob.call("GET", f"/rooms/{quote(room_id)}/messages", dir="b", limit="1000",
                                  filter=json.dumps({"types": ["m.room.message"]}))
            committed = [e["event_id"] for e in reversed(page["chunk"])]
            assert len(committed) == len(set(committed))
            assert set(acknowledged) <= set(committed)

            # Unread counts: every committed message once (Bob never read anything).
            counts = await bob.call("GET", "/sync", filter=json.dumps({"room": {"timeline": {"limit": 1}}}))
            unread = counts["rooms"]["join"][room_id]["unread_notifications"]["notification_count"]
            assert unread == len(committed)

            # Search: every committed message found, none twice.
            found = await bob.call("POST", "/search", {"search_categories": {"room_events": {
                "search_term": "sustained", "filter": {"limit": 1000}}}})
            results = found["search_categories"]["room_events"]
            hits = [r["result"]["event_id"] for r in results["results"]]
            assert results["count"] == len(committed)
            assert sorted(hits) == sorted(committed)

            # Pushes: every committed message reaches the gateway; only one in flight may repeat.
            await gateway.wait_for(len(committed), timeout=30)
            pushed = Counter(n["notification"]["event_id"] for n in gateway.received)
            assert set(pushed) == set(committed)
            assert sum(n - 1 for n in pushed.values()) <= 1
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        await gateway.stop()
