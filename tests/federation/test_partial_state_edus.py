"""While a room joined with partial state (faster joins) waits for its full state, its member list
names only some of the room's servers: our users' EDUs (typing, receipts, presence, device lists)
then also go to the servers the join answer listed in `servers_in_room`, as our events do; and our
user's join tells those servers about the user's devices. Servers that only the full member list
names are told once it arrives."""

from __future__ import annotations

import asyncio

from tests.federation.helpers import user_with_displayname
from tests.federation.remote_rooms import TransactionInbox
from tests.federation.resident import q, send_message
from tests.federation.test_device_federation import upload_keys
from tests.federation.test_device_lists_on_join import Bed, KeysSetup, device_updates
from tests.federation.test_partial_state_joins import join_remote, partial_resident, wait_until


async def test_edus_reach_the_servers_in_room_that_partial_state_does_not_show(fed_hs, ca, make_remote):
    inboxes: list[TransactionInbox] = []
    other = await make_remote("127.0.0.3", routes=lambda r: inboxes.append(TransactionInbox(r)))
    [inbox] = inboxes
    room = await partial_resident(make_remote, members=3)
    room.state_gate = asyncio.Event()  # the full state never comes during the test

    def with_other_server(answer):
        if answer.get("members_omitted"):
            answer["servers_in_room"] = [*answer["servers_in_room"], other.server_name]
        return answer

    room.tamper_answer = with_other_server
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    token, dave_id = dave["access_token"], dave["user_id"]
    await upload_keys(KeysSetup(Bed(fed_hs, ca)), token, dave_id, dave["device_id"])
    await join_remote(fed_hs, ca, token, room)
    assert await fed_hs.federation_transport.partial_state_store.is_partial(room.room_id)

    # The join told the other server about Dave's devices, after the join itself.
    await inbox.wait_for(lambda: device_updates(inbox, dave_id))
    assert [u["prev_id"] for u in device_updates(inbox, dave_id)] == [[]]
    assert any(p.get("state_key") == dave_id for p in inbox.pdus)

    # Typing and a public receipt reach it too, though no member of it is in our state.
    bed = Bed(fed_hs, ca)
    await bed.client(token, "PUT", f"/rooms/{q(room.room_id)}/typing/{q(dave_id)}", {"typing": True, "timeout": 30000})
    sent = await send_message(fed_hs, ca, token, room.room_id, "hello")
    await bed.client(token, "POST", f"/rooms/{q(room.room_id)}/receipt/m.read/{q(sent)}", {})
    # A device added while partial goes there as well (the list's chain continues).
    status_before = len(device_updates(inbox, dave_id))
    await bed.client(token, "PUT", f"/devices/{q(dave['device_id'])}", {"display_name": "Dave's phone"})

    def edu_types() -> set[str]:
        return {e["edu_type"] for e in inbox.edus}

    await wait_until(lambda: {"m.typing", "m.receipt"} <= edu_types()
                     and len(device_updates(inbox, dave_id)) > status_before, "typing, receipt and device update")
    renamed = device_updates(inbox, dave_id)[-1]
    assert renamed["device_display_name"] == "Dave's phone" and renamed["prev_id"] != []
    typing = [e["content"] for e in inbox.edus if e["edu_type"] == "m.typing"]
    assert {"room_id": room.room_id, "user_id": dave_id, "typing": True} in typing


async def test_servers_the_full_state_adds_are_told_our_users_devices_when_it_arrives(fed_hs, ca, make_remote):
    inboxes: list[TransactionInbox] = []
    other = await make_remote("127.0.0.3", routes=lambda r: inboxes.append(TransactionInbox(r)))
    [inbox] = inboxes
    room = await partial_resident(make_remote, members=3)
    # A member of a third server, whom the join answer (members omitted) does not show.
    carol = f"@carol:{other.server_name}"
    room.send("m.room.member", {"membership": "join"}, state_key=carol, sender=carol, origin=other)
    room.state_gate = asyncio.Event()
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    token, dave_id = dave["access_token"], dave["user_id"]
    await upload_keys(KeysSetup(Bed(fed_hs, ca)), token, dave_id, dave["device_id"])
    await join_remote(fed_hs, ca, token, room)
    partial_states = fed_hs.federation_transport.partial_state_store
    assert await partial_states.is_partial(room.room_id)
    assert not device_updates(inbox, dave_id)

    async def complete() -> bool:
        return not await partial_states.is_partial(room.room_id)

    room.state_gate.set()
    await wait_until(complete, "the full state")
    await inbox.wait_for(lambda: device_updates(inbox, dave_id))
    [update] = device_updates(inbox, dave_id)
    assert update["device_id"] == dave["device_id"] and update["prev_id"] == [] and "keys" in update
