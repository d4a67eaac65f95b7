"""Interop: a real Synapse (TLS on loopback, certificates verified both ways) accepts the
transactions our outbound queue sends it: X-Matrix signature, transaction and PDU format.

Until joins over federation exist, Synapse's user is put into our room locally (a membership
event persisted through our persist path), so Synapse does not know the room: it acknowledges
the transactions and ignores their PDUs. What this proves is that nothing in our transactions
makes Synapse refuse them."""

from __future__ import annotations

import asyncio
import time

from homeserver.clock import Clock
from homeserver.rooms.sender import RoomEventSender
from storage.stores.federation_outbound import FEDERATION_KIND
from tests.federation.helpers import tls_session
from tests.federation.remote_rooms import local_user


async def test_synapse_accepts_the_transactions_our_queue_sends_it(fed_hs, ca, synapse):
    async with tls_session(fed_hs, ca) as session:
        alice = await local_user(session, "alice")
        room_id = await alice.create_room(preset="public_chat")
        carol = f"@carol:{synapse.server_name}"
        outsider = RoomEventSender(synapse.server_name, fed_hs.signing_key, fed_hs.event_store, fed_hs.room_heads,
                                   fed_hs.persister, Clock())
        await outsider.send(room_id, carol, "m.room.member", {"membership": "join"}, state_key=carol)
        for i in range(3):
            await alice.send(room_id, f"hello Synapse {i}")
    store = fed_hs.outbound._store
    deadline = time.monotonic() + 60
    while True:
        states = {s.destination: s for s in await store.destinations(FEDERATION_KIND)}
        state = states.get(synapse.server_name)
        if state is not None and state.queued == 0 and state.last_success_ts:
            break
        assert time.monotonic() < deadline, f"not delivered: {state}\n{synapse.log_tail()}"
        await asyncio.sleep(0.2)
    assert state.failures == 0 and state.last_error is None
    log = synapse.log_tail(2_000_000)
    assert f"from {fed_hs.config.server_name}" in log and "Received txn" in log, log[-4000:]
