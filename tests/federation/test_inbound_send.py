"""Inbound `PUT /send/{txnId}` from a fake remote server that joined our room: each check on receipt of
a PDU in the spec's order, per-PDU results, gaps, unknown state, forks and replayed transactions."""

from __future__ import annotations

from homeserver.events.signing import generate_signing_key, sign_event
from tests.federation.resident import (
    client_call,
    current_state,
    local_room,
    q,
    remote_joins,
    send_message,
    send_transaction,
    timeline_bodies,
)


def text(body: str) -> dict:
    return {"msgtype": "m.text", "body": body}


async def joined(fed_hs, ca, room_remote, **create):
    view, remote = room_remote
    alice, room_id = await local_room(fed_hs, ca, **create)
    await remote_joins(fed_hs, remote, view, room_id)
    return view, remote, alice, room_id


async def local_state(fed_hs, ca, user, room_id, event_type, content, state_key=""):
    status, body = await client_call(fed_hs, ca, user["access_token"], "PUT",
                                     f"/_matrix/client/v3/rooms/{q(room_id)}/state/{event_type}/{q(state_key)}",
                                     content)
    assert status == 200, body
    return body["event_id"]


async def learn_local_event(fed_hs, view, event_id):
    """The remote learns an event of ours (as if our server had sent it)."""
    event = await fed_hs.event_store.get_event(event_id)
    view.apply(dict(event.pdu))


async def test_a_message_is_accepted_and_the_next_local_event_builds_on_it(fed_hs, ca, room_remote):
    view, remote, alice, room_id = await joined(fed_hs, ca, room_remote)
    msg = view.build("bob", "m.room.message", text("one"))
    view.apply(msg)
    status, body = await send_transaction(fed_hs, remote, [msg])
    assert (status, body) == (200, {"pdus": {view.event_id(msg): {}}})
    local_id = await send_message(fed_hs, ca, alice["access_token"], room_id, "two")
    local = await fed_hs.event_store.get_event(local_id)
    assert local.prev_event_ids == [view.event_id(msg)]
    assert await timeline_bodies(fed_hs, ca, alice["access_token"], room_id) == [
        (view.user("bob"), "one"), (alice["user_id"], "two")]


async def test_a_forged_signature_is_an_error_and_nothing_is_stored(fed_hs, ca, room_remote):
    view, remote, alice, room_id = await joined(fed_hs, ca, room_remote)
    msg = view.build("bob", "m.room.message", text("forged"), sign=False)
    msg = sign_event(msg, view.room_version, remote.server_name, generate_signing_key(remote.signing_key.version))
    status, body = await send_transaction(fed_hs, remote, [msg])
    assert status == 200
    assert "signature" in body["pdus"][view.event_id(msg)]["error"]
    assert await fed_hs.event_store.get_event(view.event_id(msg)) is None


async def test_a_pdu_of_a_user_of_another_server_unsigned_by_it_is_an_error(fed_hs, ca, room_remote):
    view, remote, alice, room_id = await joined(fed_hs, ca, room_remote)
    msg = view.build("bob", "m.room.message", text("not mine"), sign=False)
    msg["sender"] = "@mallory:elsewhere.example"
    from homeserver.events.hashing import add_content_hash

    msg = sign_event(add_content_hash({k: v for k, v in msg.items() if k != "hashes"}), view.room_version,
                     remote.server_name, remote.signing_key)
    status, body = await send_transaction(fed_hs, remote, [msg])
    assert status == 200
    assert "elsewhere.example" in body["pdus"][view.event_id(msg)]["error"]
    assert await fed_hs.event_store.get_event(view.event_id(msg)) is None


async def test_a_transaction_claiming_another_origin_is_refused(fed_hs, ca, room_remote):
    view, remote, alice, room_id = await joined(fed_hs, ca, room_remote)
    msg = view.build("bob", "m.room.message", text("x"))
    status, body = await send_transaction(fed_hs, remote, [msg], origin="other.example")
    assert status == 403 and body["errcode"] == "M_FORBIDDEN" and "origin" in body["error"]
    assert await fed_hs.event_store.get_event(view.event_id(msg)) is None


