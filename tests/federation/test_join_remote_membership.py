"""Memberships across servers besides joining: knocking on a remote room (make_knock/send_knock),
withdrawing the knock and rejecting through make_leave/send_leave v2, and inviting another server's
user from our room (invite v2: stripped state sent, their signature added before we persist)."""

from __future__ import annotations

from urllib.parse import quote

from homeserver.events.signing import get_verify_key, verify_event_signature
from tests.federation.helpers import user_with_displayname
from tests.federation.test_join_remote import call, join, resident, sync_room


async def test_a_user_knocks_on_a_remote_room_and_sync_lists_the_knock_with_its_state(fed_hs, ca, make_remote):
    room = await resident(make_remote, join_rule="knock")
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/knock/{quote(room.room_id, safe='')}",
                              dave["access_token"], {"reason": "let me in"},
                              [("via", room.remote.server_name)])
    assert (status, body) == (200, {"room_id": room.room_id})
    knock = room.events[room.extremities[0]]
    assert (knock.sender, knock.membership, knock.content.get("reason")) == (dave["user_id"], "knock", "let me in")
    synced = await sync_room(fed_hs, ca, dave["access_token"], room.room_id, "knock")
    events = synced["knock_state"]["events"]
    assert {"type": "m.room.name", "state_key": "", "content": {"name": "Remote lobby"},
            "sender": room.creator} in events
    assert events[-1]["content"]["membership"] == "knock"


async def test_knocking_on_a_room_that_does_not_allow_it_is_forbidden(fed_hs, ca, make_remote):
    room = await resident(make_remote)  # public: knocking is not allowed by the auth rules
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/knock/{quote(room.room_id, safe='')}",
                              dave["access_token"], {}, [("via", room.remote.server_name)])
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body


async def test_a_knock_is_withdrawn_through_make_leave_and_send_leave(fed_hs, ca, make_remote):
    room = await resident(make_remote, join_rule="knock")
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, _ = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/knock/{quote(room.room_id, safe='')}",
                           dave["access_token"], {}, [("via", room.remote.server_name)])
    assert status == 200
    status, body = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/rooms/{quote(room.room_id)}/leave",
                              dave["access_token"], {"reason": "never mind"})
    assert (status, body) == (200, {})
    leave = room.events[room.extremities[0]]
    assert (leave.sender, leave.membership) == (dave["user_id"], "leave")
    assert any("/make_leave/" in uri for _, uri, _ in room.remote.requests)
    assert await fed_hs.event_store.get_membership(room.room_id, dave["user_id"]) == ("leave", leave.event_id)
    status, body = await call(fed_hs, ca, "GET", "/_matrix/client/v3/sync", dave["access_token"])
    assert room.room_id not in body.get("rooms", {}).get("knock", {})


async def test_a_remote_leave_refused_by_every_server_is_a_clear_error(fed_hs, ca, make_remote):
    room = await resident(make_remote, join_rule="knock")
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    await call(fed_hs, ca, "POST", f"/_matrix/client/v3/knock/{quote(room.room_id, safe='')}",
               dave["access_token"], {}, [("via", room.remote.server_name)])
    room.refuse["make_leave"] = (500, {"errcode": "M_UNKNOWN", "error": "oops"})
    status, body = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/rooms/{quote(room.room_id)}/leave",
                              dave["access_token"], {})
    assert (status, body["errcode"]) == (502, "M_UNKNOWN"), body
    assert (await fed_hs.event_store.get_membership(room.room_id, dave["user_id"]))[0] == "knock"


async def test_after_knocking_a_join_goes_to_the_resident(fed_hs, ca, make_remote):
    room = await resident(make_remote, join_rule="knock")
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    await call(fed_hs, ca, "POST", f"/_matrix/client/v3/knock/{quote(room.room_id, safe='')}",
               dave["access_token"], {}, [("via", room.remote.server_name)])
    room.send("m.room.member", {"membership": "invite"}, state_key=dave["user_id"])
    # No via: the server of the knock's room (and of whoever answered it) is asked.
    status, body = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/rooms/{quote(room.room_id)}/join",
                              dave["access_token"], {})
    assert (status, body) == (200, {"room_id": room.room_id})
    assert (await fed_hs.event_store.get_membership(room.room_id, dave["user_id"]))[0] == "join"


async def test_inviting_a_remote_user_sends_stripped_state_and_stores_their_signature(fed_hs, ca, make_remote):
    room = await resident(make_remote)  # the remote, acting as the invitee's server
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await call(fed_hs, ca, "POST", "/_matrix/client/v3/createRoom", dave["access_token"],
                              {"name": "Huiskamer", "preset": "private_chat"})
    assert status == 200, body
    room_id = body["room_id"]
    bob = room.user("bob")
    status, body = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/invite",
                              dave["access_token"], {"user_id": bob})
    assert (status, body) == (200, {})
    [sent] = room.invites
    assert sent["room_version"] == fed_hs.config.default_room_version
    stripped = {(s["type"], s["state_key"]): s for s in sent["invite_room_state"]}
    assert stripped[("m.room.name", "")]["content"] == {"name": "Huiskamer"}
    assert ("m.room.create", "") in stripped and ("m.room.join_rules", "") in stripped
    _, invite_id = await fed_hs.event_store.get_membership(room_id, bob)
    invite = await fed_hs.event_store.get_event(invite_id)
    assert invite.membership == "invite" and invite.sender == dave["user_id"]
    verify_event_signature(invite.pdu, invite.room_version, room.remote.server_name,
                           get_verify_key(room.remote.signing_key))


