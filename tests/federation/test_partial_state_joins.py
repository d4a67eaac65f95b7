"""Faster joins (send_join v2 with `omit_members`), both sides.

As the resident, our server leaves the other members out of a send_join answer when asked, and
says which servers are in the room. As the joining server, against a fake resident that honours
`omit_members`: the room is usable at once (send, /messages, /sync), member lists wait for the full
state, which is fetched in the background with /state and then reaches /sync; events over /send
from members the partial state lacks are accepted; our events reach `servers_in_room`; a fetch a
restart interrupted resumes."""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.config import parse_config
from homeserver.events.event import Event
from homeserver.events.room_versions import get_room_version
from homeserver.server import HomeServer
from tests.conftest import make_test_config
from tests.federation.helpers import federation_overrides, user_with_displayname
from tests.federation.resident import V1, V2, VERSIONS, client_call, fed_request, local_room, q, send_message
from tests.support.fake_resident import FakeResidentRoom
from tests.support.ports import free_port

MEMBERS = 30


# --- our server as the resident ------------------------------------------------------------------

async def _local_members(hs, ca, room_id: str, count: int) -> list[str]:
    users = []
    for i in range(count):
        user = await user_with_displayname(hs, ca, f"local{i}", f"Local {i}")
        status, body = await client_call(hs, ca, user["access_token"], "POST",
                                         f"/_matrix/client/v3/join/{q(room_id)}", {})
        assert status == 200, body
        users.append(user["user_id"])
    return users


async def _partial_send_join(hs, remote, view, room_id: str, localpart: str, query: str = "omit_members=true"
                             ) -> tuple[int, Any, str]:
    view.remote = remote
    user_id = f"@{localpart}:{remote.server_name}"
    status, made = await fed_request(hs, remote, "GET", f"{V1}/make_join/{q(room_id)}/{q(user_id)}?{VERSIONS}")
    assert status == 200, made
    view.room_version = get_room_version(made["room_version"])
    join = view.sign_template(made["event"])
    event_id = view.event_id(join)
    status, answer = await fed_request(hs, remote, "PUT", f"{V2}/send_join/{q(room_id)}/{q(event_id)}?{query}", join)
    return status, answer, event_id


async def test_send_join_with_omit_members_leaves_out_the_other_members_and_lists_the_servers_in_the_room(
        fed_hs, ca, room_remote):
    view, remote = room_remote
    alice, room_id = await local_room(fed_hs, ca, name="Lobby")
    await _local_members(fed_hs, ca, room_id, 3)
    status, answer, _ = await _partial_send_join(fed_hs, remote, view, room_id, "bob")
    assert status == 200, answer
    assert answer["members_omitted"] is True
    assert answer["servers_in_room"] == [fed_hs.config.server_name]
    state_types = [(e["type"], e["state_key"]) for e in answer["state"]]
    assert ("m.room.name", "") in state_types and ("m.room.power_levels", "") in state_types
    assert not [k for k in state_types if k[0] == "m.room.member"]
    # The auth chain still brings the members the auth rules need (the creator's join), each event
    # once, and none of those already in `state`.
    state_ids = {view.event_id(e) for e in answer["state"]}
    chain = {view.event_id(e): e for e in answer["auth_chain"]}
    assert len(chain) == len(answer["auth_chain"]) and not state_ids & set(chain)
    chain_members = {e["state_key"] for e in chain.values() if e["type"] == "m.room.member"}
    assert chain_members == {alice["user_id"]}


async def test_send_join_with_omit_members_in_an_unnamed_room_keeps_the_heroes_memberships(fed_hs, ca, room_remote):
    view, remote = room_remote
    alice, room_id = await local_room(fed_hs, ca)
    locals_ = await _local_members(fed_hs, ca, room_id, 6)
    status, answer, _ = await _partial_send_join(fed_hs, remote, view, room_id, "bob")
    assert status == 200, answer
    members = {e["state_key"] for e in answer["state"] if e["type"] == "m.room.member"}
    # The first five members to join, as the room summary's m.heroes names them.
    assert members == {alice["user_id"], *locals_[:4]}


async def test_send_join_without_omit_members_sends_every_member(fed_hs, ca, room_remote):
    view, remote = room_remote
    _, room_id = await local_room(fed_hs, ca, name="Lobby")
    locals_ = await _local_members(fed_hs, ca, room_id, 2)
    status, answer, _ = await _partial_send_join(fed_hs, remote, view, room_id, "bob", "omit_members=false")
    assert status == 200, answer
    assert answer["members_omitted"] is False
    assert set(locals_) <= {e["state_key"] for e in answer["state"] if e["type"] == "m.room.member"}


async def test_send_join_with_a_malformed_omit_members_is_refused_naming_the_parameter(fed_hs, ca, room_remote):
    view, remote = room_remote
    _, room_id = await local_room(fed_hs, ca)
    status, answer, _ = await _partial_send_join(fed_hs, remote, view, room_id, "bob", "omit_members=maybe")
    assert status == 400 and answer["errcode"] == "M_INVALID_PARAM" and "omit_members" in answer["error"]


