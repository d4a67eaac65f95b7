"""Simplified sliding sync over HTTP against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.e2ee.helpers import upload_device_keys
from tests.support.rooms import User, new_user

PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


async def sliding(user: User, body: dict[str, Any], pos: str | None = None, expect: int = 200,
                  timeout: int | None = None) -> dict:
    params: dict[str, Any] = {}
    if pos is not None:
        params["pos"] = pos
    if timeout is not None:
        params["timeout"] = timeout
    return await user.call("POST", PATH, body, expect=expect, **params)


def room_list(ranges=((0, 19),), timeline_limit: int = 1, required_state=(), **extra: Any) -> dict:
    return {"ranges": [list(r) for r in ranges], "timeline_limit": timeline_limit,
            "required_state": [list(p) for p in required_state], **extra}


def bodies(room: dict) -> list[str]:
    return [e["content"].get("body") for e in room.get("timeline", []) if e["type"] == "m.room.message"]


def state_of(room: dict) -> set[tuple[str, str]]:
    return {(e["type"], e["state_key"]) for e in room.get("required_state", [])}


async def test_the_endpoint_is_advertised_in_versions(client):
    async with client.get("/_matrix/client/versions") as resp:
        body = await resp.json()
    assert body["unstable_features"]["org.matrix.simplified_msc3575"] is True


async def test_a_list_orders_rooms_by_recency_and_counts_them(client):
    alice = await new_user(client, "alice")
    rooms = [await alice.create_room(name=f"r{i}") for i in range(3)]
    await alice.send(rooms[0], "newest")
    body = await sliding(alice, {"lists": {"all": room_list(ranges=[(0, 1)])}})
    assert body["lists"]["all"]["count"] == 3
    assert set(body["rooms"]) == {rooms[0], rooms[2]}
    first, second = body["rooms"][rooms[0]], body["rooms"][rooms[2]]
    assert first["bump_stamp"] > second["bump_stamp"]
    assert bodies(first) == ["newest"]
    assert first["initial"] is True and first["name"] == "r0"
    assert first["joined_count"] == 1 and first["invited_count"] == 0
    assert first["notification_count"] == 0 and first["highlight_count"] == 0
    assert first["limited"] is True and first["prev_batch"]
    assert first["num_live"] == 0
    assert isinstance(body["pos"], str)


async def test_a_room_bumped_by_a_new_message_comes_back_alone_with_only_the_new_event(client):
    alice = await new_user(client, "alice")
    rooms = [await alice.create_room(name=f"r{i}") for i in range(3)]
    request = {"lists": {"all": room_list(ranges=[(0, 0)], timeline_limit=5)}}
    first = await sliding(alice, request)
    assert list(first["rooms"]) == [rooms[2]]
    await alice.send(rooms[0], "bump")
    second = await sliding(alice, request, pos=first["pos"])
    assert list(second["rooms"]) == [rooms[0]]
    bumped = second["rooms"][rooms[0]]
    assert bumped["initial"] is True  # first time this connection sees it
    assert bumped["bump_stamp"] > first["rooms"][rooms[2]]["bump_stamp"]
    await alice.send(rooms[0], "again")
    third = await sliding(alice, request, pos=second["pos"])
    room = third["rooms"][rooms[0]]
    assert bodies(room) == ["again"]
    assert "initial" not in room and room["limited"] is False and room["num_live"] == 1
    assert "required_state" not in room


async def test_an_incremental_response_without_news_has_no_rooms(client):
    alice = await new_user(client, "alice")
    await alice.create_room()
    request = {"lists": {"all": room_list()}}
    first = await sliding(alice, request)
    second = await sliding(alice, request, pos=first["pos"])
    assert second["rooms"] == {}
    assert second["lists"]["all"]["count"] == 1


async def test_a_room_that_left_the_window_is_caught_up_when_it_returns(client):
    alice = await new_user(client, "alice")
    old, new = await alice.create_room(), await alice.create_room()
    request = {"lists": {"top": room_list(ranges=[(0, 0)], timeline_limit=10)}}
    first = await sliding(alice, request)
    assert list(first["rooms"]) == [new]
    await alice.send(old, "one")
    second = await sliding(alice, request, pos=first["pos"])
    assert list(second["rooms"]) == [old]
    await alice.send(new, "two")   # new is back on top; old left the window
    third = await sliding(alice, request, pos=second["pos"])
    assert list(third["rooms"]) == [new]
    assert bodies(third["rooms"][new]) == ["two"]
    assert "initial" not in third["rooms"][new]
    await alice.send(old, "three")  # old returns: it gets what it missed, not a repeat
    fourth = await sliding(alice, request, pos=third["pos"])
    assert bodies(fourth["rooms"][old]) == ["three"]


async def test_an_unknown_position_is_rejected_with_m_unknown_pos_and_a_new_connection_recovers(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    request = {"lists": {"all": room_list()}}
    error = await sliding(alice, request, pos="nonsense", expect=400)
    assert error["errcode"] == "M_UNKNOWN_POS"
    first = await sliding(alice, request)
    other = await sliding(alice, {**request, "conn_id": "other"}, pos=first["pos"], expect=400)
    assert other["errcode"] == "M_UNKNOWN_POS"  # a position belongs to its connection
    again = await sliding(alice, request)
    assert again["rooms"][room_id]["initial"] is True
    error = await sliding(alice, request, pos=first["pos"], expect=400)  # replaced by the new connection
    assert error["errcode"] == "M_UNKNOWN_POS"


async def test_a_connection_continues_from_the_database_when_memory_has_forgotten_it(client, hs):
    alice = await new_user(client, "alice")
    bob = await new_user(client, "bob")
    room_id = await alice.create_room(name="talk", preset="public_chat")
    await bob.join(room_id)
    await bob.send(room_id, "hi")
    request = {"lists": {"all": room_list(timeline_limit=5, required_state=[("m.room.member", "$LAZY")])}}
    first = await sliding(alice, request)
    assert ("m.room.member", bob.user_id) in state_of(first["rooms"][room_id])
    await hs.sliding_sync.forget_cached_connections()
    await bob.send(room_id, "again")
    second = await sliding(alice, request, pos=first["pos"])
    room = second["rooms"][room_id]
    assert bodies(room) == ["again"] and "initial" not in room
    assert "required_state" not in room  # bob's member event was sent already, and that was remembered


async def test_a_connection_survives_a_restart_of_the_server(client, hs):
    alice = await new_user(client, "alice")
    bob = await new_user(client, "bob")
    talk = await alice.create_room(name="talk", preset="public_chat")
    quiet = await alice.create_room(name="quiet")
    await bob.join(talk)
    await bob.send(talk, "before")
    request = {"lists": {"top": room_list(ranges=[(0, 0)], timeline_limit=5,
                                          required_state=[("m.room.member", "$LAZY"), ("m.room.name", "")])}}
    first = await sliding(alice, request)
    assert list(first["rooms"]) == [talk]
    await alice.send(quiet, "quiet one")  # quiet takes the window
    second = await sliding(alice, request, pos=first["pos"])
    assert list(second["rooms"]) == [quiet]

    await hs.stop()
    await hs.start()  # fresh services on the same database: nothing in memory survives
    async with aiohttp.ClientSession(hs.base_url("client")) as session:
        alice.client = bob.client = session
        await bob.send(talk, "after")  # talk comes back into the window
        third = await sliding(alice, request, pos=second["pos"])
        assert list(third["rooms"]) == [talk]
        room = third["rooms"][talk]
        # Continued, not started over: only what it missed, no state the client has already.
        assert "initial" not in room and bodies(room) == ["after"]
        assert "required_state" not in room
        # The position the request used still works for a retry, across the restart too.
        retry = await sliding(alice, request, pos=second["pos"])
        assert bodies(retry["rooms"][talk]) == ["after"]
        fourth = await sliding(alice, request, pos=retry["pos"])
        assert fourth["rooms"] == {}


async def test_positions_of_connections_unused_for_a_week_are_pruned(client, hs):
    alice = await new_user(client, "alice")
    await alice.create_room()
    request = {"lists": {"all": room_list()}}
    old = await sliding(alice, request)
    recent = await sliding(alice, {**request, "conn_id": "recent"})
    assert await hs.sliding_sync.prune_connections() == 0
    now = hs.clock.time_ms()
    hs.clock.time_ms = lambda: now + 7 * 24 * 3600 * 1000 + 1000
    recent = await sliding(alice, {**request, "conn_id": "recent"}, pos=recent["pos"])
    assert await hs.sliding_sync.prune_connections() == 2  # the old connection's and recent's used one
    error = await sliding(alice, request, pos=old["pos"], expect=400)
    assert error["errcode"] == "M_UNKNOWN_POS"
    await hs.sliding_sync.forget_cached_connections()
    await sliding(alice, {**request, "conn_id": "recent"}, pos=recent["pos"])


async def test_a_position_can_be_retried_once_but_not_after_the_next_one_is_used(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    request = {"lists": {"all": room_list()}}
    first = await sliding(alice, request)
    await alice.send(room_id, "x")
    second = await sliding(alice, request, pos=first["pos"])
    retry = await sliding(alice, request, pos=first["pos"])
    assert bodies(retry["rooms"][room_id]) == bodies(second["rooms"][room_id]) == ["x"]
    await sliding(alice, request, pos=retry["pos"])
    error = await sliding(alice, request, pos=first["pos"], expect=400)
    assert error["errcode"] == "M_UNKNOWN_POS"


async def test_connections_are_kept_apart_by_conn_id(client):
    alice = await new_user(client, "alice")
    await alice.create_room()
    first = await sliding(alice, {"conn_id": "room-list", "lists": {"all": room_list()}})
    error = await sliding(alice, {"conn_id": "encryption", "lists": {}}, pos=first["pos"], expect=400)
    assert error["errcode"] == "M_UNKNOWN_POS"


async def test_a_long_poll_returns_when_a_message_arrives(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    request = {"lists": {"all": room_list()}}
    first = await sliding(bob, request)
    waiting = asyncio.create_task(sliding(bob, request, pos=first["pos"], timeout=60_000))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await alice.send(room_id, "wakker")
    body = await asyncio.wait_for(waiting, 30)
    assert bodies(body["rooms"][room_id]) == ["wakker"]
    assert body["rooms"][room_id]["num_live"] == 1


async def test_a_long_poll_without_news_returns_empty_after_the_timeout(client):
    alice = await new_user(client, "alice")
    await alice.create_room()
    request = {"lists": {"all": room_list()}}
    first = await sliding(alice, request)
    body = await sliding(alice, request, pos=first["pos"], timeout=200)
    assert body["rooms"] == {}
    assert body["pos"] != first["pos"]


async def test_required_state_takes_exact_keys_wildcards_and_me(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room(name="n", topic="t")
    exact = await sliding(alice, {"lists": {"a": room_list(required_state=[("m.room.topic", "")])}})
    assert state_of(exact["rooms"][room_id]) == {("m.room.topic", "")}
    me = await sliding(alice, {"lists": {"a": room_list(required_state=[("m.room.member", "$ME")])}})
    assert state_of(me["rooms"][room_id]) == {("m.room.member", alice.user_id)}
    by_type = await sliding(alice, {"lists": {"a": room_list(required_state=[("m.room.member", "*")])}})
    assert state_of(by_type["rooms"][room_id]) == {("m.room.member", alice.user_id)}
    everything = await sliding(alice, {"lists": {"a": room_list(required_state=[("*", "*")])}})
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.topic", ""),
            ("m.room.power_levels", "")} <= state_of(everything["rooms"][room_id])


async def test_lazy_members_are_those_of_timeline_senders_sent_once(client):
    alice, bob, carol = [await new_user(client, n) for n in ("alice", "bob", "carol")]
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await carol.join(room_id)
    await bob.send(room_id, "from bob")
    request = {"lists": {"a": room_list(timeline_limit=1, required_state=[("m.room.member", "$LAZY")])}}
    first = await sliding(alice, request)
    assert state_of(first["rooms"][room_id]) == {("m.room.member", bob.user_id)}
    await bob.send(room_id, "bob again")
    await carol.send(room_id, "carol")
    second = await sliding(alice, {"lists": {"a": {**request["lists"]["a"], "timeline_limit": 2}}},
                           pos=first["pos"])
    # bob's member event was already sent on this connection; carol's was not.
    assert ("m.room.member", carol.user_id) in state_of(second["rooms"][room_id])
    assert ("m.room.member", bob.user_id) not in state_of(second["rooms"][room_id])


async def test_required_state_narrowed_then_widened_again_is_sent_again(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room(topic="t")
    wide = {"lists": {"a": room_list(required_state=[("m.room.topic", "")])}}
    narrow = {"lists": {"a": room_list(required_state=[])}}
    first = await sliding(alice, wide)
    assert state_of(first["rooms"][room_id]) == {("m.room.topic", "")}
    second = await sliding(alice, narrow, pos=first["pos"])
    assert room_id not in second["rooms"]
    third = await sliding(alice, wide, pos=second["pos"])
    assert state_of(third["rooms"][room_id]) == {("m.room.topic", "")}
    assert "timeline" not in third["rooms"][room_id]  # nothing new to show there


async def test_a_state_change_in_required_state_is_sent_incrementally(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room(name="old")
    request = {"lists": {"a": room_list(required_state=[("m.room.name", "")])}}
    first = await sliding(alice, request)
    await alice.call("PUT", f"/rooms/{room_id}/state/m.room.name/", {"name": "new"})
    second = await sliding(alice, request, pos=first["pos"])
    room = second["rooms"][room_id]
    assert room["name"] == "new"
    assert [e["content"]["name"] for e in room["required_state"]] == ["new"]


async def test_filters_select_rooms_by_dm_encryption_invite_type_tags_and_space(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    plain = await alice.create_room()
    encrypted = await alice.create_room(initial_state=[
        {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    space = await alice.create_room(creation_content={"type": "m.space"})
    await alice.call("PUT", f"/rooms/{space}/state/m.space.child/{plain}", {"via": ["localhost"]})
    dm = await bob.create_room(invite=[alice.user_id], is_direct=True)
    await alice.call("PUT", f"/user/{alice.user_id}/account_data/m.direct", {bob.user_id: [dm]})
    await alice.call("PUT", f"/user/{alice.user_id}/rooms/{plain}/tags/m.favourite", {})

    async def rooms_for(filters: dict) -> set[str]:
        body = await sliding(alice, {"lists": {"f": room_list(ranges=[(0, 99)], timeline_limit=0,
                                                               filters=filters)}})
        assert body["lists"]["f"]["count"] == len(body["rooms"])
        return set(body["rooms"])

    assert await rooms_for({"is_dm": True}) == {dm}
    assert await rooms_for({"is_invite": True}) == {dm}
    assert await rooms_for({"is_invite": False}) == {plain, encrypted, space}
    assert await rooms_for({"is_encrypted": True}) == {encrypted}
    assert await rooms_for({"room_types": ["m.space"]}) == {space}
    assert await rooms_for({"not_room_types": ["m.space"], "is_invite": False}) == {plain, encrypted}
    assert await rooms_for({"room_types": [None], "is_dm": False}) == {plain, encrypted}
    assert await rooms_for({"tags": ["m.favourite"]}) == {plain}
    assert await rooms_for({"not_tags": ["m.favourite"], "is_dm": False}) == {encrypted, space}
    assert await rooms_for({"spaces": [space]}) == {plain}


async def test_an_invite_carries_invite_state_and_is_dm(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    dm = await bob.create_room(invite=[alice.user_id], is_direct=True, name="for alice")
    await alice.call("PUT", f"/user/{alice.user_id}/account_data/m.direct", {bob.user_id: [dm]})
    body = await sliding(alice, {"lists": {"a": room_list()}})
    room = body["rooms"][dm]
    types = {e["type"] for e in room["invite_state"]}
    assert {"m.room.create", "m.room.name", "m.room.member"} <= types
    assert room["is_dm"] is True and room["initial"] is True
    again = await sliding(alice, {"lists": {"a": room_list()}}, pos=body["pos"])
    assert dm not in again["rooms"]


async def test_an_unnamed_room_has_heroes_and_a_named_one_its_name_and_avatar(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    await bob.call("PUT", f"/profile/{bob.user_id}/displayname", {"displayname": "Bob B"})
    unnamed = await alice.create_room(preset="public_chat")
    await bob.join(unnamed)
    named = await alice.create_room(name="Named")
    await alice.call("PUT", f"/rooms/{named}/state/m.room.avatar/", {"url": "mxc://localhost/abc"})
    body = await sliding(alice, {"lists": {"a": room_list()}})
    assert body["rooms"][unnamed]["heroes"] == [{"user_id": bob.user_id, "displayname": "Bob B"}]
    assert body["rooms"][unnamed]["joined_count"] == 2
    assert "name" not in body["rooms"][unnamed]
    assert body["rooms"][named]["name"] == "Named"
    assert body["rooms"][named]["avatar"] == "mxc://localhost/abc"
    assert "heroes" not in body["rooms"][named]


async def test_a_room_subscription_gets_a_room_outside_every_list_and_can_expand_its_timeline(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    for i in range(4):
        await alice.send(room_id, f"m{i}")
    first = await sliding(alice, {"room_subscriptions": {room_id: {"timeline_limit": 1, "required_state": []}}})
    assert bodies(first["rooms"][room_id]) == ["m3"]
    assert first.get("lists", {}) == {}
    second = await sliding(alice, {"room_subscriptions": {room_id: {"timeline_limit": 3, "required_state": []}}},
                           pos=first["pos"])
    room = second["rooms"][room_id]
    assert room["expanded_timeline"] is True
    assert bodies(room) == ["m1", "m2", "m3"]


async def test_a_subscription_to_a_room_the_user_never_was_in_is_ignored(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    private = await bob.create_room()
    body = await sliding(alice, {"room_subscriptions": {private: {"timeline_limit": 1, "required_state": []}}})
    assert body["rooms"] == {}


async def test_notification_counts_come_from_push_rules(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    request = {"lists": {"a": room_list()}}
    first = await sliding(alice, request)
    await bob.send(room_id, "hi alice")
    await bob.send(room_id, "two")
    second = await sliding(alice, request, pos=first["pos"])
    assert second["rooms"][room_id]["notification_count"] == 2


async def test_malformed_requests_name_the_field(client):
    alice = await new_user(client, "alice")
    error = await sliding(alice, {"lists": {"a": {"ranges": [[0, 1]], "required_state": []}}}, expect=400)
    assert error["errcode"] == "M_BAD_JSON" and "timeline_limit" in error["error"]
    error = await sliding(alice, {"lists": {"a": room_list(ranges=[(5, 1)])}}, expect=400)
    assert error["errcode"] == "M_INVALID_PARAM" and "ranges" in error["error"]
    error = await sliding(alice, {"lists": {"a": room_list(filters={"is_dm": "yes"})}}, expect=400)
    assert "is_dm" in error["error"]


# --- extensions --------------------------------------------------------------------------------

async def test_the_to_device_extension_delivers_until_acknowledged_with_since(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    await alice.call("PUT", "/sendToDevice/m.test/t1",
                     {"messages": {bob.user_id: {bob.device_id: {"n": 1}}}})
    request = {"extensions": {"to_device": {"enabled": True}}}
    first = await sliding(bob, request)
    events = first["extensions"]["to_device"]["events"]
    assert [e["content"] for e in events] == [{"n": 1}]
    since = first["extensions"]["to_device"]["next_batch"]
    second = await sliding(bob, {"extensions": {"to_device": {"enabled": True, "since": since}}},
                           pos=first["pos"])
    assert second["extensions"]["to_device"]["events"] == []
    # Acknowledged messages are gone, even for a new connection.
    fresh = await sliding(bob, request)
    assert fresh["extensions"]["to_device"]["events"] == []


async def test_the_to_device_extension_delivers_at_most_limit_messages_per_response(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    for n in range(1, 6):
        await alice.call("PUT", f"/sendToDevice/m.test/t{n}",
                         {"messages": {bob.user_id: {bob.device_id: {"n": n}}}})
    received: list[list[int]] = []
    since, pos = None, None
    for _ in range(4):
        extension: dict[str, Any] = {"enabled": True, "limit": 2}
        if since is not None:
            extension["since"] = since
        response = await sliding(bob, {"extensions": {"to_device": extension}}, pos=pos)
        received.append([e["content"]["n"] for e in response["extensions"]["to_device"]["events"]])
        since, pos = response["extensions"]["to_device"]["next_batch"], response["pos"]
    assert received == [[1, 2], [3, 4], [5], []]
    # limit 0 delivers nothing and acknowledges nothing new.
    await alice.call("PUT", "/sendToDevice/m.test/t6", {"messages": {bob.user_id: {bob.device_id: {"n": 6}}}})
    empty = await sliding(bob, {"extensions": {"to_device": {"enabled": True, "limit": 0, "since": since}}})
    assert empty["extensions"]["to_device"]["events"] == []
    after = await sliding(bob, {"extensions": {"to_device": {
        "enabled": True, "since": empty["extensions"]["to_device"]["next_batch"]}}})
    assert [e["content"]["n"] for e in after["extensions"]["to_device"]["events"]] == [6]


async def test_unacknowledged_to_device_messages_are_delivered_again(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    await alice.call("PUT", "/sendToDevice/m.test/t1",
                     {"messages": {bob.user_id: {bob.device_id: {"n": 1}}}})
    request = {"extensions": {"to_device": {"enabled": True}}}
    first = await sliding(bob, request)
    again = await sliding(bob, request, pos=first["pos"])
    assert [e["content"] for e in again["extensions"]["to_device"]["events"]] == [{"n": 1}]


async def test_the_e2ee_extension_gives_key_counts_and_device_list_changes(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await alice.call("POST", "/keys/upload", {"one_time_keys": {"signed_curve25519:AAAA": {
        "key": "k", "signatures": {}}}})
    request = {"extensions": {"e2ee": {"enabled": True}}}
    first = await sliding(alice, request)
    e2ee = first["extensions"]["e2ee"]
    assert e2ee["device_one_time_keys_count"]["signed_curve25519"] == 1
    assert e2ee["device_unused_fallback_key_types"] == []
    await upload_device_keys(bob)
    second = await sliding(alice, request, pos=first["pos"])
    assert bob.user_id in second["extensions"]["e2ee"]["device_lists"]["changed"]


async def test_the_account_data_extension_gives_global_and_room_data_once(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    await alice.call("PUT", f"/user/{alice.user_id}/account_data/nl.test", {"a": 1})
    await alice.call("PUT", f"/user/{alice.user_id}/rooms/{room_id}/account_data/nl.room", {"b": 2})
    request = {"lists": {"a": room_list()}, "extensions": {"account_data": {"enabled": True}}}
    first = await sliding(alice, request)
    section = first["extensions"]["account_data"]
    assert {"type": "nl.test", "content": {"a": 1}} in section["global"]
    assert {t["type"] for t in section["global"]} >= {"m.push_rules"}
    assert section["rooms"][room_id] == [{"type": "nl.room", "content": {"b": 2}}]
    await alice.call("PUT", f"/user/{alice.user_id}/account_data/nl.test", {"a": 3})
    second = await sliding(alice, request, pos=first["pos"])
    assert second["extensions"]["account_data"]["global"] == [{"type": "nl.test", "content": {"a": 3}}]
    assert second["extensions"]["account_data"]["rooms"] == {}


async def test_room_account_data_is_scoped_to_the_named_lists(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    await alice.call("PUT", f"/user/{alice.user_id}/rooms/{room_id}/account_data/nl.room", {"b": 2})
    request = {"lists": {"a": room_list(), "b": room_list(ranges=[])},
               "extensions": {"account_data": {"enabled": True, "lists": ["b"], "rooms": []}}}
    body = await sliding(alice, request)
    assert body["extensions"]["account_data"]["rooms"] == {}


async def test_the_receipts_and_typing_extensions_follow_the_rooms_in_view(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    event_id = await bob.send(room_id, "read me")
    request = {"lists": {"a": room_list()},
               "extensions": {"receipts": {"enabled": True}, "typing": {"enabled": True}}}
    first = await sliding(alice, request)
    assert first["extensions"]["typing"]["rooms"] == {}
    await bob.call("POST", f"/rooms/{room_id}/receipt/m.read/{event_id}", {})
    await bob.call("PUT", f"/rooms/{room_id}/typing/{bob.user_id}", {"typing": True, "timeout": 30000})
    second = await sliding(alice, request, pos=first["pos"])
    receipt = second["extensions"]["receipts"]["rooms"][room_id]
    assert receipt["type"] == "m.receipt"
    assert bob.user_id in receipt["content"][event_id]["m.read"]
    typing = second["extensions"]["typing"]["rooms"][room_id]
    assert typing == {"type": "m.typing", "content": {"user_ids": [bob.user_id]}}


async def test_a_receipt_sent_while_the_room_was_out_of_view_arrives_when_it_returns(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    event_id = await alice.send(room_id, "read me")
    other = await alice.create_room()
    request = {"lists": {"top": room_list(ranges=[(0, 0)])}, "extensions": {"receipts": {"enabled": True}}}
    await alice.send(other, "on top")
    first = await sliding(alice, request)
    assert list(first["rooms"]) == [other]
    await bob.call("POST", f"/rooms/{room_id}/receipt/m.read/{event_id}", {})
    second = await sliding(alice, request, pos=first["pos"])
    assert second["extensions"]["receipts"]["rooms"] == {}
    await alice.send(room_id, "back on top")
    third = await sliding(alice, request, pos=second["pos"])
    receipt = third["extensions"]["receipts"]["rooms"][room_id]
    assert bob.user_id in receipt["content"][event_id]["m.read"]


async def test_a_room_the_user_leaves_is_reported_once_then_drops_out_of_the_list(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    request = {"lists": {"a": room_list(timeline_limit=5)}}
    first = await sliding(alice, request)
    assert first["lists"]["a"]["count"] == 1
    await alice.call("POST", f"/rooms/{room_id}/leave", {})
    second = await sliding(alice, request, pos=first["pos"])
    leave = [e for e in second["rooms"][room_id]["timeline"] if e["type"] == "m.room.member"]
    assert leave[-1]["content"]["membership"] == "leave"
    third = await sliding(alice, request, pos=second["pos"])
    assert third["lists"]["a"]["count"] == 0
    assert third["rooms"] == {}


async def test_a_subscription_to_a_room_the_user_left_shows_it_up_to_the_leave(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await bob.send(room_id, "before leaving")
    await bob.call("POST", f"/rooms/{room_id}/leave", {})
    await alice.send(room_id, "after bob left")
    listed = await sliding(bob, {"lists": {"a": room_list()}})
    assert listed["lists"]["a"]["count"] == 0
    body = await sliding(bob, {"room_subscriptions": {room_id: {"timeline_limit": 5, "required_state": []}}})
    timeline = body["rooms"][room_id]["timeline"]
    assert "before leaving" in bodies(body["rooms"][room_id])
    assert "after bob left" not in bodies(body["rooms"][room_id])
    assert timeline[-1]["type"] == "m.room.member" and timeline[-1]["content"]["membership"] == "leave"


async def test_prev_batch_continues_the_timeline_with_messages(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    for i in range(4):
        await alice.send(room_id, f"m{i}")
    body = await sliding(alice, {"lists": {"a": room_list(timeline_limit=2)}})
    room = body["rooms"][room_id]
    assert bodies(room) == ["m2", "m3"] and room["limited"] is True
    page = await alice.call("GET", f"/rooms/{room_id}/messages", **{"from": room["prev_batch"], "dir": "b",
                                                                     "limit": "2"})
    assert [e["content"].get("body") for e in page["chunk"]] == ["m1", "m0"]


# --- per-room connection state (storage/schema/170_sliding_sync_room_state.sql) -----------------
async def stored_room_rows(hs) -> list[tuple[str, int]]:
    await hs.sliding_sync.flush()
    rows = await hs.db.fetch_all("test_sliding_rows", "SELECT room_id, gen FROM sliding_sync_connection_rooms", ())
    return sorted((r[0], int(r[1])) for r in rows)


async def test_an_incremental_response_sends_only_the_rooms_that_changed(client, hs):
    alice = await new_user(client, "alice")
    rooms = [await alice.create_room(name=f"r{i}") for i in range(3)]
    request = {"lists": {"all": room_list(ranges=[(0, 9)])}}
    first = await sliding(alice, request)
    assert set(first["rooms"]) == set(rooms)
    assert {room for room, _ in await stored_room_rows(hs)} == set(rooms)

    await alice.send(rooms[1], "news")
    second = await sliding(alice, request, pos=first["pos"])
    assert list(second["rooms"]) == [rooms[1]]
    assert bodies(second["rooms"][rooms[1]]) == ["news"] and "initial" not in second["rooms"][rooms[1]]


async def test_rooms_outside_the_window_are_not_written_again(client, hs):
    alice = await new_user(client, "alice")
    rooms = [await alice.create_room(name=f"r{i}") for i in range(3)]
    request = {"lists": {"top": room_list(ranges=[(0, 0)])}}
    first = await sliding(alice, request)
    (top,) = first["rooms"]
    assert [room for room, _ in await stored_room_rows(hs)] == [top]
    other = next(r for r in rooms if r != top)
    await alice.send(other, "takes the window")
    second = await sliding(alice, request, pos=first["pos"])
    assert list(second["rooms"]) == [other]
    rows = await stored_room_rows(hs)
    # The room that left the window is written once more (where its extensions stopped).
    assert sorted(room for room, _ in rows) == sorted([top, top, other])
    third = await sliding(alice, request, pos=second["pos"])
    assert third["rooms"] == {}
    # Nothing changed: no row for the third position, and the row the second one hid is gone.
    rows = await stored_room_rows(hs)
    assert sorted(room for room, _ in rows) == sorted([top, other])
    await alice.send(other, "news in view")
    fourth = await sliding(alice, request, pos=third["pos"])
    assert list(fourth["rooms"]) == [other]
    fifth = await sliding(alice, request, pos=fourth["pos"])
    assert fifth["rooms"] == {}
    assert sorted(room for room, _ in await stored_room_rows(hs)) == sorted([top, other])


async def test_a_branch_left_by_a_retry_is_forgotten_and_the_retried_one_resumes_after_a_restart(client, hs):
    alice = await new_user(client, "alice")
    bob = await new_user(client, "bob")
    talk = await alice.create_room(name="talk", preset="public_chat")
    await bob.join(talk)
    request = {"lists": {"all": room_list(timeline_limit=5, required_state=[("m.room.member", "$LAZY")])}}
    first = await sliding(alice, request)
    await bob.send(talk, "one")
    abandoned = await sliding(alice, request, pos=first["pos"])
    assert bodies(abandoned["rooms"][talk]) == ["one"]
    await hs.sliding_sync.flush()
    # The client never got `abandoned`: it retries `first` and goes on from the retry.
    retried = await sliding(alice, request, pos=first["pos"])
    assert bodies(retried["rooms"][talk]) == ["one"]

    await hs.stop()
    await hs.start()
    async with aiohttp.ClientSession(hs.base_url("client")) as session:
        alice.client = bob.client = session
        error = await sliding(alice, request, pos=abandoned["pos"], expect=400)
        assert error["errcode"] == "M_UNKNOWN_POS"
        await bob.send(talk, "two")
        resumed = await sliding(alice, request, pos=retried["pos"])
        room = resumed["rooms"][talk]
        assert "initial" not in room and bodies(room) == ["two"]
        assert "required_state" not in room  # bob's member event was remembered per room
        quiet = await sliding(alice, request, pos=resumed["pos"])
        assert quiet["rooms"] == {}


async def test_positions_from_before_the_per_room_state_are_unknown(client, hs):
    # Migration 170 drops the old `sliding_sync_positions` table (docs/decisions.md): its
    # positions are answered like any position the server does not know.
    tables = await hs.db.fetch_all(
        "test_sliding_tables", "SELECT COUNT(*) FROM sliding_sync_connection_positions", ())
    assert tables[0][0] == 0
    alice = await new_user(client, "alice")
    error = await sliding(alice, {"lists": {"all": room_list()}}, pos="0123abcd.1", expect=400)
    assert error["errcode"] == "M_UNKNOWN_POS"


async def test_every_connection_of_a_user_sees_the_memberships_another_one_already_read(client):
    # The service remembers a user's memberships between responses; a join, an invite and a leave
    # made after one connection read them must still reach the user's other connections.
    alice = await new_user(client, "alice")
    bob = await new_user(client, "bob")
    kept = await alice.create_room()
    left = await alice.create_room()
    request = {"lists": {"all": room_list()}}
    one = await sliding(alice, {**request, "conn_id": "one"})
    two = await sliding(alice, {**request, "conn_id": "two"})
    assert one["lists"]["all"]["count"] == two["lists"]["all"]["count"] == 2
    public = await bob.create_room(preset="public_chat")
    invited = await bob.create_room()
    await bob.call("POST", f"/rooms/{invited}/invite", {"user_id": alice.user_id})
    await alice.join(public)
    await alice.call("POST", f"/rooms/{left}/leave", {})
    one = await sliding(alice, {**request, "conn_id": "one"}, pos=one["pos"])
    assert {public, invited, left} <= set(one["rooms"])
    assert one["rooms"][invited]["invite_state"]
    one = await sliding(alice, {**request, "conn_id": "one"}, pos=one["pos"])
    assert one["lists"]["all"]["count"] == 3
    # The second connection asks after the first has read the new memberships.
    two = await sliding(alice, {**request, "conn_id": "two"}, pos=two["pos"])
    assert {public, invited, left} <= set(two["rooms"])
    two = await sliding(alice, {**request, "conn_id": "two"}, pos=two["pos"])
    assert two["lists"]["all"]["count"] == 3 and kept not in two["rooms"]


async def test_a_users_connections_beyond_the_most_recent_fifty_are_forgotten_with_their_rooms(client, hs):
    from homeserver.sync.sliding import MAX_CONNECTIONS_PER_USER

    alice = await new_user(client, "alice")
    await alice.create_room(name="talk")
    positions = []
    for i in range(MAX_CONNECTIONS_PER_USER + 1):
        positions.append((await sliding(alice, {"conn_id": f"c{i}", "lists": {"all": room_list()}}))["pos"])
        await asyncio.sleep(0.005)  # each connection used at its own millisecond
    await hs.sliding_sync.forget_cached_connections()  # writes what is pending, then reads from the database

    async def stored_rows(conn_id: str) -> int:
        return await hs.db.fetch_value(
            "test_rows", "SELECT COUNT(*) FROM sliding_sync_connection_rooms WHERE user_id = ? AND conn_id = ?",
            (alice.user_id, conn_id))

    assert await stored_rows("c0") == 0
    assert await stored_rows("c1") == 1
    error = await sliding(alice, {"conn_id": "c0", "lists": {"all": room_list()}}, pos=positions[0], expect=400)
    assert error["errcode"] == "M_UNKNOWN_POS"
    last = MAX_CONNECTIONS_PER_USER
    await sliding(alice, {"conn_id": f"c{last}", "lists": {"all": room_list()}}, pos=positions[last])
    await sliding(alice, {"conn_id": "c1", "lists": {"all": room_list()}}, pos=positions[1])
