"""Our server as the resident server: a fake remote server's user joins, leaves and knocks on our rooms
through make_*/send_*, and the remote invites our user into its room."""

from __future__ import annotations

from tests.federation.resident import (
    V1,
    V2,
    VERSIONS,
    client_call,
    current_state,
    fed_request,
    local_room,
    q,
    remote_joins,
    timeline_bodies,
)


async def test_a_remote_user_joins_our_room_and_our_user_sees_the_join(fed_hs, ca, room_remote):
    view, remote = room_remote
    alice, room_id = await local_room(fed_hs, ca)
    answer = await remote_joins(fed_hs, remote, view, room_id)
    bob = view.user("bob")
    assert answer["origin"] == fed_hs.config.server_name
    state_keys = {(e["type"], e["state_key"]) for e in answer["state"]}
    assert ("m.room.create", "") in state_keys and ("m.room.member", alice["user_id"]) in state_keys
    assert ("m.room.member", bob) not in state_keys  # the state before the join
    chain_ids = [view.event_id(e) for e in answer["auth_chain"]]
    assert len(chain_ids) == len(set(chain_ids))  # each once (Synapse refuses a repeated create event)
    assert view.state[("m.room.create", "")] in chain_ids
    state = await current_state(fed_hs, ca, alice["access_token"], room_id)
    assert state[("m.room.member", bob)]["content"]["membership"] == "join"
    # Our next local event builds on the remote join.
    status, sent = await client_call(fed_hs, ca, alice["access_token"], "PUT",
                                     f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/t1",
                                     {"msgtype": "m.text", "body": "welcome"})
    assert status == 200, sent
    event = await fed_hs.event_store.get_event(sent["event_id"])
    assert event.prev_event_ids == [view.extremities[0]]


async def test_make_join_refuses_a_server_that_does_not_support_the_rooms_version(fed_hs, ca, room_remote):
    view, remote = room_remote
    _, room_id = await local_room(fed_hs, ca)
    status, body = await fed_request(fed_hs, remote, "GET",
                                     f"{V1}/make_join/{q(room_id)}/{q(view.user('bob'))}?ver=1&ver=2")
    assert status == 400
    assert body["errcode"] == "M_INCOMPATIBLE_ROOM_VERSION"
    assert body["room_version"] == fed_hs.config.default_room_version


async def test_make_join_for_another_servers_user_is_forbidden(fed_hs, ca, room_remote):
    _, remote = room_remote
    _, room_id = await local_room(fed_hs, ca)
    status, body = await fed_request(fed_hs, remote, "GET",
                                     f"{V1}/make_join/{q(room_id)}/{q('@bob:elsewhere.example')}?{VERSIONS}")
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"


async def test_make_join_for_a_room_we_are_not_in_is_not_found(fed_hs, ca, room_remote):
    view, remote = room_remote
    status, body = await fed_request(fed_hs, remote, "GET",
                                     f"{V1}/make_join/{q('!nope:example.org')}/{q(view.user('bob'))}?{VERSIONS}")
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"


async def test_a_remote_user_cannot_join_an_invite_only_room_uninvited(fed_hs, ca, room_remote):
    view, remote = room_remote
    _, room_id = await local_room(fed_hs, ca, preset="private_chat")
    status, body = await fed_request(fed_hs, remote, "GET",
                                     f"{V1}/make_join/{q(room_id)}/{q(view.user('bob'))}?{VERSIONS}")
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"


async def test_send_join_with_a_forged_signature_is_refused(fed_hs, ca, room_remote):
    from homeserver.events.room_versions import get_room_version
    from homeserver.events.signing import generate_signing_key, sign_event

    view, remote = room_remote
    _, room_id = await local_room(fed_hs, ca)
    bob = view.user("bob")
    status, made = await fed_request(fed_hs, remote, "GET", f"{V1}/make_join/{q(room_id)}/{q(bob)}?{VERSIONS}")
    assert status == 200
    version = get_room_version(made["room_version"])
    view.room_version = version
    join = view.sign_template(made["event"])
    forged = sign_event({k: v for k, v in join.items() if k != "signatures"}, version, remote.server_name,
                        generate_signing_key(remote.signing_key.version))
    status, body = await fed_request(fed_hs, remote, "PUT",
                                     f"{V2}/send_join/{q(room_id)}/{q(view.event_id(forged))}", forged)
    assert status == 403, body
    assert "signature" in body["error"]
    membership, _ = await fed_hs.event_store.get_membership(room_id, bob)
    assert membership is None


