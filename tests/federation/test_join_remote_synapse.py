"""Our users in rooms that live on a real Synapse (from PyPI), over TLS on loopback with certificate
verification on both sides: joining by alias and by ID with `via` (the room's state and our join in
/sync, Synapse counting us as joined), restricted joins authorised by Synapse, knocking and
withdrawing the knock, inviting Synapse's users, their profiles and Synapse's room directory."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.federation.helpers import user_with_displayname
from tests.federation.test_join_remote import call, join, sync_room
from tests.support.synapse_federation import FederatingSynapse, until


async def on_synapse(synapse: FederatingSynapse, method: str, path: str, token: str, body: Any = None,
                     params: Any = None) -> tuple[int, Any]:
    connector = aiohttp.TCPConnector(ssl=synapse.ssl_context())
    async with aiohttp.ClientSession(synapse.url, connector=connector) as session:
        async with session.request(method, path, json=body, params=params,
                                   headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status, await resp.json()


def unique(prefix: str) -> str:
    return f"{prefix}{int(time.time() * 1000) % 10**8}"


async def synapse_room(synapse: FederatingSynapse, token: str, **body: Any) -> str:
    status, answer = await on_synapse(synapse, "POST", "/_matrix/client/v3/createRoom", token, body)
    assert status == 200, (answer, synapse.log_tail())
    return answer["room_id"]


async def synapse_members(synapse: FederatingSynapse, token: str, room_id: str) -> dict[str, str]:
    status, answer = await on_synapse(synapse, "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/members", token)
    assert status == 200, answer
    return {e["state_key"]: e["content"]["membership"] for e in answer["chunk"]}


async def test_our_user_joins_a_synapse_room_by_alias_and_sees_its_state_in_sync(fed_hs, ca, synapse):
    bob = await synapse.register(unique("bob"), "Bob on Synapse")
    alias_name = unique("lobby")
    room_id = await synapse_room(synapse, bob["access_token"], preset="public_chat", room_alias_name=alias_name,
                                 name="Synapse lobby", topic="Gezellig")
    for i in range(3):
        status, _ = await on_synapse(synapse, "PUT", f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/t{i}",
                                     bob["access_token"], {"msgtype": "m.text", "body": f"bericht {i}"})
        assert status == 200
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await join(fed_hs, ca, dave["access_token"], f"#{alias_name}:{synapse.server_name}")
    assert (status, body) == (200, {"room_id": room_id}), synapse.log_tail()

    # The join was a faster join: an initial /sync has the whole member list once the background
    # fetch of the full state is done.
    async def synced_with_bob():
        synced = await sync_room(fed_hs, ca, dave["access_token"], room_id)
        members = {e["state_key"] for e in synced["state"]["events"] if e["type"] == "m.room.member"}
        return synced if bob["user_id"] in members else None

    synced = await until(synced_with_bob, "Bob's membership in an initial /sync", synapse)
    state = {(e["type"], e["state_key"]): e["content"] for e in synced["state"]["events"]}
    assert state[("m.room.name", "")] == {"name": "Synapse lobby"}
    assert state[("m.room.topic", "")]["topic"] == "Gezellig"
    assert state[("m.room.member", bob["user_id"])]["membership"] == "join"
    assert state[("m.room.create", "")]["room_version"]
    [ours] = [e for e in synced["timeline"]["events"] if e["type"] == "m.room.member"]
    assert (ours["state_key"], ours["content"]["membership"]) == (dave["user_id"], "join")
    assert ours["content"]["displayname"] == "Dave"

    members = await synapse_members(synapse, bob["access_token"], room_id)
    assert members[dave["user_id"]] == "join"

    # The room's state on both sides is the same.
    status, ours_state = await call(fed_hs, ca, "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/state",
                                    dave["access_token"])
    assert status == 200, ours_state
    status, theirs = await on_synapse(synapse, "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/state",
                                      bob["access_token"])
    assert status == 200
    assert {e["event_id"] for e in ours_state} == {e["event_id"] for e in theirs}


async def test_our_user_joins_a_synapse_room_by_id_with_via(fed_hs, ca, synapse):
    bob = await synapse.register(unique("bob"))
    room_id = await synapse_room(synapse, bob["access_token"], preset="public_chat", name="By ID")
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await join(fed_hs, ca, dave["access_token"], room_id, [synapse.server_name])
    assert (status, body) == (200, {"room_id": room_id}), synapse.log_tail()
    synced = await sync_room(fed_hs, ca, dave["access_token"], room_id)
    assert {"name": "By ID"} in [e["content"] for e in synced["state"]["events"] if e["type"] == "m.room.name"]
    assert (await synapse_members(synapse, bob["access_token"], room_id))[dave["user_id"]] == "join"
    # Our next event builds on our join, in a room whose state we now hold.
    status, sent = await call(fed_hs, ca, "PUT", f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/1",
                              dave["access_token"], {"msgtype": "m.text", "body": "hoi"})
    assert status == 200, sent
    # ... and reaches the room's other server (its members came with the join, as outliers).
    deadline = time.monotonic() + 30
    while True:
        status, page = await on_synapse(synapse, "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/messages",
                                        bob["access_token"], params={"dir": "b", "limit": "20"})
        if status == 200 and sent["event_id"] in [e["event_id"] for e in page["chunk"]]:
            break
        assert time.monotonic() < deadline, f"our message never reached Synapse\n{synapse.log_tail()}"
        await asyncio.sleep(0.2)


async def test_joining_a_private_synapse_room_uninvited_is_forbidden(fed_hs, ca, synapse):
    bob = await synapse.register(unique("bob"))
    room_id = await synapse_room(synapse, bob["access_token"], preset="private_chat")
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await join(fed_hs, ca, dave["access_token"], room_id, [synapse.server_name])
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body


async def test_a_restricted_synapse_room_is_joined_with_synapses_authorisation(fed_hs, ca, synapse):
    bob = await synapse.register(unique("bob"))
    space_id = await synapse_room(synapse, bob["access_token"], preset="public_chat",
                                  creation_content={"type": "m.space"})
    room_id = await synapse_room(synapse, bob["access_token"], room_version="10", initial_state=[{
        "type": "m.room.join_rules", "state_key": "",
        "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space_id}]}}])
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await join(fed_hs, ca, dave["access_token"], room_id, [synapse.server_name])
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body  # not in the space yet
    assert (await join(fed_hs, ca, dave["access_token"], space_id, [synapse.server_name]))[0] == 200
    status, body = await join(fed_hs, ca, dave["access_token"], room_id, [synapse.server_name])
    assert (status, body) == (200, {"room_id": room_id}), synapse.log_tail()
    _, join_id = await fed_hs.event_store.get_membership(room_id, dave["user_id"])
    ours = await fed_hs.event_store.get_event(join_id)
    assert ours.content["join_authorised_via_users_server"] == bob["user_id"]
    assert synapse.server_name in ours.signatures


async def test_our_user_knocks_on_a_synapse_room_and_withdraws(fed_hs, ca, synapse):
    bob = await synapse.register(unique("bob"))
    room_id = await synapse_room(synapse, bob["access_token"], room_version="10", name="Knock knock",
                                 initial_state=[{"type": "m.room.join_rules", "state_key": "",
                                                 "content": {"join_rule": "knock"}}])
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/knock/{quote(room_id, safe='')}",
                              dave["access_token"], {"reason": "mag ik erin?"}, [("via", synapse.server_name)])
    assert (status, body) == (200, {"room_id": room_id}), synapse.log_tail()
    assert (await synapse_members(synapse, bob["access_token"], room_id))[dave["user_id"]] == "knock"
    knocked = await sync_room(fed_hs, ca, dave["access_token"], room_id, "knock")
    assert {"name": "Knock knock"} in [e["content"] for e in knocked["knock_state"]["events"]]
    status, body = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/leave",
                              dave["access_token"], {})
    assert (status, body) == (200, {}), synapse.log_tail()
    assert (await synapse_members(synapse, bob["access_token"], room_id))[dave["user_id"]] == "leave"


async def test_our_user_invites_a_synapse_user(fed_hs, ca, synapse):
    bob = await synapse.register(unique("bob"))
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await call(fed_hs, ca, "POST", "/_matrix/client/v3/createRoom", dave["access_token"],
                              {"name": "Uitnodiging", "preset": "private_chat"})
    room_id = body["room_id"]
    status, body = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/invite",
                              dave["access_token"], {"user_id": bob["user_id"]})
    assert (status, body) == (200, {}), synapse.log_tail()
    status, synced = await on_synapse(synapse, "GET", "/_matrix/client/v3/sync", bob["access_token"])
    invite = synced["rooms"]["invite"][room_id]["invite_state"]["events"]
    assert {"name": "Uitnodiging"} in [e["content"] for e in invite if e["type"] == "m.room.name"]
    _, invite_id = await fed_hs.event_store.get_membership(room_id, bob["user_id"])
    assert synapse.server_name in (await fed_hs.event_store.get_event(invite_id)).signatures


async def test_synapse_profiles_and_room_directory_through_our_client_api(fed_hs, ca, synapse):
    bob = await synapse.register(unique("bob"), "Bob op Synapse")
    name = unique("Openbaar")  # Synapse lives for the module: each run's room is its own
    room_id = await synapse_room(synapse, bob["access_token"], preset="public_chat", visibility="public",
                                 name=name)
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await call(fed_hs, ca, "GET", f"/_matrix/client/v3/profile/{quote(bob['user_id'])}",
                              dave["access_token"])
    assert (status, body.get("displayname")) == (200, "Bob op Synapse"), body
    status, body = await call(fed_hs, ca, "GET", "/_matrix/client/v3/publicRooms", dave["access_token"],
                              params={"server": synapse.server_name})
    assert status == 200, body
    assert room_id in [r["room_id"] for r in body["chunk"]]
    status, body = await call(fed_hs, ca, "POST", "/_matrix/client/v3/publicRooms", dave["access_token"],
                              {"filter": {"generic_search_term": name}}, params={"server": synapse.server_name})
    assert status == 200, body
    assert [r["room_id"] for r in body["chunk"]] == [room_id]


async def test_a_late_joiner_backfills_fifty_messages_from_synapse(fed_hs, ca, synapse):
    bob = await synapse.register(unique("bob"))
    room_id = await synapse_room(synapse, bob["access_token"], preset="public_chat", name="Geschiedenis")
    for i in range(50):
        status, _ = await on_synapse(synapse, "PUT", f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/h{i}",
                                     bob["access_token"], {"msgtype": "m.text", "body": f"oud {i}"})
        assert status == 200
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    assert (await join(fed_hs, ca, dave["access_token"], room_id, [synapse.server_name]))[0] == 200
    synced = await sync_room(fed_hs, ca, dave["access_token"], room_id)
    token, bodies = synced["timeline"]["prev_batch"], []
    for _ in range(10):
        status, page = await call(fed_hs, ca, "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/messages",
                                  dave["access_token"], params={"dir": "b", "from": token, "limit": "20"})
        assert status == 200, page
        bodies += [e["content"]["body"] for e in page["chunk"] if e["type"] == "m.room.message"]
        if "end" not in page:
            break
        token = page["end"]
    assert bodies == [f"oud {i}" for i in range(49, -1, -1)], synapse.log_tail()


async def test_our_user_accepts_a_synapse_invite_and_then_receives_synapses_messages(fed_hs, ca, synapse):
    bob = await synapse.register(unique("bob"))
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    room_id = await synapse_room(synapse, bob["access_token"], preset="private_chat", name="Privé")
    status, body = await on_synapse(synapse, "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/invite",
                                    bob["access_token"], {"user_id": dave["user_id"]})
    assert status == 200, (body, synapse.log_tail())
    invited = await sync_room(fed_hs, ca, dave["access_token"], room_id, "invite")
    assert {"name": "Privé"} in [e["content"] for e in invited["invite_state"]["events"]]
    # No via: the inviting server is asked.
    status, body = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/join",
                              dave["access_token"], {})
    assert (status, body) == (200, {"room_id": room_id}), synapse.log_tail()
    status, sent = await on_synapse(synapse, "PUT", f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/a1",
                                    bob["access_token"], {"msgtype": "m.text", "body": "welkom!"})
    assert status == 200
    for _ in range(100):  # Synapse's transaction arrives through inbound /send
        if await fed_hs.event_store.get_event(sent["event_id"]) is not None:
            break
        await asyncio.sleep(0.1)
    synced = await sync_room(fed_hs, ca, dave["access_token"], room_id)
    assert "welkom!" in [e["content"].get("body") for e in synced["timeline"]["events"]], synapse.log_tail()


async def test_our_user_rejects_a_synapse_invite(fed_hs, ca, synapse):
    bob = await synapse.register(unique("bob"))
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    room_id = await synapse_room(synapse, bob["access_token"], preset="private_chat")
    status, body = await on_synapse(synapse, "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/invite",
                                    bob["access_token"], {"user_id": dave["user_id"]})
    assert status == 200, body
    status, body = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/leave",
                              dave["access_token"], {})
    assert (status, body) == (200, {}), synapse.log_tail()
    assert (await synapse_members(synapse, bob["access_token"], room_id))[dave["user_id"]] == "leave"