async def test_a_bad_content_hash_keeps_the_redacted_event(fed_hs, ca, room_remote):
    view, remote, alice, room_id = await joined(fed_hs, ca, room_remote)
    msg = view.build("bob", "m.room.message", text("original"))
    tampered = {**msg, "content": text("tampered")}  # signatures cover the redacted form: still valid
    view.apply(tampered)
    status, body = await send_transaction(fed_hs, remote, [tampered])
    assert status == 200 and body["pdus"] == {view.event_id(tampered): {}}
    stored = await fed_hs.event_store.get_event(view.event_id(tampered))
    assert stored is not None and dict(stored.content) == {}
    assert (view.user("bob"), "tampered") not in await timeline_bodies(fed_hs, ca, alice["access_token"], room_id)


async def test_an_event_its_auth_events_do_not_allow_is_stored_rejected(fed_hs, ca, room_remote):
    view, remote, alice, room_id = await joined(fed_hs, ca, room_remote)
    rename = view.build("bob", "m.room.name", {"name": "Bob's room now"}, state_key="")
    view.apply(rename)
    status, body = await send_transaction(fed_hs, remote, [rename])
    assert status == 200
    assert body["pdus"][view.event_id(rename)]["error"].startswith("rejected: not allowed by its auth events")
    stored = await fed_hs.event_store.get_event(view.event_id(rename))
    assert stored is not None and stored.rejected_reason is not None
    assert ("m.room.name", "") not in await current_state(fed_hs, ca, alice["access_token"], room_id)
    assert view.event_id(rename) not in await fed_hs.event_store.get_forward_extremities(room_id)


async def test_an_event_the_state_before_it_does_not_allow_is_stored_rejected(fed_hs, ca, room_remote):
    view, remote, alice, room_id = await joined(fed_hs, ca, room_remote)
    bob = view.user("bob")
    status, body = await client_call(fed_hs, ca, alice["access_token"], "POST",
                                     f"/_matrix/client/v3/rooms/{q(room_id)}/ban", {"user_id": bob})
    assert status == 200, body
    before_ban = dict(view.state)
    ban_id = (await current_state(fed_hs, ca, alice["access_token"], room_id))[("m.room.member", bob)]["event_id"]
    await learn_local_event(fed_hs, view, ban_id)
    # Built after the ban, but citing bob's join as its auth event.
    msg = view.build("bob", "m.room.message", text("after my ban"), auth_state=before_ban)
    view.apply(msg)
    status, body = await send_transaction(fed_hs, remote, [msg])
    assert status == 200
    assert body["pdus"][view.event_id(msg)]["error"].startswith("rejected: not allowed by the state before it")
    stored = await fed_hs.event_store.get_event(view.event_id(msg))
    assert stored.rejected_reason is not None
    assert (bob, "after my ban") not in await timeline_bodies(fed_hs, ca, alice["access_token"], room_id)


async def test_an_event_current_state_does_not_allow_is_soft_failed(fed_hs, ca, room_remote):
    view, remote, alice, room_id = await joined(fed_hs, ca, room_remote)
    bob = view.user("bob")
    # The remote has not heard of the ban: its event builds on bob's join.
    status, body = await client_call(fed_hs, ca, alice["access_token"], "POST",
                                     f"/_matrix/client/v3/rooms/{q(room_id)}/ban", {"user_id": bob})
    assert status == 200, body
    msg = view.build("bob", "m.room.message", text("sneaky"))
    view.apply(msg)
    status, body = await send_transaction(fed_hs, remote, [msg])
    assert (status, body) == (200, {"pdus": {view.event_id(msg): {}}})  # soft failure is silent
    stored = await fed_hs.event_store.get_event(view.event_id(msg))
    assert stored is not None and stored.rejected_reason is None
    assert stored.internal_metadata.get("soft_failed") is True
    assert view.event_id(msg) not in await fed_hs.event_store.get_forward_extremities(room_id)
    assert (bob, "sneaky") not in await timeline_bodies(fed_hs, ca, alice["access_token"], room_id)
    local = await fed_hs.event_store.get_event(await send_message(fed_hs, ca, alice["access_token"], room_id, "ok"))
    assert view.event_id(msg) not in local.prev_event_ids
    state = await current_state(fed_hs, ca, alice["access_token"], room_id)
    assert state[("m.room.member", bob)]["content"]["membership"] == "ban"


async def test_a_gap_is_filled_with_get_missing_events(fed_hs, ca, room_remote):
    view, remote, alice, room_id = await joined(fed_hs, ca, room_remote)
    pdus = []
    for n in range(1, 5):
        pdu = view.build("bob", "m.room.message", text(f"m{n}"))
        view.apply(pdu)
        pdus.append(pdu)
    status, body = await send_transaction(fed_hs, remote, [pdus[-1]])
    assert (status, body) == (200, {"pdus": {view.event_id(pdus[-1]): {}}})
    assert view.missing_events_requests == 1 and view.state_ids_requests == 0
    bodies = [b for s, b in await timeline_bodies(fed_hs, ca, alice["access_token"], room_id)]
    assert bodies == ["m1", "m2", "m3", "m4"]
    assert await fed_hs.event_store.get_forward_extremities(room_id) == [view.event_id(pdus[-1])]