async def test_a_remote_user_leaves_through_make_leave_and_send_leave(fed_hs, ca, room_remote):
    view, remote = room_remote
    alice, room_id = await local_room(fed_hs, ca)
    await remote_joins(fed_hs, remote, view, room_id)
    bob = view.user("bob")
    status, made = await fed_request(fed_hs, remote, "GET", f"{V1}/make_leave/{q(room_id)}/{q(bob)}")
    assert status == 200, made
    assert made["event"]["content"]["membership"] == "leave"
    leave = view.sign_template(made["event"])
    status, body = await fed_request(fed_hs, remote, "PUT",
                                     f"{V2}/send_leave/{q(room_id)}/{q(view.event_id(leave))}", leave)
    assert (status, body) == (200, {})
    state = await current_state(fed_hs, ca, alice["access_token"], room_id)
    assert state[("m.room.member", bob)]["content"]["membership"] == "leave"


async def test_a_remote_user_knocks_on_our_knock_room(fed_hs, ca, room_remote):
    view, remote = room_remote
    alice, room_id = await local_room(fed_hs, ca, preset="private_chat", name="Knock here",
                                      initial_state=[{"type": "m.room.join_rules", "state_key": "",
                                                      "content": {"join_rule": "knock"}}])
    bob = view.user("bob")
    status, body = await fed_request(fed_hs, remote, "GET", f"{V1}/make_knock/{q(room_id)}/{q(bob)}")
    assert status == 400 and body["errcode"] == "M_INCOMPATIBLE_ROOM_VERSION"  # no ver given
    status, made = await fed_request(fed_hs, remote, "GET", f"{V1}/make_knock/{q(room_id)}/{q(bob)}?{VERSIONS}")
    assert status == 200, made
    from homeserver.events.room_versions import get_room_version

    view.room_version = get_room_version(made["room_version"])
    knock = view.sign_template(made["event"])
    status, body = await fed_request(fed_hs, remote, "PUT",
                                     f"{V1}/send_knock/{q(room_id)}/{q(view.event_id(knock))}", knock)
    assert status == 200, body
    stripped = {e["type"]: e for e in body["knock_room_state"]}
    assert stripped["m.room.name"]["content"]["name"] == "Knock here"
    assert stripped["m.room.join_rules"]["content"]["join_rule"] == "knock"
    state = await current_state(fed_hs, ca, alice["access_token"], room_id)
    assert state[("m.room.member", bob)]["content"]["membership"] == "knock"


async def test_a_restricted_join_is_authorised_and_signed_by_our_server(fed_hs, ca, room_remote):
    view, remote = room_remote
    alice, space_id = await local_room(fed_hs, ca, localpart="alice")
    _, room_id = await local_room(
        fed_hs, ca, localpart="carol", room_version="10", preset="private_chat",
        initial_state=[{"type": "m.room.join_rules", "state_key": "",
                        "content": {"join_rule": "restricted",
                                    "allow": [{"type": "m.room_membership", "room_id": space_id}]}}])
    bob = view.user("bob")
    # Not yet in the allowed room: refused.
    status, body = await fed_request(fed_hs, remote, "GET", f"{V1}/make_join/{q(room_id)}/{q(bob)}?{VERSIONS}")
    assert status == 403, body
    await remote_joins(fed_hs, remote, view, space_id)
    status, made = await fed_request(fed_hs, remote, "GET", f"{V1}/make_join/{q(room_id)}/{q(bob)}?{VERSIONS}")
    assert status == 200, made
    carol = f"@carol:{fed_hs.config.server_name}"
    assert made["event"]["content"]["join_authorised_via_users_server"] == carol
    from homeserver.events.room_versions import get_room_version

    view.room_version = get_room_version(made["room_version"])
    join = view.sign_template(made["event"])
    status, answer = await fed_request(fed_hs, remote, "PUT",
                                       f"{V2}/send_join/{q(room_id)}/{q(view.event_id(join))}", join)
    assert status == 200, answer
    assert set(answer["event"]["signatures"]) == {remote.server_name, fed_hs.config.server_name}
    membership, _ = await fed_hs.event_store.get_membership(room_id, bob)
    assert membership == "join"
    assert alice  # the space's creator stays joined


