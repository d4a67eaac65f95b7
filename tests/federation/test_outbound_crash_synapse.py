"""kill -9 of our server while its outbound queue holds events for a real Synapse: after the restart
every acknowledged event reaches Synapse, each once.

Synapse (127.0.0.2) is frozen with SIGSTOP while we send, so our transactions to it hang and the
queue fills; our server is killed mid-send, Synapse thawed, our server restarted on the same
database. Synapse's view of the room must then hold every event we acknowledged, none twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from urllib.parse import quote

from homeserver.config import parse_config
from homeserver.server import HomeServer
from tests.federation.helpers import tls_session
from tests.federation.remote_rooms import local_user
from tests.federation.test_outbound_crash import crash_test_config, start_server_process
from tests.federation.test_synapse_resident_interop import synapse_call
from tests.support.crash import send_until_killed


async def synapse_message_ids(synapse, token: str, room_id: str) -> list[str]:
    """Event IDs of the room's m.room.message events as Synapse's /messages returns them, oldest
    first; none while Synapse, busy catching up, takes longer than 15 s to answer."""
    try:
        status, page = await asyncio.wait_for(synapse_call(
            synapse, token, "GET", f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/messages",
            params={"dir": "b", "limit": "1000", "filter": json.dumps({"types": ["m.room.message"]})}), 15)
    except TimeoutError:
        return []
    assert status == 200, page
    return [event["event_id"] for event in reversed(page["chunk"])]


async def test_events_queued_for_synapse_arrive_once_after_a_kill_9(tmp_path, database_config, ca, synapse):
    raw, config_path, port = crash_test_config(tmp_path, database_config, ca)

    # In process: Alice's public room, joined by Bob of Synapse.
    hs = HomeServer(parse_config(raw))
    await hs.start()
    try:
        async with tls_session(hs, ca) as session:
            alice = await local_user(session, "alice")
            room_id = await alice.create_room(preset="public_chat")
            bob = await synapse.register(f"bob{int(time.time() * 1000)}")
            status, body = await synapse_call(synapse, bob["access_token"], "POST",
                                              f"/_matrix/client/v3/join/{quote(room_id, safe='')}", {},
                                              params={"server_name": hs.config.server_name})
            assert status == 200, (body, synapse.log_tail())
            # Synapse joined with partial state (we honour omit_members); its /members answers once
            # it has fetched the full state from us, which it must do before we go away.
            status, members = await asyncio.wait_for(synapse_call(
                synapse, bob["access_token"], "GET", f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/members"),
                120)
            assert status == 200, (members, synapse.log_tail())
    finally:
        await hs.stop()

    def start() -> subprocess.Popen:
        return start_server_process(config_path, port, ca)

    proc = await asyncio.to_thread(start)
    os.kill(synapse.process.pid, signal.SIGSTOP)  # Synapse stops answering: our sends to it hang
    try:
        async with tls_session(hs, ca) as session:
            alice.client = session
            sent = await send_until_killed(alice, room_id, proc, at_least=20, txn_prefix="s",
                                           body_prefix="queued for Synapse")
    finally:
        os.kill(synapse.process.pid, signal.SIGCONT)
    acknowledged = list(sent.values())

    proc = await asyncio.to_thread(start)
    try:
        async with tls_session(hs, ca) as session:
            alice.client = session
            page = await alice.call("GET", f"/rooms/{quote(room_id)}/messages", dir="b", limit="1000",
                                    filter=json.dumps({"types": ["m.room.message"]}))
            committed = [e["event_id"] for e in reversed(page["chunk"])]
        assert set(acknowledged) <= set(committed)
        deadline = time.monotonic() + 240
        while not set(committed) <= set(seen := await synapse_message_ids(synapse, bob["access_token"], room_id)):
            assert time.monotonic() < deadline, (len(set(committed) - set(seen)), synapse.log_tail())
            await asyncio.sleep(0.5)
        assert len(seen) == len(set(seen)), "an event shows twice on Synapse"
        assert seen == committed  # the same history, in the same order
    finally:
        proc.terminate()
        proc.wait(timeout=20)
