"""Interop with a real Synapse, our server resident: a Synapse user joins our room by its ID (Synapse
runs make_join/send_join against us), and their messages reach our user through Synapse's /send.

Our server is 127.0.0.1:PORT, Synapse 127.0.0.2:PORT; both trust only the throwaway test CA.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import aiohttp

from tests.federation.resident import client_call, current_state, local_room, send_message, timeline_bodies
from tests.support.synapse_federation import FederatingSynapse, until


async def synapse_call(synapse: FederatingSynapse, token: str, method: str, path: str, body=None, params=None):
    connector = aiohttp.TCPConnector(ssl=synapse.ssl_context())
    async with aiohttp.ClientSession(synapse.url, connector=connector) as session:
        async with session.request(method, path, json=body, params=params,
                                   headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status, await resp.json()


async def test_a_synapse_user_joins_our_room_by_id_and_their_messages_reach_us(fed_hs, ca, synapse):
    alice, room_id = await local_room(fed_hs, ca, name="Huiskamer")
    bob = await synapse.register(f"bob{int(time.time() * 1000)}", "Bob on Synapse")
    ours = fed_hs.config.server_name
    status, body = await synapse_call(synapse, bob["access_token"], "POST",
                                      f"/_matrix/client/v3/join/{quote(room_id, safe='')}",
                                      {}, params={"server_name": ours})
    assert status == 200, (body, synapse.log_tail())
    state = await current_state(fed_hs, ca, alice["access_token"], room_id)
    assert state[("m.room.member", bob["user_id"])]["content"]["membership"] == "join"
    # Synapse sees the room as we do.
    status, synapse_state = await synapse_call(synapse, bob["access_token"], "GET",
                                               f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state")
    assert status == 200, synapse_state
    assert {e["content"].get("name") for e in synapse_state if e["type"] == "m.room.name"} == {"Huiskamer"}

    status, sent = await synapse_call(synapse, bob["access_token"], "PUT",
                                      f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/m.room.message/t1",
                                      {"msgtype": "m.text", "body": "hallo from Synapse"})
    assert status == 200, sent
    deadline = time.monotonic() + 30
    while (bob["user_id"], "hallo from Synapse") not in await timeline_bodies(fed_hs, ca, alice["access_token"],
                                                                             room_id):
        assert time.monotonic() < deadline, synapse.log_tail()
        await asyncio.sleep(0.2)
    # Our next event builds on Synapse's.
    local = await fed_hs.event_store.get_event(await send_message(fed_hs, ca, alice["access_token"], room_id, "hoi"))
    assert local.prev_event_ids == [sent["event_id"]]
    # Bob redacts his message on Synapse: the redaction arrives through /send and applies here.
    status, redacted = await synapse_call(
        synapse, bob["access_token"], "PUT",
        f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/redact/{quote(sent['event_id'], safe='')}/r1",
        {"reason": "oops"})
    assert status == 200, redacted
    deadline = time.monotonic() + 30
    while (bob["user_id"], "hallo from Synapse") in await timeline_bodies(fed_hs, ca, alice["access_token"], room_id):
        assert time.monotonic() < deadline, synapse.log_tail()
        await asyncio.sleep(0.2)


async def wait_for_membership(fed_hs, room_id: str, user_id: str, membership: str, synapse) -> None:
    deadline = time.monotonic() + 30
    while (await fed_hs.event_store.get_membership(room_id, user_id))[0] != membership:
        assert time.monotonic() < deadline, synapse.log_tail()
        await asyncio.sleep(0.2)


async def test_a_synapse_user_knocks_on_our_room(fed_hs, ca, synapse):
    alice, room_id = await local_room(
        fed_hs, ca, preset="private_chat", name="Knock knock",
        initial_state=[{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}])
    bob = await synapse.register(f"bob{int(time.time() * 1000)}")
    room = quote(room_id, safe="")
    status, body = await synapse_call(synapse, bob["access_token"], "POST", f"/_matrix/client/v3/knock/{room}",
                                      {"reason": "let me in"}, params={"server_name": fed_hs.config.server_name})
    assert status == 200, (body, synapse.log_tail())
    await wait_for_membership(fed_hs, room_id, bob["user_id"], "knock", synapse)
    # (Synapse withdraws a knock locally only, without telling the room, so no leave is tested here.)


async def test_a_joined_synapse_user_leaves_through_the_room(fed_hs, ca, synapse):
    alice, room_id = await local_room(fed_hs, ca)
    bob = await synapse.register(f"bob{int(time.time() * 1000)}")
    room = quote(room_id, safe="")
    status, body = await synapse_call(synapse, bob["access_token"], "POST", f"/_matrix/client/v3/join/{room}", {},
                                      params={"server_name": fed_hs.config.server_name})
    assert status == 200, (body, synapse.log_tail())
    status, body = await synapse_call(synapse, bob["access_token"], "POST", f"/_matrix/client/v3/rooms/{room}/leave",
                                      {})
    assert status == 200, (body, synapse.log_tail())
    await wait_for_membership(fed_hs, room_id, bob["user_id"], "leave", synapse)


async def test_synapse_invites_our_user_and_the_invite_shows_in_their_sync(fed_hs, ca, synapse):
    from tests.federation.helpers import user_with_displayname

    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    bob = await synapse.register(f"bob{int(time.time() * 1000)}")
    status, created = await synapse_call(synapse, bob["access_token"], "POST", "/_matrix/client/v3/createRoom",
                                         {"name": "Synapse side", "invite": [dave["user_id"]]})
    assert status == 200, (created, synapse.log_tail())
    status, synced = await client_call(fed_hs, ca, dave["access_token"], "GET", "/_matrix/client/v3/sync")
    assert status == 200, synced
    invite = synced["rooms"]["invite"][created["room_id"]]["invite_state"]["events"]
    assert {"Synapse side"} == {e["content"]["name"] for e in invite if e["type"] == "m.room.name"}
    [member] = [e for e in invite if e["type"] == "m.room.member" and e["state_key"] == dave["user_id"]]
    assert member["content"]["membership"] == "invite" and member["sender"] == bob["user_id"]




async def test_both_ways_by_alias_messages_kick_ban_and_the_same_state_on_both_sides(fed_hs, ca, synapse):
    """The interop round trip: Synapse's user joins our room by alias; messages go both ways (ours to
    Synapse through the outbound transaction queue); both servers hold the same state; a kick and a
    ban by our user take effect on Synapse."""
    stamp = int(time.time() * 1000)
    alice, room_id = await local_room(fed_hs, ca, name="Beide kanten", room_alias_name=f"beide{stamp}")
    ours = fed_hs.config.server_name
    bob = await synapse.register(f"bob{stamp}", "Bob on Synapse")
    token = bob["access_token"]
    room = quote(room_id, safe="")
    status, body = await synapse_call(synapse, token, "POST",
                                      f"/_matrix/client/v3/join/{quote(f'#beide{stamp}:{ours}', safe='')}", {})
    assert status == 200 and body["room_id"] == room_id, (body, synapse.log_tail())

    async def synapse_bodies():
        status, page = await synapse_call(synapse, token, "GET", f"/_matrix/client/v3/rooms/{room}/messages",
                                          params={"dir": "b", "limit": "50"})
        return [e["content"].get("body") for e in page.get("chunk", []) if e["type"] == "m.room.message"] \
            if status == 200 else []

    await send_message(fed_hs, ca, alice["access_token"], room_id, "hallo Bob")
    await until(lambda: _contains(synapse_bodies, "hallo Bob"), "our message never reached Synapse", synapse)
    status, sent = await synapse_call(synapse, token, "PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/b1",
                                      {"msgtype": "m.text", "body": "hoi Alice"})
    assert status == 200, sent

    async def alice_sees_bob():
        return (bob["user_id"], "hoi Alice") in await timeline_bodies(fed_hs, ca, alice["access_token"], room_id)
    await until(alice_sees_bob, "Synapse's message never reached us", synapse)

    async def same_state():
        ours_state = await current_state(fed_hs, ca, alice["access_token"], room_id)
        status, theirs = await synapse_call(synapse, token, "GET", f"/_matrix/client/v3/rooms/{room}/state")
        theirs_state = {(e["type"], e["state_key"]): e["event_id"] for e in theirs} if status == 200 else {}
        return {k: e["event_id"] for k, e in ours_state.items()} == theirs_state
    await until(same_state, "the two servers disagree on the room's state", synapse)

    async def bob_out_on_synapse():
        # Bob's own view: the room in an incremental /sync's leave section once he is out (Synapse
        # answers a repeated identical /sync from a cache, so each poll moves the token on).
        status, sync = await synapse_call(synapse, token, "GET", "/_matrix/client/v3/sync",
                                          params={"timeout": "0", "since": since[0]})
        if status != 200:
            return False
        since[0] = sync["next_batch"]
        return room_id in sync.get("rooms", {}).get("leave", {})

    status, sync = await synapse_call(synapse, token, "GET", "/_matrix/client/v3/sync", params={"timeout": "0"})
    since = [sync["next_batch"]]
    status, body = await client_call(fed_hs, ca, alice["access_token"], "POST",
                                     f"/_matrix/client/v3/rooms/{room}/kick", {"user_id": bob["user_id"]})
    assert status == 200, body
    await until(bob_out_on_synapse, "the kick never reached Synapse", synapse)
    status, body = await synapse_call(synapse, token, "POST", f"/_matrix/client/v3/join/{room}", {},
                                      params={"server_name": ours})
    assert status == 200, (body, synapse.log_tail())  # a kick is not a ban: Bob may come back
    await wait_for_membership(fed_hs, room_id, bob["user_id"], "join", synapse)
    status, body = await client_call(fed_hs, ca, alice["access_token"], "POST",
                                     f"/_matrix/client/v3/rooms/{room}/ban", {"user_id": bob["user_id"]})
    assert status == 200, body
    await wait_for_membership(fed_hs, room_id, bob["user_id"], "ban", synapse)
    await until(bob_out_on_synapse, "the ban never reached Synapse", synapse)
    status, body = await synapse_call(synapse, token, "POST", f"/_matrix/client/v3/join/{room}", {},
                                      params={"server_name": ours})
    assert status == 403, body


async def _contains(source, wanted) -> bool:
    return wanted in await source()
