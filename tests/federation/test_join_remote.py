"""Joining rooms that live on another server (make_join / send_join v2), with a fake remote server
as the resident: the join template is signed and sent back, the state and auth chain that come
with it are checked (forged signatures and bad events refused) and persisted, and /sync shows the
room with its state and our join. Version negotiation, refusals and failover give clear errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.federation.helpers import tls_session, user_with_displayname
from tests.support.fake_resident import FakeResidentRoom


async def resident(make_remote, **room_options: Any) -> FakeResidentRoom:
    rooms: list[FakeResidentRoom] = []

    def routes(remote) -> None:
        room = FakeResidentRoom(remote, **room_options)
        room.serve()
        rooms.append(room)

    await make_remote(routes=routes)
    return rooms[0]


async def call(hs, ca, method: str, path: str, token: str, body: Any = None, params: Any = None
               ) -> tuple[int, Any]:
    async with tls_session(hs, ca) as session:
        async with session.request(method, path, json=body, params=params,
                                   headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status, await resp.json()


async def join(hs, ca, token: str, target: str, via: list[str] | None = None) -> tuple[int, Any]:
    params = [("via", v) for v in via or []]
    return await call(hs, ca, "POST", f"/_matrix/client/v3/join/{quote(target, safe='')}", token, {}, params)


async def sync_room(hs, ca, token: str, room_id: str, section: str = "join") -> dict[str, Any]:
    status, body = await call(hs, ca, "GET", "/_matrix/client/v3/sync", token)
    assert status == 200, body
    return body["rooms"][section][room_id]


@pytest.mark.parametrize("version", ["10", "12", "1"])
async def test_a_user_joins_a_remote_room_by_id_with_via_and_sync_shows_its_state(fed_hs, ca, make_remote, version):
    room = await resident(make_remote, version=version)
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name])
    assert (status, body) == (200, {"room_id": room.room_id})
    # We offered every room version we support, and the resident took our signed join.
    make_join = next(uri for method, uri, _ in room.remote.requests if "/make_join/" in uri)
    assert "ver=10" in make_join and "ver=1&" in make_join
    ours = room.events[room.extremities[0]]
    assert ours.sender == dave["user_id"] and ours.membership == "join"
    assert ours.content.get("displayname") == "Dave"
    assert fed_hs.config.server_name in ours.signatures

    synced = await sync_room(fed_hs, ca, dave["access_token"], room.room_id)
    state = {(e["type"], e["state_key"]): e for e in synced["state"]["events"]}
    assert state[("m.room.name", "")]["content"] == {"name": "Remote lobby"}
    assert ("m.room.member", room.creator) in state and ("m.room.create", "") in state
    timeline = synced["timeline"]["events"]
    assert [e["event_id"] for e in timeline] == [ours.event_id]

    status, members = await call(fed_hs, ca, "GET", f"/_matrix/client/v3/rooms/{quote(room.room_id)}/joined_members",
                                 dave["access_token"])
    assert status == 200, members
    assert set(members["joined"]) == {room.creator, dave["user_id"]}


async def test_after_a_remote_join_our_next_message_builds_on_our_join(fed_hs, ca, make_remote):
    room = await resident(make_remote)
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    assert (await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name]))[0] == 200
    join_id = room.extremities[0]
    status, body = await call(fed_hs, ca, "PUT",
                              f"/_matrix/client/v3/rooms/{quote(room.room_id)}/send/m.room.message/t1",
                              dave["access_token"], {"msgtype": "m.text", "body": "hallo"})
    assert status == 200, body
    event = await fed_hs.event_store.get_event(body["event_id"])
    assert event.prev_event_ids == [join_id]
    assert ("m.room.member", room.creator) in {(t, k) for t, k in await fed_hs.event_store.get_current_state_ids(
        room.room_id)}


async def test_a_user_joins_a_remote_room_by_alias(fed_hs, ca, make_remote):
    from aiohttp import web

    rooms: list[FakeResidentRoom] = []

    def routes(remote) -> None:
        room = FakeResidentRoom(remote)
        room.serve()
        rooms.append(room)

        async def directory(request: web.Request) -> web.Response:
            return web.json_response({"room_id": room.room_id, "servers": [remote.server_name]})

        remote.route("GET", "/_matrix/federation/v1/query/directory", directory)

    await make_remote(routes=routes)
    room = rooms[0]
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await join(fed_hs, ca, dave["access_token"], f"#lobby:{room.remote.server_name}")
    assert (status, body) == (200, {"room_id": room.room_id})
    synced = await sync_room(fed_hs, ca, dave["access_token"], room.room_id)
    assert any(e["type"] == "m.room.name" for e in synced["state"]["events"])


async def test_a_room_of_a_version_we_do_not_support_is_refused_as_incompatible(fed_hs, ca, make_remote):
    room = await resident(make_remote)
    room.refuse["make_join"] = (400, {"errcode": "M_INCOMPATIBLE_ROOM_VERSION", "error": "Your homeserver does "
                                      "not support the features required to join this room",
                                      "room_version": "org.example.v99"})
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name])
    assert (status, body["errcode"]) == (400, "M_INCOMPATIBLE_ROOM_VERSION"), body


async def test_a_template_of_an_unknown_room_version_is_incompatible(fed_hs, ca, make_remote):
    room = await resident(make_remote)
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    # The resident answers make_join with a version we never offered.
    room.refuse["make_join"] = (200, {"room_version": "org.example.v99",
                                      "event": room.template(dave["user_id"], "join")})
    status, body = await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name])
    assert (status, body["errcode"]) == (400, "M_INCOMPATIBLE_ROOM_VERSION"), body


async def test_a_refusal_by_the_resident_is_forbidden(fed_hs, ca, make_remote):
    room = await resident(make_remote)
    room.refuse["make_join"] = (403, {"errcode": "M_FORBIDDEN", "error": "You are not invited to this room"})
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name])
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    assert "not invited" in body["error"]


async def test_when_no_server_can_be_reached_the_join_fails_with_502(fed_hs, ca):
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await join(fed_hs, ca, dave["access_token"], "!gone:127.0.0.2:1", ["127.0.0.3:1"])
    assert (status, body["errcode"]) == (502, "M_UNKNOWN"), body
    assert "127.0.0.3:1" in body["error"] and "127.0.0.2:1" in body["error"]


async def test_a_join_fails_over_to_the_next_via_server(fed_hs, ca, make_remote):
    room = await resident(make_remote)
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await join(fed_hs, ca, dave["access_token"], room.room_id, ["127.0.0.3:1", room.remote.server_name])
    assert (status, body) == (200, {"room_id": room.room_id})


async def test_a_state_event_with_a_forged_signature_is_left_out_of_the_state(fed_hs, ca, make_remote):
    room = await resident(make_remote)
    name_id = room.state[("m.room.name", "")]

    def forge(answer: dict[str, Any]) -> dict[str, Any]:
        for pdu in answer["state"]:
            if pdu["type"] == "m.room.name":
                key_id = next(iter(pdu["signatures"][room.remote.server_name]))
                pdu["signatures"][room.remote.server_name][key_id] = "A" * 86
        return answer

    room.tamper_answer = forge
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name])
    assert status == 200, body
    state = await fed_hs.event_store.get_current_state_ids(room.room_id)
    assert ("m.room.name", "") not in state
    assert await fed_hs.event_store.get_event(name_id) is None
    assert ("m.room.join_rules", "") in state


async def test_a_state_event_with_a_bad_content_hash_is_kept_redacted(fed_hs, ca, make_remote):
    room = await resident(make_remote)

    def tamper(answer: dict[str, Any]) -> dict[str, Any]:
        for pdu in answer["state"]:
            if pdu["type"] == "m.room.name":
                pdu["content"] = {"name": "Changed on the way"}
        return answer

    room.tamper_answer = tamper
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name])
    assert status == 200, body
    name = await fed_hs.event_store.get_event(room.state[("m.room.name", "")])
    assert dict(name.content) == {}


async def test_a_forged_create_event_makes_the_join_fail(fed_hs, ca, make_remote):
    room = await resident(make_remote)

    def forge(answer: dict[str, Any]) -> dict[str, Any]:
        for pdu in [*answer["state"], *answer["auth_chain"]]:
            if pdu["type"] == "m.room.create":
                pdu["signatures"] = {}
        return answer

    room.tamper_answer = forge
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name])
    assert (status, body["errcode"]) == (502, "M_UNKNOWN"), body
    assert "m.room.create" in body["error"]
    assert await fed_hs.event_store.get_forward_extremities(room.room_id) == []


async def test_a_state_event_not_allowed_by_its_auth_events_is_rejected(fed_hs, ca, make_remote):
    room = await resident(make_remote)
    # A topic set by someone never joined, slipped into the state by the resident.
    intruder = room.user("mallory")
    from homeserver.events.builder import build_event

    bogus = build_event(room_version=room.room_version, event_type="m.room.topic", sender=intruder,
                        content={"topic": "taken over"}, room_id=room.room_id, state_key="",
                        prev_event_ids=list(room.extremities),
                        auth_event_ids=[room.state[("m.room.create", "")], room.state[("m.room.power_levels", "")]],
                        depth=room.depth + 1, origin_server_ts=1, origin=room.remote.server_name,
                        signing_key=room.remote.signing_key)

    def add_bogus(answer: dict[str, Any]) -> dict[str, Any]:
        answer["state"].append(dict(bogus.pdu))
        return answer

    room.tamper_answer = add_bogus
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name])
    assert status == 200, body
    state = await fed_hs.event_store.get_current_state_ids(room.room_id)
    assert ("m.room.topic", "") not in state
    stored = await fed_hs.event_store.get_event(bogus.event_id)
    assert stored is not None and stored.rejected_reason is not None


async def test_a_restricted_join_carries_the_authorising_servers_signature(fed_hs, ca, make_remote):
    room = await resident(make_remote, join_rule="restricted", allow_room="!space:elsewhere")
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name])
    assert status == 200, body
    ours = room.events[room.extremities[0]]
    assert ours.content["join_authorised_via_users_server"] == room.creator
    stored = await fed_hs.event_store.get_event(ours.event_id)
    assert set(stored.signatures) == {fed_hs.config.server_name, room.remote.server_name}


async def test_a_restricted_join_returned_without_the_resident_signature_fails(fed_hs, ca, make_remote):
    room = await resident(make_remote, join_rule="restricted", allow_room="!space:elsewhere")

    def unsign(answer: dict[str, Any]) -> dict[str, Any]:
        answer["event"]["signatures"].pop(room.remote.server_name)
        return answer

    room.tamper_answer = unsign
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name])
    assert (status, body["errcode"]) == (502, "M_UNKNOWN"), body
    assert "signed join" in body["error"]


async def test_rejoining_a_remote_room_after_leaving_replaces_its_state(fed_hs, ca, make_remote):
    room = await resident(make_remote)
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    assert (await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name]))[0] == 200
    status, _ = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/rooms/{quote(room.room_id)}/leave",
                           dave["access_token"], {})
    assert status == 200
    # While we were away the room was renamed and its topic set.
    room.send("m.room.name", {"name": "Renamed"}, state_key="")
    room.send("m.room.topic", {"topic": "New topic"}, state_key="")
    status, body = await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name])
    assert (status, body) == (200, {"room_id": room.room_id})
    state = await fed_hs.event_store.get_current_state_ids(room.room_id)
    assert state[("m.room.name", "")] == room.state[("m.room.name", "")]
    assert state[("m.room.topic", "")] == room.state[("m.room.topic", "")]
    _, join_id = await fed_hs.event_store.get_membership(room.room_id, dave["user_id"])
    assert await fed_hs.event_store.get_forward_extremities(room.room_id) == [join_id]
    status, name = await call(fed_hs, ca, "GET", f"/_matrix/client/v3/rooms/{quote(room.room_id)}/state/m.room.name",
                              dave["access_token"])
    assert (status, name) == (200, {"name": "Renamed"})
