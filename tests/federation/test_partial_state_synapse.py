"""Faster joins with a real Synapse: Synapse joins our room with partial state (it asks send_join
with omit_members), then fetches the full state from us; and our server joins a Synapse room with
partial state, and completes it from Synapse's /state."""

from __future__ import annotations

import time
from urllib.parse import quote

import aiohttp

from tests.federation.helpers import user_with_displayname
from tests.federation.resident import client_call, local_room, send_message, timeline_bodies
from tests.support.synapse_federation import FederatingSynapse, until


async def synapse_call(synapse: FederatingSynapse, token: str, method: str, path: str, body=None, params=None):
    connector = aiohttp.TCPConnector(ssl=synapse.ssl_context())
    async with aiohttp.ClientSession(synapse.url, connector=connector) as session:
        async with session.request(method, path, json=body, params=params,
                                   headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status, await resp.json()


def _asked_partial_state(synapse: FederatingSynapse, room_id: str) -> bool:
    """Whether Synapse's log shows a send_join for the room with omit_members=true (sent or served)."""
    segment = f"send_join/{quote(room_id, safe='')}/"
    return any(segment.lower() in line.lower() and "omit_members=true" in line
               for line in synapse.log_tail(2_000_000).splitlines())




async def test_synapse_joins_our_room_with_omitted_members_and_then_lists_every_member(fed_hs, ca, synapse):
    alice, room_id = await local_room(fed_hs, ca, name="Snelle kamer")
    locals_ = []
    for i in range(4):
        user = await user_with_displayname(fed_hs, ca, f"buur{i}", f"Buur {i}")
        status, body = await client_call(fed_hs, ca, user["access_token"], "POST",
                                         f"/_matrix/client/v3/join/{quote(room_id, safe='')}", {})
        assert status == 200, body
        locals_.append(user["user_id"])
    bob = await synapse.register(f"bob{int(time.time() * 1000)}", "Bob on Synapse")
    status, body = await synapse_call(synapse, bob["access_token"], "POST",
                                      f"/_matrix/client/v3/join/{quote(room_id, safe='')}",
                                      {}, params={"server_name": fed_hs.config.server_name})
    assert status == 200, (body, synapse.log_tail())
    assert _asked_partial_state(synapse, room_id)  # Synapse asked us for partial state

    # Synapse's member list (which waits for its full state) comes to list every member.
    expected = {alice["user_id"], *locals_, bob["user_id"]}

    async def synapse_members():
        status, answer = await synapse_call(synapse, bob["access_token"], "GET",
                                            f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/joined_members")
        return status == 200 and set(answer["joined"]) == expected

    await until(synapse_members, "Synapse's member list", synapse, timeout_s=60.0)
    # Messages flow both ways.
    await send_message(fed_hs, ca, alice["access_token"], room_id, "welkom")
    status, sent = await synapse_call(synapse, bob["access_token"], "PUT",
                                      f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/m.room.message/p1",
                                      {"msgtype": "m.text", "body": "dank je"})
    assert status == 200, sent

    async def arrived():
        return (bob["user_id"], "dank je") in await timeline_bodies(fed_hs, ca, alice["access_token"], room_id)

    await until(arrived, "Synapse's message here", synapse, timeout_s=60.0)


async def test_we_join_a_synapse_room_with_partial_state_and_complete_it_from_synapse(fed_hs, ca, synapse):
    owner = await synapse.register(f"eig{int(time.time() * 1000)}", "Eigenaar")
    status, created = await synapse_call(synapse, owner["access_token"], "POST", "/_matrix/client/v3/createRoom",
                                         {"preset": "public_chat", "name": "Grote kamer"})
    assert status == 200, created
    room_id = created["room_id"]
    members = [owner["user_id"]]
    for i in range(5):
        user = await synapse.register(f"lid{i}{int(time.time() * 1000)}")
        status, body = await synapse_call(synapse, user["access_token"], "POST",
                                          f"/_matrix/client/v3/join/{quote(room_id, safe='')}", {})
        assert status == 200, body
        members.append(user["user_id"])
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await client_call(fed_hs, ca, dave["access_token"], "POST",
                                     f"/_matrix/client/v3/join/{quote(room_id, safe='')}", {},
                                     params={"server_name": synapse.server_name})
    assert status == 200, (body, synapse.log_tail())
    assert _asked_partial_state(synapse, room_id)  # we asked Synapse for partial state
    # The member list waits for the full state, fetched from Synapse in the background.
    status, answer = await client_call(fed_hs, ca, dave["access_token"], "GET",
                                       f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/joined_members")
    assert status == 200, answer
    assert set(answer["joined"]) == {*members, dave["user_id"]}
    assert not await fed_hs.federation_transport.partial_state_store.is_partial(room_id)
    # Our message reaches Synapse.
    await send_message(fed_hs, ca, dave["access_token"], room_id, "hoi allemaal")

    async def at_synapse():
        status, page = await synapse_call(synapse, owner["access_token"], "GET",
                                          f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/messages",
                                          params={"dir": "b", "limit": "20"})
        return status == 200 and "hoi allemaal" in [e["content"].get("body") for e in page["chunk"]]

    await until(at_synapse, "our message at Synapse", synapse, timeout_s=60.0)