# --- our server joining with partial state ------------------------------------------------------

async def partial_resident(make_remote, members: int = MEMBERS) -> FakeResidentRoom:
    rooms: list[FakeResidentRoom] = []

    def routes(remote) -> None:
        room = FakeResidentRoom(remote)
        room.honour_omit_members = True
        room.serve()
        rooms.append(room)

    await make_remote(routes=routes)
    room = rooms[0]
    room.add_members(members)
    return room


async def join_remote(hs, ca, token: str, room: FakeResidentRoom) -> None:
    status, body = await client_call(hs, ca, token, "POST", f"/_matrix/client/v3/join/{q(room.room_id)}", {},
                                     params={"server_name": room.remote.server_name})
    assert status == 200, body


async def wait_until(predicate, what: str, timeout: float = 20.0) -> None:
    """Poll `predicate` (sync or async) until it holds; fails the test after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def members_of(hs, ca, token: str, room_id: str) -> set[str]:
    status, body = await client_call(hs, ca, token, "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/members")
    assert status == 200, body
    return {e["state_key"] for e in body["chunk"] if e["content"].get("membership") == "join"}


async def test_a_partial_state_join_is_usable_at_once_and_member_lists_wait_for_the_full_state(
        fed_hs, ca, make_remote):
    room = await partial_resident(make_remote)
    room.state_gate = asyncio.Event()  # /state answers only once the test opens it
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    token = dave["access_token"]
    status, first = await client_call(fed_hs, ca, token, "GET", "/_matrix/client/v3/sync")
    assert status == 200, first
    await join_remote(fed_hs, ca, token, room)
    send_join = next(uri for method, uri, _ in room.remote.requests if "/send_join/" in uri)
    assert "omit_members=true" in send_join
    store = fed_hs.federation_transport.partial_state_store
    assert await store.is_partial(room.room_id)

    # Usable at once: send, /messages, /sync's timeline.
    sent = await send_message(fed_hs, ca, token, room.room_id, "hello while partial")
    status, messages = await client_call(fed_hs, ca, token, "GET",
                                         f"/_matrix/client/v3/rooms/{q(room.room_id)}/messages",
                                         params={"dir": "b", "limit": "10"})
    assert status == 200 and sent in [e["event_id"] for e in messages["chunk"]]
    status, synced = await client_call(fed_hs, ca, token, "GET", "/_matrix/client/v3/sync",
                                       params={"since": first["next_batch"]})
    assert status == 200, synced
    joined = synced["rooms"]["join"][room.room_id]
    assert sent in [e["event_id"] for e in joined["timeline"]["events"]]
    # The state section holds what the partial state has: none of the resident's members. (The
    # timeline may show some of their joins: /messages backfilled recent history from the resident.)
    state_members = {e["state_key"] for e in joined["state"]["events"] if e["type"] == "m.room.member"}
    assert state_members <= {dave["user_id"]}, state_members
    # The resident is not in our partial state (its members were omitted): our message reaches it
    # because the join answer named it in servers_in_room.
    await wait_until(lambda: any(_pdu_id(room, p) == sent for t in room.transactions for p in t.get("pdus", [])),
                     "our message at the resident")

    # The member list waits for the full state.
    members = asyncio.create_task(members_of(fed_hs, ca, token, room.room_id))
    await wait_until(lambda: room.state_requests, "the /state request")
    done, _ = await asyncio.wait({members}, timeout=0.5)
    assert not done, "the member list answered before the full state was in"
    room.state_gate.set()
    expected = {room.creator, *(room.user(f"member{i}") for i in range(MEMBERS)), dave["user_id"]}
    assert await members == expected
    await fed_fully_joined(fed_hs, room.room_id)
    # The full state asked for is the state at our join.
    our_join = room.state[("m.room.member", dave["user_id"])]
    assert room.state_requests == [our_join]

    # /sync from the token before completion sends the room's whole state.
    status, after = await client_call(fed_hs, ca, token, "GET", "/_matrix/client/v3/sync",
                                      params={"since": synced["next_batch"]})
    assert status == 200, after
    state = after["rooms"]["join"][room.room_id]["state"]["events"]
    assert {e["state_key"] for e in state if e["type"] == "m.room.member"} >= expected - {dave["user_id"]}
    status, joined_members = await client_call(fed_hs, ca, token, "GET",
                                               f"/_matrix/client/v3/rooms/{q(room.room_id)}/joined_members")
    assert status == 200 and set(joined_members["joined"]) == expected


def _pdu_id(room: FakeResidentRoom, pdu: dict[str, Any]) -> str:
    return Event(pdu, room.room_version).event_id


async def fed_fully_joined(hs, room_id: str) -> None:
    resync = hs.federation_transport.resync
    await resync.wait(room_id)
    assert not await hs.federation_transport.partial_state_store.is_partial(room_id)


async def test_events_over_send_from_members_missing_from_the_partial_state_are_accepted(fed_hs, ca, make_remote):
    room = await partial_resident(make_remote)
    room.state_gate = asyncio.Event()
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    await join_remote(fed_hs, ca, dave["access_token"], room)
    assert await fed_hs.federation_transport.partial_state_store.is_partial(room.room_id)
    message = room.send("m.room.message", {"msgtype": "m.text", "body": "hi from member7"},
                        sender=room.user("member7"))
    status, answer = await room.remote.request(
        fed_hs.base_url("federation"), fed_hs.config.server_name, "PUT", f"{V1}/send/partial1",
        {"origin": room.remote.server_name, "origin_server_ts": 1, "pdus": [dict(message.pdu)], "edus": []})
    assert status == 200 and answer["pdus"][message.event_id] == {}, answer
    stored = await fed_hs.event_store.get_event(message.event_id)
    assert stored is not None and stored.rejected_reason is None and not stored.internal_metadata.get("outlier")
    status, messages = await client_call(fed_hs, ca, dave["access_token"], "GET",
                                         f"/_matrix/client/v3/rooms/{q(room.room_id)}/messages",
                                         params={"dir": "b", "limit": "10"})
    assert status == 200 and message.event_id in [e["event_id"] for e in messages["chunk"]]
    # A member the partial state lacks: its state event is answered once the full state is in.
    member = asyncio.create_task(client_call(
        fed_hs, ca, dave["access_token"], "GET",
        f"/_matrix/client/v3/rooms/{q(room.room_id)}/state/m.room.member/{q(room.user('member3'))}"))
    done, _ = await asyncio.wait({member}, timeout=0.5)
    assert not done, "answered from the partial state"
    room.state_gate.set()
    status, content = await member
    assert (status, content.get("membership")) == (200, "join"), content
    await fed_fully_joined(fed_hs, room.room_id)


async def test_while_partial_our_server_refuses_make_join_for_the_room(fed_hs, ca, make_remote):
    room = await partial_resident(make_remote, members=3)
    room.state_gate = asyncio.Event()
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    await join_remote(fed_hs, ca, dave["access_token"], room)
    joiner = room.user("latecomer")
    status, body = await fed_request(fed_hs, room.remote, "GET",
                                     f"{V1}/make_join/{q(room.room_id)}/{q(joiner)}?{VERSIONS}")
    assert status == 404 and body["errcode"] == "M_NOT_FOUND" and "fully joined" in body["error"]
    room.state_gate.set()
    await fed_fully_joined(fed_hs, room.room_id)
    status, body = await fed_request(fed_hs, room.remote, "GET",
                                     f"{V1}/make_join/{q(room.room_id)}/{q(joiner)}?{VERSIONS}")
    assert status == 200, body


async def test_with_faster_joins_off_the_join_asks_for_the_whole_state(make_federating_homeserver, ca, make_remote):
    hs = await make_federating_homeserver(faster_joins=False)
    room = await partial_resident(make_remote, members=3)
    dave = await user_with_displayname(hs, ca, "dave", "Dave")
    await join_remote(hs, ca, dave["access_token"], room)
    send_join = next(uri for method, uri, _ in room.remote.requests if "/send_join/" in uri)
    assert "omit_members" not in send_join
    assert not await hs.federation_transport.partial_state_store.is_partial(room.room_id)
    assert await members_of(hs, ca, dave["access_token"], room.room_id) == {
        room.creator, dave["user_id"], *(room.user(f"member{i}") for i in range(3))}


async def test_a_full_state_fetch_interrupted_by_a_restart_completes_after_it(tmp_path, database_config, ca,
                                                                               make_remote):
    room = await partial_resident(make_remote)
    room.refuse["state"] = (500, {"errcode": "M_UNKNOWN", "error": "not now"})
    raw = make_test_config(tmp_path, database_config, **federation_overrides(ca, free_port()))
    hs = HomeServer(parse_config(raw))
    await hs.start()
    try:
        dave = await user_with_displayname(hs, ca, "dave", "Dave")
        await join_remote(hs, ca, dave["access_token"], room)
        await wait_until(lambda: room.state_requests, "a /state request")
        assert await hs.federation_transport.partial_state_store.is_partial(room.room_id)
    finally:
        await hs.stop()
    room.refuse.pop("state")
    hs = HomeServer(parse_config(raw))
    await hs.start()
    try:
        await wait_until(lambda: _not_partial(hs, room.room_id), "the resumed fetch")
        # The access token is in the database: the same user reads the completed member list.
        assert await members_of(hs, ca, dave["access_token"], room.room_id) == {
            room.creator, dave["user_id"], *(room.user(f"member{i}") for i in range(MEMBERS))}
    finally:
        await hs.stop()


async def _not_partial(hs, room_id: str) -> bool:
    return not await hs.federation_transport.partial_state_store.is_partial(room_id)
