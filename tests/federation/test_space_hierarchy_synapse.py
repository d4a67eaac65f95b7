"""Spaces across servers against a real Synapse: our client /hierarchy walks into a space on Synapse over
its /_matrix/federation/v1/hierarchy, and Synapse's walk of its own space reaches a room on ours over ours.
(Synapse's rooms are version 12, whose IDs name no server: a walk reaches them through a link's `via`.)"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.federation.helpers import tls_session
from tests.support.rooms import new_user
from tests.support.synapse_federation import FederatingSynapse

SPACE = {"type": "m.space"}


async def _synapse_call(synapse: FederatingSynapse, token: str, method: str, path: str, body: Any = None) -> Any:
    connector = aiohttp.TCPConnector(ssl=synapse.ssl_context())
    async with aiohttp.ClientSession(synapse.url, connector=connector) as session:
        async with session.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"}) as resp:
            answer = await resp.json()
            assert resp.status == 200, (answer, synapse.log_tail())
            return answer


async def test_we_walk_into_a_space_on_synapse(fed_hs, ca, synapse):
    bob = await synapse.register(f"bob{int(time.time() * 1000)}")
    token = bob["access_token"]
    space = (await _synapse_call(synapse, token, "POST", "/_matrix/client/v3/createRoom",
                                 {"name": "Synapse space", "preset": "public_chat",
                                  "creation_content": SPACE}))["room_id"]
    room = (await _synapse_call(synapse, token, "POST", "/_matrix/client/v3/createRoom",
                                {"name": "Synapse room", "preset": "public_chat"}))["room_id"]
    private = (await _synapse_call(synapse, token, "POST", "/_matrix/client/v3/createRoom",
                                   {"name": "Synapse secret", "preset": "private_chat"}))["room_id"]
    for child in (room, private):
        await _synapse_call(synapse, token, "PUT", f"/_matrix/client/v3/rooms/{quote(space)}/state/m.space.child/"
                            f"{quote(child)}", {"via": [synapse.server_name]})

    async with tls_session(fed_hs, ca) as session:
        alice = await new_user(session, "alice")
        ours = await alice.create_room(name="Our space", creation_content=SPACE, preset="public_chat")
        await alice.call("PUT", f"/rooms/{ours}/state/m.space.child/{quote(space)}", {"via": [synapse.server_name]})
        result = await alice.call("GET", f"/_matrix/client/v1/rooms/{quote(ours)}/hierarchy")
    assert [(r["room_id"], r.get("name")) for r in result["rooms"]] == [
        (ours, "Our space"), (space, "Synapse space"), (room, "Synapse room")], result
    assert {c["state_key"] for c in result["rooms"][1]["children_state"]} == {room, private}


async def test_synapse_walks_into_a_room_on_our_server(fed_hs, ca, synapse):
    async with tls_session(fed_hs, ca) as session:
        alice = await new_user(session, "alice")
        ours = await alice.create_room(name="Huiskamer room", topic="koffie", preset="public_chat")
        hidden = await alice.create_room(name="Huiskamer secret", preset="private_chat")
    bob = await synapse.register(f"bob{int(time.time() * 1000)}")
    token = bob["access_token"]
    space = (await _synapse_call(synapse, token, "POST", "/_matrix/client/v3/createRoom",
                                 {"name": "Mixed space", "preset": "public_chat",
                                  "creation_content": SPACE}))["room_id"]
    for child in (ours, hidden):
        await _synapse_call(synapse, token, "PUT", f"/_matrix/client/v3/rooms/{quote(space)}/state/m.space.child/"
                            f"{quote(child)}", {"via": [fed_hs.config.server_name]})
    result = await _synapse_call(synapse, token, "GET", f"/_matrix/client/v1/rooms/{quote(space)}/hierarchy")
    rooms = {r["room_id"]: r for r in result["rooms"]}
    assert set(rooms) == {space, ours}, (result, synapse.log_tail())
    assert rooms[ours]["name"] == "Huiskamer room" and rooms[ours]["topic"] == "koffie"
    assert rooms[ours]["num_joined_members"] == 1 and rooms[ours]["join_rule"] == "public"