async def test_an_invite_refused_by_the_invitees_server_is_not_persisted(fed_hs, ca, make_remote):
    room = await resident(make_remote)
    room.refuse["invite"] = (403, {"errcode": "M_FORBIDDEN", "error": "bob does not take invites"})
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await call(fed_hs, ca, "POST", "/_matrix/client/v3/createRoom", dave["access_token"], {})
    room_id = body["room_id"]
    status, body = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/invite",
                              dave["access_token"], {"user_id": room.user("bob")})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    assert "does not take invites" in body["error"]
    assert await fed_hs.event_store.get_membership(room_id, room.user("bob")) == (None, None)
    # The room is not left locked or with a stale head: the next message goes through.
    status, body = await call(fed_hs, ca, "PUT", f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/1",
                              dave["access_token"], {"msgtype": "m.text", "body": "still here"})
    assert status == 200, body


async def test_inviting_a_user_of_an_unreachable_server_is_502(fed_hs, ca):
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, body = await call(fed_hs, ca, "POST", "/_matrix/client/v3/createRoom", dave["access_token"], {})
    room_id = body["room_id"]
    status, body = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/invite",
                              dave["access_token"], {"user_id": "@bob:127.0.0.2:1"})
    assert (status, body["errcode"]) == (502, "M_UNKNOWN"), body


async def test_a_remote_room_cannot_be_joined_when_federation_is_off(make_federating_homeserver, ca, make_remote):
    room = await resident(make_remote)
    hs = await make_federating_homeserver(enabled=False)
    dave = await user_with_displayname(hs, ca, "dave", "Dave")
    status, body = await join(hs, ca, dave["access_token"], room.room_id, [room.remote.server_name])
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND"), body
    assert not any("/make_join/" in uri for _, uri, _ in room.remote.requests)


async def test_a_remote_invite_is_rejected_through_the_inviting_server(fed_hs, ca, make_remote):
    room = await resident(make_remote)
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    invite = room.send("m.room.member", {"membership": "invite"}, state_key=dave["user_id"])
    # As inbound /invite stores it: an out-of-band membership of a room we are not in.
    ingestor = fed_hs.federation_transport.ingestor(fed_hs.event_store, fed_hs.room_heads, fed_hs.persister)
    await ingestor.persist_out_of_band_membership(invite)
    assert (await fed_hs.event_store.get_membership(room.room_id, dave["user_id"]))[0] == "invite"
    status, body = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/rooms/{quote(room.room_id)}/leave",
                              dave["access_token"], {})
    assert (status, body) == (200, {})
    rejection = room.events[room.extremities[0]]
    assert (rejection.sender, rejection.membership) == (dave["user_id"], "leave")
    assert await fed_hs.event_store.get_membership(room.room_id, dave["user_id"]) == ("leave", rejection.event_id)


async def test_a_remote_invite_is_accepted_by_joining_through_the_inviting_server(fed_hs, ca, make_remote):
    room = await resident(make_remote, join_rule="invite")
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    invite = room.send("m.room.member", {"membership": "invite"}, state_key=dave["user_id"])
    ingestor = fed_hs.federation_transport.ingestor(fed_hs.event_store, fed_hs.room_heads, fed_hs.persister)
    await ingestor.persist_out_of_band_membership(invite)
    status, body = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/rooms/{quote(room.room_id)}/join",
                              dave["access_token"], {})
    assert (status, body) == (200, {"room_id": room.room_id})
    synced = await sync_room(fed_hs, ca, dave["access_token"], room.room_id)
    assert any(e["type"] == "m.room.name" for e in synced["state"]["events"])


async def test_deactivating_a_user_withdraws_their_knock_on_a_remote_room(fed_hs, ca, make_remote):
    room = await resident(make_remote, join_rule="knock")
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    status, _ = await call(fed_hs, ca, "POST", f"/_matrix/client/v3/knock/{quote(room.room_id, safe='')}",
                           dave["access_token"], {}, [("via", room.remote.server_name)])
    assert status == 200
    status, body = await call(fed_hs, ca, "POST", "/_matrix/client/v3/account/deactivate", dave["access_token"],
                              {"auth": {"type": "m.login.password", "password": "correct horse",
                                        "identifier": {"type": "m.id.user", "user": dave["user_id"]}}})
    assert status == 200, body
    leave = room.events[room.extremities[0]]
    assert (leave.sender, leave.membership) == (dave["user_id"], "leave")


async def test_create_room_invites_a_remote_user_through_their_server(fed_hs, ca, make_remote):
    room = await resident(make_remote)
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    bob = room.user("bob")
    status, body = await call(fed_hs, ca, "POST", "/_matrix/client/v3/createRoom", dave["access_token"],
                              {"invite": [bob], "is_direct": True, "preset": "trusted_private_chat"})
    assert status == 200, body
    [sent] = room.invites  # the invitee's server was asked to countersign (invite v2)
    assert sent["event"]["content"]["is_direct"] is True
    _, invite_id = await fed_hs.event_store.get_membership(body["room_id"], bob)
    invite = await fed_hs.event_store.get_event(invite_id)
    assert invite.membership == "invite" and invite.content.get("is_direct") is True
    verify_event_signature(invite.pdu, invite.room_version, room.remote.server_name,
                           get_verify_key(room.remote.signing_key))