async def test_unknown_state_at_a_prev_event_is_fetched_with_state_ids(fed_hs, ca, room_remote):
    view, remote, alice, room_id = await joined(fed_hs, ca, room_remote)
    topic_power = view.build("bob", "m.room.message", text("hidden"))
    view.apply(topic_power)
    view.hidden.add(view.event_id(topic_power))  # get_missing_events will not return it
    msg = view.build("bob", "m.room.message", text("visible"))
    view.apply(msg)
    status, body = await send_transaction(fed_hs, remote, [msg])
    assert (status, body) == (200, {"pdus": {view.event_id(msg): {}}})
    assert view.state_ids_requests == 1
    hidden = await fed_hs.event_store.get_event(view.event_id(topic_power))
    assert hidden is not None and hidden.internal_metadata["outlier"] is True
    bodies = [b for s, b in await timeline_bodies(fed_hs, ca, alice["access_token"], room_id)]
    assert bodies == ["visible"]


async def test_a_remote_fork_is_resolved_by_state_resolution(fed_hs, ca, room_remote):
    view, remote, alice, room_id = await joined(fed_hs, ca, room_remote)
    bob = view.user("bob")
    state = await current_state(fed_hs, ca, alice["access_token"], room_id)
    levels = dict(state[("m.room.power_levels", "")]["content"])
    levels["users"] = {**levels.get("users", {}), bob: 100}
    power_id = await local_state(fed_hs, ca, alice, room_id, "m.room.power_levels", levels)
    await learn_local_event(fed_hs, view, power_id)
    ours = await local_state(fed_hs, ca, alice, room_id, "m.room.name", {"name": "Ours"})
    theirs = view.build("bob", "m.room.name", {"name": "Theirs"}, state_key="")  # concurrent: prev = power
    view.apply(theirs)
    status, body = await send_transaction(fed_hs, remote, [theirs])
    assert (status, body) == (200, {"pdus": {view.event_id(theirs): {}}})
    assert sorted(await fed_hs.event_store.get_forward_extremities(room_id)) == sorted([ours, view.event_id(theirs)])
    # Same power on both sides: the later event wins the name.
    state = await current_state(fed_hs, ca, alice["access_token"], room_id)
    assert state[("m.room.name", "")]["content"]["name"] == "Theirs"
    local = await fed_hs.event_store.get_event(await send_message(fed_hs, ca, alice["access_token"], room_id, "x"))
    assert sorted(local.prev_event_ids) == sorted([ours, view.event_id(theirs)])
    assert await fed_hs.event_store.get_forward_extremities(room_id) == [local.event_id]


async def test_a_replayed_transaction_gets_the_same_answer_and_stores_nothing_twice(fed_hs, ca, room_remote):
    view, remote, alice, room_id = await joined(fed_hs, ca, room_remote)
    msg = view.build("bob", "m.room.message", text("once"))
    view.apply(msg)
    first = await send_transaction(fed_hs, remote, [msg], txn_id="replayed")
    position = await fed_hs.event_store.current_stream_position()
    again = await send_transaction(fed_hs, remote, [msg], txn_id="replayed")
    other = view.build("bob", "m.room.message", text("smuggled"))
    different = await send_transaction(fed_hs, remote, [other], txn_id="replayed")
    assert first == again == different == (200, {"pdus": {view.event_id(msg): {}}})
    assert await fed_hs.event_store.current_stream_position() == position
    assert await fed_hs.event_store.get_event(view.event_id(other)) is None
    bodies = [b for s, b in await timeline_bodies(fed_hs, ca, alice["access_token"], room_id)]
    assert bodies == ["once"]


