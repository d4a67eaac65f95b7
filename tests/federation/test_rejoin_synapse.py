"""Our user leaves a room that lives on a real Synapse, the room changes while they are away, and they
join again: /sync must show the room as it is now, although the events of the gap never reached us
(the state at the rejoin came whole with send_join). An initial /sync whose timeline spans the old
membership and the new one, and an incremental /sync from a token taken before the leave."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.federation.helpers import user_with_displayname
from tests.federation.test_join_remote import call, join
from tests.federation.test_join_remote_synapse import on_synapse, synapse_members, synapse_room, unique
from tests.support.synapse_federation import until


def room_as_client_sees_it(room: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The room's state a client builds from one /sync room entry: `state`, then the timeline."""
    seen = {(e["type"], e["state_key"]): e["content"] for e in room["state"]["events"]}
    for event in room["timeline"]["events"]:
        if "state_key" in event:
            seen[(event["type"], event["state_key"])] = event["content"]
    return seen


async def sync(hs, ca, token: str, since: str | None = None) -> dict[str, Any]:
    params = {"since": since} if since else None
    status, body = await call(hs, ca, "GET", "/_matrix/client/v3/sync", token, params=params)
    assert status == 200, body
    return body


async def test_a_rejoin_after_the_room_changed_shows_the_new_state_in_sync(fed_hs, ca, synapse):
    bob = await synapse.register(unique("bob"))
    room_id = await synapse_room(synapse, bob["access_token"], preset="public_chat", name="Oude naam",
                                 topic="Oud onderwerp")
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    assert (await join(fed_hs, ca, dave["access_token"], room_id, [synapse.server_name]))[0] == 200

    async def joined_with_full_state():
        body = await sync(fed_hs, ca, dave["access_token"])
        room = body["rooms"]["join"].get(room_id)
        members = room and room_as_client_sees_it(room)
        return body if members and ("m.room.member", bob["user_id"]) in members else None

    before_leave = (await until(joined_with_full_state, "the full state after the first join", synapse))["next_batch"]

    status, body = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/leave",
                              dave["access_token"], {})
    assert (status, body) == (200, {}), synapse.log_tail()

    async def left_on_synapse():
        return (await synapse_members(synapse, bob["access_token"], room_id)).get(dave["user_id"]) == "leave"

    await until(left_on_synapse, "Synapse seeing our leave", synapse)
    # The room changes while nobody of ours is in it: we never receive these events.
    for event_type, content in (("m.room.name", {"name": "Nieuwe naam"}),
                                ("m.room.topic", {"topic": "Nieuw onderwerp"})):
        status, sent = await on_synapse(synapse, "PUT", f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{event_type}",
                                        bob["access_token"], content)
        assert status == 200, sent
    assert (await join(fed_hs, ca, dave["access_token"], room_id, [synapse.server_name]))[0] == 200

    # Initial /sync: the timeline holds both joins and the leave; what the client builds is the room now.
    body = await sync(fed_hs, ca, dave["access_token"])
    room = body["rooms"]["join"][room_id]
    memberships = [e["content"]["membership"] for e in room["timeline"]["events"]
                   if e["type"] == "m.room.member" and e["state_key"] == dave["user_id"]]
    assert memberships == ["join", "leave", "join"], room["timeline"]
    seen = room_as_client_sees_it(room)
    assert seen[("m.room.name", "")] == {"name": "Nieuwe naam"}
    assert seen[("m.room.topic", "")]["topic"] == "Nieuw onderwerp"
    assert seen[("m.room.member", dave["user_id"])]["membership"] == "join"

    # Incremental /sync from before the leave: the client's old view plus this entry is the room now.
    body = await sync(fed_hs, ca, dave["access_token"], before_leave)
    room = body["rooms"]["join"][room_id]
    names = [e["content"] for e in room["state"]["events"] + room["timeline"]["events"]
             if e["type"] == "m.room.name"]
    assert names[-1:] == [{"name": "Nieuwe naam"}], room
    topics = [e["content"]["topic"] for e in room["state"]["events"] + room["timeline"]["events"]
              if e["type"] == "m.room.topic"]
    assert topics[-1:] == ["Nieuw onderwerp"], room