async def test_an_invite_of_our_user_is_signed_and_shows_in_their_sync(fed_hs, ca, room_remote):
    from homeserver.events.room_versions import get_room_version
    from tests.federation.helpers import user_with_displayname

    view, remote = room_remote
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    version = get_room_version("10")
    view.room_version = version
    view.room_id = f"!remote:{remote.server_name}"
    create = view.build("bob", "m.room.create", {"creator": view.user("bob"), "room_version": "10"}, state_key="",
                        prev_events=[], depth=1)
    view.apply(create)
    view.apply(view.build("bob", "m.room.member", {"membership": "join"}, state_key=view.user("bob")))
    view.apply(view.build("bob", "m.room.name", {"name": "Remote lounge"}, state_key=""))
    invite = view.build("bob", "m.room.member", {"membership": "invite"}, state_key=dave["user_id"])
    event_id = view.event_id(invite)
    stripped = [{"type": "m.room.name", "state_key": "", "sender": view.user("bob"),
                 "content": {"name": "Remote lounge"}}]
    status, answer = await fed_request(fed_hs, remote, "PUT", f"{V2}/invite/{q(view.room_id)}/{q(event_id)}",
                                       {"event": invite, "room_version": "10", "invite_room_state": stripped})
    assert status == 200, answer
    assert set(answer["event"]["signatures"]) == {remote.server_name, fed_hs.config.server_name}
    status, synced = await client_call(fed_hs, ca, dave["access_token"], "GET", "/_matrix/client/v3/sync")
    assert status == 200, synced
    invited = synced["rooms"]["invite"][view.room_id]["invite_state"]["events"]
    assert {"type": "m.room.name", "state_key": "", "sender": view.user("bob"),
            "content": {"name": "Remote lounge"}} in invited
    [member] = [e for e in invited if e["type"] == "m.room.member"]
    assert member["state_key"] == dave["user_id"] and member["content"]["membership"] == "invite"
    # An outlier: no timeline of the room, not readable as a joined room.
    assert view.room_id not in synced["rooms"].get("join", {})


async def test_an_invite_for_an_unsupported_room_version_is_refused(fed_hs, ca, room_remote):
    view, remote = room_remote
    status, body = await fed_request(fed_hs, remote, "PUT", f"{V2}/invite/{q('!r:x')}/{q('$e')}",
                                     {"event": {}, "room_version": "999", "invite_room_state": []})
    assert status == 400 and body["errcode"] == "M_INCOMPATIBLE_ROOM_VERSION"


async def test_our_user_sees_the_remote_users_messages_after_the_join(fed_hs, ca, room_remote):
    from tests.federation.resident import send_transaction

    view, remote = room_remote
    alice, room_id = await local_room(fed_hs, ca)
    await remote_joins(fed_hs, remote, view, room_id)
    msg = view.build("bob", "m.room.message", {"msgtype": "m.text", "body": "hoi from afar"})
    view.apply(msg)
    status, body = await send_transaction(fed_hs, remote, [msg])
    assert status == 200, body
    assert body["pdus"] == {view.event_id(msg): {}}
    assert (view.user("bob"), "hoi from afar") in await timeline_bodies(fed_hs, ca, alice["access_token"], room_id)


async def test_a_third_party_invite_is_exchanged_for_an_invite_signed_by_the_identity_server(fed_hs, ca, room_remote):
    from homeserver.events.signing import (
        encode_verify_key_base64,
        generate_signing_key,
        get_verify_key,
        sign_json,
    )

    view, remote = room_remote
    alice, room_id = await local_room(fed_hs, ca, preset="private_chat")
    identity_key = generate_signing_key("0")
    public_key = encode_verify_key_base64(get_verify_key(identity_key))
    status, body = await client_call(
        fed_hs, ca, alice["access_token"], "PUT",
        f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.third_party_invite/tok123",
        {"display_name": "b...@e...", "key_validity_url": "https://identity.example/isvalid",
         "public_key": public_key, "public_keys": [{"public_key": public_key}]})
    assert status == 200, body
    bob = view.user("bob")

    def exchange(signer):
        signed = sign_json({"mxid": bob, "token": "tok123"}, "identity.example", signer)
        return {"type": "m.room.member", "room_id": room_id, "sender": alice["user_id"], "state_key": bob,
                "content": {"membership": "invite",
                            "third_party_invite": {"display_name": "b...@e...", "signed": signed}}}

    uri = f"{V1}/exchange_third_party_invite/{q(room_id)}"
    status, body = await fed_request(fed_hs, remote, "PUT", uri, exchange(generate_signing_key("0")))
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"  # not the identity server's key
    status, body = await fed_request(fed_hs, remote, "PUT", uri, exchange(identity_key))
    assert (status, body) == (200, {})
    state = await current_state(fed_hs, ca, alice["access_token"], room_id)
    member = state[("m.room.member", bob)]
    assert member["content"]["membership"] == "invite" and member["sender"] == alice["user_id"]
    assert member["content"]["third_party_invite"]["signed"]["token"] == "tok123"