async def test_each_pdu_gets_its_own_result(fed_hs, ca, room_remote):
    view, remote, alice, room_id = await joined(fed_hs, ca, room_remote)
    good = view.build("bob", "m.room.message", text("good"))
    view.apply(good)
    unsigned = {**view.build("bob", "m.room.message", text("unsigned"), sign=False), "signatures": {}}
    elsewhere = {**view.build("bob", "m.room.message", text("lost")), "room_id": "!unknown:example.org"}
    huge = view.build("bob", "m.room.message", text("x" * 70_000))
    status, body = await send_transaction(fed_hs, remote, [good, unsigned, elsewhere, huge],
                                          edus=[{"edu_type": "m.typing", "content": {"room_id": room_id}}, 1, "x",
                                                {"edu_type": "m.presence"}])
    assert status == 200
    results = body["pdus"]
    assert results[view.event_id(good)] == {}
    assert "not signed" in results[view.event_id(unsigned)]["error"]
    assert "not in room" in results[view.event_id(elsewhere)]["error"]
    assert "65536" in results[view.event_id(huge)]["error"]
    assert await fed_hs.event_store.get_event(view.event_id(huge)) is None


async def test_a_transaction_over_the_pdu_limit_is_refused(fed_hs, ca, room_remote):
    view, remote, alice, room_id = await joined(fed_hs, ca, room_remote)
    pdus = [view.build("bob", "m.room.message", text(str(n))) for n in range(51)]
    status, body = await send_transaction(fed_hs, remote, pdus)
    assert status == 400 and body["errcode"] == "M_BAD_JSON" and "pdus" in body["error"]


async def test_the_rooms_server_acl_denies_the_origins_pdus_and_joins(fed_hs, ca, room_remote):
    view, remote, alice, room_id = await joined(fed_hs, ca, room_remote)
    await local_state(fed_hs, ca, alice, room_id, "m.room.server_acl",
                      {"allow": ["*"], "deny": [], "allow_ip_literals": False})
    msg = view.build("bob", "m.room.message", text("denied"))
    status, body = await send_transaction(fed_hs, remote, [msg])
    assert status == 200 and "server ACL" in body["pdus"][view.event_id(msg)]["error"]
    from tests.federation.resident import V1, VERSIONS, fed_request

    status, body = await fed_request(fed_hs, remote, "GET",
                                     f"{V1}/make_join/{q(room_id)}/{q(view.user('carl'))}?{VERSIONS}")
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"


async def test_a_restricted_join_naming_our_user_without_our_signature_is_an_error(fed_hs, ca, room_remote):
    view, remote = room_remote
    alice, space_id = await local_room(fed_hs, ca, localpart="alice")
    carol, room_id = await local_room(
        fed_hs, ca, localpart="carol", room_version="10", preset="private_chat",
        initial_state=[{"type": "m.room.join_rules", "state_key": "",
                        "content": {"join_rule": "restricted",
                                    "allow": [{"type": "m.room_membership", "room_id": space_id}]}}])
    await remote_joins(fed_hs, remote, view, space_id)
    # A second user of the remote joins the restricted room through the remote alone, naming carol.
    from homeserver.events.room_versions import get_room_version
    from tests.support.fake_room import RemoteRoomView

    restricted = RemoteRoomView()
    restricted.remote = remote
    restricted.room_version = get_room_version("10")
    restricted.room_id = room_id
    state = await fed_hs.event_store.get_current_state_ids(room_id)
    for event_id in state.values():
        restricted.events[event_id] = dict((await fed_hs.event_store.get_event(event_id)).pdu)
    restricted.state = dict(state)
    restricted.extremities = await fed_hs.event_store.get_forward_extremities(room_id)
    restricted.depth = max(restricted.events[e]["depth"] for e in restricted.extremities)
    join = restricted.build("bob", "m.room.member", {"membership": "join",
                                                    "join_authorised_via_users_server": carol["user_id"]},
                            state_key=restricted.user("bob"))
    status, body = await send_transaction(fed_hs, remote, [join])
    assert status == 200
    assert f"not signed by {fed_hs.config.server_name}" in body["pdus"][restricted.event_id(join)]["error"]
    assert await fed_hs.event_store.get_event(restricted.event_id(join)) is None


async def test_stored_answers_are_replayed_until_pruned(fed_hs, ca, room_remote):
    from storage.stores.federation_inbound import ReceivedTransactionStore

    view, remote, alice, room_id = await joined(fed_hs, ca, room_remote)
    msg = view.build("bob", "m.room.message", text("kept"))
    view.apply(msg)
    await send_transaction(fed_hs, remote, [msg], txn_id="old")
    store = ReceivedTransactionStore(fed_hs.db)
    assert await store.get_response(remote.server_name, "old") == {"pdus": {view.event_id(msg): {}}}
    assert await store.prune(0) == 0
    assert await store.prune(2**62) == 1
    assert await store.get_response(remote.server_name, "old") is None
