"""Concurrency and restart safety of sending: nothing acknowledged is lost, nothing is stored twice."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import aiohttp
import yaml

from tests.conftest import free_port, make_test_config
from tests.support.rooms import User, new_user
from tests.support.crash import send_until_killed, wait_for_versions


async def test_fifty_concurrent_senders_each_land_once_in_one_linear_order(hs, client):
    owner = await new_user(client, "owner")
    room_id = await owner.create_room(preset="public_chat")
    users = await asyncio.gather(*(new_user(client, f"sender{i}") for i in range(50)))
    await asyncio.gather(*(u.join(room_id) for u in users))

    async def send_twice(user: User, i: int) -> list[str]:
        # The retry of the same transaction must come back with the same event.
        path = f"/rooms/{room_id}/send/m.room.message/txn-{i}"
        first, second = await asyncio.gather(
            user.call("PUT", path, {"msgtype": "m.text", "body": f"message {i}"}),
            user.call("PUT", path, {"msgtype": "m.text", "body": f"message {i}"}),
        )
        return [first["event_id"], second["event_id"]]

    results = await asyncio.gather(*(send_twice(u, i) for i, u in enumerate(users)))
    assert all(a == b for a, b in results)
    sent_ids = {a for a, _ in results}
    assert len(sent_ids) == 50

    events = await hs.event_store.get_events(sent_ids)
    assert set(events) == sent_ids
    # Each event builds on exactly one predecessor: the room's history is one line.
    extremities = await hs.event_store.get_forward_extremities(room_id)
    assert len(extremities) == 1
    orderings = sorted(e.internal_metadata["stream_ordering"] for e in events.values())
    assert len(set(orderings)) == 50
    for event in events.values():
        assert len(event.prev_event_ids) == 1


async def test_events_acknowledged_before_a_kill_9_survive_the_restart(tmp_path, database_config):
    raw = make_test_config(tmp_path, database_config)
    raw["listeners"][1]["port"] = free_port()
    port = raw["listeners"][0]["port"]
    config_path = tmp_path / "homeserver.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    base_url = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "homeserver", "run", "--config", str(config_path)],
                                cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_versions(base_url, proc)
        return proc

    proc = await asyncio.to_thread(start)
    acknowledged: dict[str, str] = {}
    try:
        async with aiohttp.ClientSession(base_url) as client:
            alice = await new_user(client, "alice")
            room_id = await alice.create_room()
            acknowledged = await send_until_killed(alice, room_id, proc, at_least=20, txn_prefix="k",
                                                   body_prefix="#")

        proc = await asyncio.to_thread(start)
        async with aiohttp.ClientSession(base_url) as client:
            alice.client = client
            for txn_id, event_id in acknowledged.items():
                event = await alice.call("GET", f"/rooms/{room_id}/event/{event_id}")
                assert event["event_id"] == event_id
                # Retrying an acknowledged transaction returns the original event, not a new one.
                again = await alice.call("PUT", f"/rooms/{room_id}/send/m.room.message/{txn_id}",
                                         {"msgtype": "m.text", "body": "retry"})
                assert again["event_id"] == event_id
    finally:
        proc.terminate()
        proc.wait(timeout=20)
