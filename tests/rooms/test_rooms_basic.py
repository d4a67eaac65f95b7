"""Creating rooms, membership and sending events through the client API."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support.rooms import new_user


async def test_a_created_room_has_the_preset_state_and_the_creator_joined(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room(name="Huiskamer", topic="Gezellig")
    state = await alice.call("GET", f"/rooms/{room_id}/state")
    types = {(e["type"], e["state_key"]) for e in state}
    assert ("m.room.create", "") in types and ("m.room.member", alice.user_id) in types
    assert ("m.room.join_rules", "") in types and ("m.room.power_levels", "") in types
    name = await alice.call("GET", f"/rooms/{room_id}/state/m.room.name/")
    assert name == {"name": "Huiskamer"}
    assert (await alice.call("GET", "/joined_rooms"))["joined_rooms"] == [room_id]


@pytest.mark.parametrize("version", ["1", "3", "10", "11", "12"])
async def test_rooms_of_each_version_take_messages(client, version):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room(room_version=version)
    event_id = await alice.send(room_id, "hoi")
    event = await alice.call("GET", f"/rooms/{room_id}/event/{event_id}")
    assert event["content"]["body"] == "hoi" and event["sender"] == alice.user_id


async def test_unknown_room_versions_are_refused(client):
    alice = await new_user(client, "alice")
    body = await alice.call("POST", "/createRoom", {"room_version": "99"}, expect=400)
    assert body["errcode"] == "M_UNSUPPORTED_ROOM_VERSION"


async def test_invite_join_leave_and_the_auth_rules_in_between(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="private_chat")
    denied = await bob.call("POST", f"/join/{room_id}", {}, expect=403)
    assert denied["errcode"] == "M_FORBIDDEN"
    await alice.call("POST", f"/rooms/{room_id}/invite", {"user_id": bob.user_id})
    await bob.join(room_id)
    members = await alice.call("GET", f"/rooms/{room_id}/joined_members")
    assert set(members["joined"]) == {alice.user_id, bob.user_id}
    await bob.send(room_id, "dank je")
    await bob.call("POST", f"/rooms/{room_id}/leave", {})
    forbidden = await bob.call("PUT", f"/rooms/{room_id}/send/m.room.message/x1", {"body": "x", "msgtype": "m.text"},
                               expect=403)
    assert forbidden["errcode"] == "M_FORBIDDEN"


async def test_a_repeated_transaction_id_returns_the_same_event(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    path = f"/rooms/{room_id}/send/m.room.message/same-txn"
    first = await alice.call("PUT", path, {"msgtype": "m.text", "body": "once"})
    second = await alice.call("PUT", path, {"msgtype": "m.text", "body": "once"})
    assert first == second


async def test_the_legacy_post_send_without_a_transaction_id_sends_each_time(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    path = f"/rooms/{room_id}/send/m.room.message"
    first = await alice.call("POST", path, {"msgtype": "m.text", "body": "again"})
    second = await alice.call("POST", path, {"msgtype": "m.text", "body": "again"})
    assert first["event_id"] != second["event_id"]
    event = await alice.call("GET", f"/rooms/{room_id}/event/{second['event_id']}")
    assert event["content"] == {"msgtype": "m.text", "body": "again"} and "transaction_id" not in event["unsigned"]


@pytest.mark.parametrize("room_id", ["!abc:localhost%0A", "!abc%0A:localhost", "not-a-room"])
async def test_room_ids_with_a_newline_or_no_sigil_are_m_invalid_param(client, room_id):
    alice = await new_user(client, "alice")
    body = await alice.call("GET", f"/rooms/{room_id}/state", expect=400)
    assert body["errcode"] == "M_INVALID_PARAM"


async def test_redacted_events_are_served_with_empty_content_and_redacted_because(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    event_id = await alice.send(room_id, "oops")
    redaction = await alice.call("PUT", f"/rooms/{room_id}/redact/{event_id}/r1", {"reason": "typo"})
    event = await alice.call("GET", f"/rooms/{room_id}/event/{event_id}")
    assert event["content"] == {}
    assert event["unsigned"]["redacted_because"]["event_id"] == redaction["event_id"]


async def test_others_events_need_the_redact_power(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    event_id = await alice.send(room_id, "mine")
    body = await bob.call("PUT", f"/rooms/{room_id}/redact/{event_id}/r1", {}, expect=403)
    assert body["errcode"] == "M_FORBIDDEN"
    bob_event = await bob.send(room_id, "bob's")
    await alice.call("PUT", f"/rooms/{room_id}/redact/{bob_event}/r2", {})


async def test_state_changes_show_prev_content(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room(name="one")
    await alice.call("PUT", f"/rooms/{room_id}/state/m.room.name/", {"name": "two"})
    event = await alice.call("GET", f"/rooms/{room_id}/state/m.room.name/", format="event")
    assert event["content"] == {"name": "two"}
    assert event["unsigned"]["prev_content"] == {"name": "one"}


async def test_profile_changes_reach_member_events(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    await alice.call("PUT", f"/profile/{alice.user_id}/displayname", {"displayname": "Alies"})
    member = await alice.call("GET", f"/rooms/{room_id}/state/m.room.member/{alice.user_id}")
    assert member["displayname"] == "Alies"


async def test_room_aliases_from_create_room_resolve_for_joins(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat", room_alias_name="woonkamer")
    server = alice.user_id.split(":", 1)[1]
    joined = await bob.call("POST", f"/join/%23woonkamer:{server}", {})
    assert joined["room_id"] == room_id
    again = await alice.call("POST", "/createRoom", {"room_alias_name": "woonkamer"}, expect=400)
    assert again["errcode"] == "M_ROOM_IN_USE"


async def test_members_filters_by_membership(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(invite=[bob.user_id])
    invited = await alice.call("GET", f"/rooms/{room_id}/members", membership="invite")
    assert [e["state_key"] for e in invited["chunk"]] == [bob.user_id]
    not_invited = await alice.call("GET", f"/rooms/{room_id}/members", not_membership="invite")
    assert [e["state_key"] for e in not_invited["chunk"]] == [alice.user_id]


async def test_an_upgrade_tombstones_the_old_room_and_carries_state_and_aliases(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    old = await alice.create_room(preset="public_chat", name="Oud", room_version="10", room_alias_name="kamer")
    await bob.join(old)
    denied = await bob.call("POST", f"/rooms/{old}/upgrade", {"new_version": "11"}, expect=403)
    assert denied["errcode"] == "M_FORBIDDEN"
    new = (await alice.call("POST", f"/rooms/{old}/upgrade", {"new_version": "12"}))["replacement_room"]
    tombstone = await alice.call("GET", f"/rooms/{old}/state/m.room.tombstone/")
    assert tombstone["replacement_room"] == new
    create = await alice.call("GET", f"/rooms/{new}/state/m.room.create/")
    assert create["predecessor"]["room_id"] == old and create["room_version"] == "12"
    assert (await alice.call("GET", f"/rooms/{new}/state/m.room.name/")) == {"name": "Oud"}
    server = alice.user_id.split(":", 1)[1]
    resolved = await alice.call("GET", f"/directory/room/%23kamer:{server}")
    assert resolved["room_id"] == new
    # Ordinary members can no longer talk in the old room.
    await bob.call("PUT", f"/rooms/{old}/send/m.room.message/t1", {"msgtype": "m.text", "body": "x"}, expect=403)
    await bob.join(new)


async def test_an_upgrade_copies_the_state_synapse_copies_and_the_private_chat_defaults(client):
    alice, bob, carol = (await new_user(client, "alice"), await new_user(client, "bob"),
                         await new_user(client, "carol"))
    old = await alice.create_room(preset="public_chat", name="Oud", topic="Praat", room_version="10")
    await bob.join(old)
    copied = {
        "m.room.avatar": {"url": "mxc://example.org/avatar"},
        "m.room.encryption": {"algorithm": "m.megolm.v1.aes-sha2"},
        "m.room.server_acl": {"allow": ["*"], "deny": ["evil.example"], "allow_ip_literals": False},
        "m.room.history_visibility": {"history_visibility": "joined"},
    }
    for event_type, content in copied.items():
        await alice.call("PUT", f"/rooms/{old}/state/{event_type}/", content)
    await alice.call("POST", f"/rooms/{old}/ban", {"user_id": carol.user_id, "reason": "spam"})
    new = (await alice.call("POST", f"/rooms/{old}/upgrade", {"new_version": "11"}))["replacement_room"]
    for event_type, content in copied.items():
        assert await alice.call("GET", f"/rooms/{new}/state/{event_type}/") == content, event_type
    assert (await alice.call("GET", f"/rooms/{new}/state/m.room.topic/"))["topic"] == "Praat"
    assert await alice.call("GET", f"/rooms/{new}/state/m.room.join_rules/") == {"join_rule": "public"}
    # The old room had no guest access event: the new one gets private_chat's, as in Synapse.
    assert await alice.call("GET", f"/rooms/{new}/state/m.room.guest_access/") == {"guest_access": "can_join"}
    ban = await alice.call("GET", f"/rooms/{new}/state/m.room.member/{carol.user_id}")
    assert ban == {"membership": "ban", "reason": "spam"}
    await carol.call("POST", f"/join/{new}", {}, expect=403)


async def test_an_upgrade_of_a_space_copies_its_children(client):
    alice = await new_user(client, "alice")
    space = await alice.create_room(creation_content={"type": "m.space"})
    child = await alice.create_room()
    await alice.call("PUT", f"/rooms/{space}/state/m.space.child/{child}", {"via": ["example.org"]})
    new = (await alice.call("POST", f"/rooms/{space}/upgrade", {"new_version": "11"}))["replacement_room"]
    assert (await alice.call("GET", f"/rooms/{new}/state/m.room.create/"))["type"] == "m.space"
    assert await alice.call("GET", f"/rooms/{new}/state/m.space.child/{child}") == {"via": ["example.org"]}


async def test_an_upgrade_carries_members_tags_direct_rooms_push_rules_and_the_directory_entry(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    old = await alice.create_room(preset="public_chat", visibility="public")
    await bob.join(old)
    await bob.call("PUT", f"/user/{bob.user_id}/rooms/{old}/tags/m.favourite", {"order": 0.5})
    await bob.call("PUT", f"/user/{bob.user_id}/account_data/m.direct", {alice.user_id: [old]})
    await bob.call("PUT", f"/pushrules/global/room/{old}", {"actions": []})
    quiet = {"conditions": [{"kind": "event_match", "key": "room_id", "pattern": old}], "actions": []}
    await bob.call("PUT", f"/pushrules/global/override/quiet-{old}", quiet)
    new = (await alice.call("POST", f"/rooms/{old}/upgrade", {"new_version": "11"}))["replacement_room"]
    tags = await bob.call("GET", f"/user/{bob.user_id}/rooms/{new}/tags")
    assert tags == {"tags": {"m.favourite": {"order": 0.5}}}
    assert await bob.call("GET", f"/user/{bob.user_id}/account_data/m.direct") == {alice.user_id: [old, new]}
    room_rule = await bob.call("GET", f"/pushrules/global/room/{new}")
    assert room_rule["rule_id"] == new and room_rule["actions"] == []
    override = await bob.call("GET", f"/pushrules/global/override/quiet-{new}")
    assert override["conditions"] == [{"kind": "event_match", "key": "room_id", "pattern": new}]
    assert (await alice.call("GET", f"/directory/list/room/{new}"))["visibility"] == "public"
    assert (await alice.call("GET", f"/directory/list/room/{old}"))["visibility"] == "private"


async def test_aliases_can_be_created_resolved_and_deleted(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room()
    server = alice.user_id.split(":", 1)[1]
    alias = f"%23speelhoek:{server}"
    missing = await alice.call("GET", f"/directory/room/{alias}", expect=404)
    assert missing["errcode"] == "M_NOT_FOUND"
    await alice.call("PUT", f"/directory/room/{alias}", {"room_id": room_id})
    assert (await alice.call("PUT", f"/directory/room/{alias}", {"room_id": room_id}, expect=409))["errcode"]
    assert (await bob.call("GET", f"/directory/room/{alias}"))["room_id"] == room_id
    assert (await alice.call("GET", f"/rooms/{room_id}/aliases"))["aliases"] == [f"#speelhoek:{server}"]
    await bob.call("DELETE", f"/directory/room/{alias}", expect=403)
    await alice.call("DELETE", f"/directory/room/{alias}")
    await alice.call("GET", f"/directory/room/{alias}", expect=404)
    bad = await alice.call("PUT", "/directory/room/notanalias", {"room_id": room_id}, expect=400)
    assert bad["errcode"] == "M_INVALID_PARAM"


async def test_retrying_a_sent_transaction_does_not_count_against_the_message_limit(make_homeserver):
    server = await make_homeserver(rate_limits={"enabled": True, "message": {"per_second": 0.001, "burst_count": 3}})
    async with aiohttp.ClientSession(server.base_url()) as session:
        alice = await new_user(session, "alice")
        room_id = await alice.create_room()  # one token
        path = f"/rooms/{room_id}/send/m.room.message/retried"
        first = await alice.call("PUT", path, {"msgtype": "m.text", "body": "once"})  # two
        for _ in range(3):
            assert await alice.call("PUT", path, {"msgtype": "m.text", "body": "once"}) == first
        await alice.call("PUT", f"/rooms/{room_id}/send/m.room.message/new", {"msgtype": "m.text", "body": "x"})
        error = await alice.call("PUT", f"/rooms/{room_id}/send/m.room.message/newer",
                                 {"msgtype": "m.text", "body": "y"}, expect=429)
        assert error["errcode"] == "M_LIMIT_EXCEEDED"


async def test_joined_members_leaves_out_a_display_name_and_avatar_the_member_has_not(client):
    # The spec types both as strings: a member event without them must not answer null (the fuzz
    # test found it).
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    await alice.call("PUT", f"/rooms/{room_id}/state/m.room.member/{alice.user_id}", {"membership": "join"})
    members = await alice.call("GET", f"/rooms/{room_id}/joined_members")
    assert members["joined"] == {alice.user_id: {}}
