"""GET /sync over HTTP against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time

from tests.support.rooms import User, new_user


async def sync(user: User, expect: int = 200, **params) -> dict:
    for key, value in list(params.items()):
        if isinstance(value, dict):
            params[key] = json.dumps(value)
        elif isinstance(value, bool):
            params[key] = "true" if value else "false"
    return await user.call("GET", "/sync", expect=expect, **params)


def bodies(room: dict) -> list[str]:
    return [e["content"].get("body") for e in room["timeline"]["events"] if e["type"] == "m.room.message"]


def state_keys(room: dict, event_type: str = "m.room.member") -> set[str]:
    return {e["state_key"] for e in room["state"]["events"] if e["type"] == event_type}


async def test_an_initial_sync_has_the_spec_shape_with_state_timeline_and_summary(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room(name="Huiskamer")
    await alice.send(room_id, "hallo")
    body = await sync(alice)
    assert body["next_batch"].startswith("s")
    for key in ("account_data", "presence", "to_device", "device_lists", "device_one_time_keys_count"):
        assert key in body
    room = body["rooms"]["join"][room_id]
    assert bodies(room) == ["hallo"]
    assert room["timeline"]["prev_batch"]
    assert room["summary"]["m.joined_member_count"] == 1
    assert room["unread_notifications"] == {"highlight_count": 0, "notification_count": 0}
    everything = [*room["state"]["events"], *room["timeline"]["events"]]
    assert {"m.room.create", "m.room.power_levels", "m.room.name"} <= {e["type"] for e in everything}
    assert all("room_id" not in e for e in everything)
    types = {e["type"] for e in body["account_data"]["events"]}
    assert "m.push_rules" in types


async def test_state_is_the_state_at_the_start_of_the_timeline(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    await alice.call("PUT", f"/rooms/{room_id}/state/m.room.topic/", {"topic": "old"})
    for i in range(3):
        await alice.send(room_id, f"m{i}")
    await alice.call("PUT", f"/rooms/{room_id}/state/m.room.topic/", {"topic": "new"})
    room = (await sync(alice, filter={"room": {"timeline": {"limit": 2}}}))["rooms"]["join"][room_id]
    assert room["timeline"]["limited"] is True
    topics = [e["content"]["topic"] for e in room["state"]["events"] if e["type"] == "m.room.topic"]
    assert topics == ["old"]
    assert [e["type"] for e in room["timeline"]["events"]] == ["m.room.message", "m.room.topic"]


async def test_an_incremental_sync_returns_only_what_arrived_since_the_token(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    quiet_room = await alice.create_room()
    await alice.send(room_id, "before")
    first = await sync(alice)
    await alice.send(room_id, "after")
    second = await sync(alice, since=first["next_batch"])
    room = second["rooms"]["join"][room_id]
    assert bodies(room) == ["after"]
    assert room["timeline"]["limited"] is False
    assert room["state"]["events"] == []
    assert quiet_room not in second["rooms"]["join"]
    third = await sync(alice, since=second["next_batch"])
    assert third["rooms"]["join"] == {}


async def test_a_long_poll_returns_as_soon_as_a_message_arrives(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    since = (await sync(bob))["next_batch"]
    started = time.monotonic()
    waiting = asyncio.create_task(sync(bob, since=since, timeout=60_000))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await alice.send(room_id, "wakker worden")
    body = await asyncio.wait_for(waiting, 30)
    assert bodies(body["rooms"]["join"][room_id]) == ["wakker worden"]
    assert time.monotonic() - started < 60


async def test_a_long_poll_without_news_returns_an_empty_response_after_the_timeout(client):
    alice = await new_user(client, "alice")
    await alice.create_room()
    since = (await sync(alice))["next_batch"]
    body = await sync(alice, since=since, timeout=200)
    assert body["rooms"]["join"] == {}
    assert body["next_batch"] == since


async def test_account_data_changes_wake_a_long_poll_and_are_delivered_once(client):
    alice = await new_user(client, "alice")
    since = (await sync(alice))["next_batch"]
    waiting = asyncio.create_task(sync(alice, since=since, timeout=60_000))
    await asyncio.sleep(0.2)
    await alice.call("PUT", f"/user/{alice.user_id}/account_data/nl.huiskamer.test", {"x": 1})
    body = await asyncio.wait_for(waiting, 30)
    assert {"type": "nl.huiskamer.test", "content": {"x": 1}} in body["account_data"]["events"]
    again = await sync(alice, since=body["next_batch"])
    assert again["account_data"]["events"] == []


async def test_a_limited_timeline_gives_a_prev_batch_that_messages_accepts(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    for i in range(6):
        await alice.send(room_id, f"m{i}")
    room = (await sync(alice, filter={"room": {"timeline": {"limit": 3}}}))["rooms"]["join"][room_id]
    assert room["timeline"]["limited"] is True
    assert bodies(room) == ["m3", "m4", "m5"]
    page = await alice.call("GET", f"/rooms/{room_id}/messages", expect=None, dir="b", limit=2,
                            **{"from": room["timeline"]["prev_batch"]})
    if "chunk" in page:  # /messages is built by another part of the issue
        assert [e["content"].get("body") for e in page["chunk"]] == ["m2", "m1"]


async def test_invites_show_stripped_state_and_joining_moves_the_room_to_join_with_full_state(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="private_chat", name="Geheim")
    since = (await sync(bob))["next_batch"]
    await alice.call("POST", f"/rooms/{room_id}/invite", {"user_id": bob.user_id})
    body = await sync(bob, since=since)
    invite = body["rooms"]["invite"][room_id]["invite_state"]["events"]
    assert {"m.room.create", "m.room.join_rules", "m.room.name", "m.room.member"} <= {e["type"] for e in invite}
    own = [e for e in invite if e["type"] == "m.room.member"]
    assert own[-1]["state_key"] == bob.user_id and own[-1]["sender"] == alice.user_id
    await bob.join(room_id)
    joined = await sync(bob, since=body["next_batch"])
    assert room_id not in joined["rooms"]["invite"]
    room = joined["rooms"]["join"][room_id]
    everything = [*room["state"]["events"], *room["timeline"]["events"]]
    assert ("m.room.name", "") in {(e["type"], e.get("state_key")) for e in everything}
    assert room["summary"]["m.joined_member_count"] == 2


async def test_leaving_puts_the_room_in_leave_and_forgetting_removes_it(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    since = (await sync(bob))["next_batch"]
    await alice.send(room_id, "tot ziens")
    await bob.call("POST", f"/rooms/{room_id}/leave", {})
    await alice.send(room_id, "after bob left")
    body = await sync(bob, since=since)
    left = body["rooms"]["leave"][room_id]
    assert room_id not in body["rooms"]["join"]
    assert bodies(left) == ["tot ziens"]
    assert left["timeline"]["events"][-1]["type"] == "m.room.member"
    with_leave = await sync(bob, filter={"room": {"include_leave": True}})
    assert room_id in with_leave["rooms"]["leave"]
    assert room_id not in (await sync(bob))["rooms"]["leave"]
    await bob.call("POST", f"/rooms/{room_id}/forget", {})
    assert room_id not in (await sync(bob, filter={"room": {"include_leave": True}}))["rooms"]["leave"]


async def test_lazy_loading_sends_only_the_members_of_timeline_senders_and_not_twice(client):
    alice, bob, carol = [await new_user(client, n) for n in ("alice", "bob", "carol")]
    # Named, so that no heroes (whose members a lazy-loading client must get too) are needed.
    room_id = await alice.create_room(preset="public_chat", name="Lui")
    await bob.join(room_id)
    await carol.join(room_id)
    for i in range(3):
        await alice.send(room_id, f"a{i}")
    lazy = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 3}}}
    first = await sync(carol, filter=lazy)
    room = first["rooms"]["join"][room_id]
    assert state_keys(room) == {alice.user_id, carol.user_id}
    assert room["summary"]["m.joined_member_count"] == 3
    await alice.send(room_id, "a3")
    await bob.send(room_id, "b0")
    second = await sync(carol, filter=lazy, since=first["next_batch"])
    assert state_keys(second["rooms"]["join"][room_id]) == {bob.user_id}
    redundant = {"room": {"state": {"lazy_load_members": True, "include_redundant_members": True}}}
    await alice.send(room_id, "a4")
    third = await sync(carol, filter=redundant, since=second["next_batch"])
    assert alice.user_id in state_keys(third["rooms"]["join"][room_id])
    full = (await sync(carol, filter={"room": {"timeline": {"limit": 1}}}))["rooms"]["join"][room_id]
    assert state_keys(full) == {alice.user_id, bob.user_id, carol.user_id}


async def test_filters_work_inline_and_by_id_and_unknown_parameters_are_ignored(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    await alice.send(room_id, "tekst")
    await alice.send(room_id, "ping", event_type="nl.huiskamer.ping")
    only_messages = {"room": {"timeline": {"types": ["m.room.message"]}, "state": {"types": []}}}
    inline = await sync(alice, filter=only_messages, _cacheBuster="12345")
    room = inline["rooms"]["join"][room_id]
    assert {e["type"] for e in room["timeline"]["events"]} == {"m.room.message"}
    assert room["state"]["events"] == []
    filter_id = (await alice.call("POST", f"/user/{alice.user_id}/filter",
                                  {"room": {"timeline": {"not_types": ["m.room.*"]}}}))["filter_id"]
    by_id = await sync(alice, filter=filter_id)
    types = {e["type"] for e in by_id["rooms"]["join"][room_id]["timeline"]["events"]}
    assert types == {"nl.huiskamer.ping"}
    fields = await sync(alice, filter={"event_fields": ["type", "content.body"]})
    events = fields["rooms"]["join"][room_id]["timeline"]["events"]
    assert events[-1] == {"type": "nl.huiskamer.ping", "content": {"body": "ping"}}


async def test_bad_since_and_filter_parameters_are_400_naming_the_parameter(client):
    alice = await new_user(client, "alice")
    for params, errcodes, name in (
        ({"since": "garbage"}, {"M_INVALID_PARAM"}, "since"),
        ({"filter": "{not json"}, {"M_NOT_JSON", "M_BAD_JSON"}, "filter"),
        ({"filter": '{"room": {"timeline": {"limit": "ten"}}}'}, {"M_BAD_JSON"}, "filter"),
        ({"filter": "424242"}, {"M_INVALID_PARAM"}, "filter"),
        ({"set_presence": "dancing"}, {"M_INVALID_PARAM"}, "set_presence"),
        ({"timeout": "soon"}, {"M_INVALID_PARAM"}, "timeout"),
    ):
        body = await alice.call("GET", "/sync", expect=400, **params)
        assert body["errcode"] in errcodes, (params, body)
        assert name in body["error"], (params, body)


async def test_ignored_users_messages_are_filtered_from_timelines(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await alice.call("PUT", f"/user/{alice.user_id}/account_data/m.ignored_user_list",
                     {"ignored_users": {bob.user_id: {}}})
    await bob.send(room_id, "negeer mij")
    await alice.send(room_id, "eigen bericht")
    room = (await sync(alice))["rooms"]["join"][room_id]
    assert bodies(room) == ["eigen bericht"]


async def test_history_visibility_hides_events_from_before_a_joined_only_join(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await alice.call("PUT", f"/rooms/{room_id}/state/m.room.history_visibility/", {"history_visibility": "joined"})
    await alice.send(room_id, "geheim")
    await bob.join(room_id)
    await alice.send(room_id, "openbaar")
    room = (await sync(bob))["rooms"]["join"][room_id]
    assert bodies(room) == ["openbaar"]


async def test_full_state_returns_all_state_on_an_incremental_sync(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room(name="Vol")
    since = (await sync(alice))["next_batch"]
    body = await sync(alice, since=since, full_state=True)
    room = body["rooms"]["join"][room_id]
    assert {"m.room.create", "m.room.name", "m.room.member"} <= {e["type"] for e in room["state"]["events"]}


async def test_heroes_name_the_other_members_of_an_unnamed_room(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="trusted_private_chat", invite=[bob.user_id], is_direct=True)
    room = (await sync(alice))["rooms"]["join"][room_id]
    assert room["summary"]["m.heroes"] == [bob.user_id]
    assert room["summary"]["m.invited_member_count"] == 1


async def test_one_sync_gives_each_room_its_own_counts_and_heroes_only_the_unnamed_ones(client):
    alice, bob, carol = [await new_user(client, n) for n in ("alice", "bob", "carol")]
    named = await alice.create_room(name="Named", invite=[bob.user_id])
    with_bob = await alice.create_room(invite=[bob.user_id])
    with_both = await alice.create_room(invite=[bob.user_id])
    await bob.join(with_both)
    await alice.call("POST", f"/rooms/{with_both}/invite", {"user_id": carol.user_id})
    rooms = (await sync(alice))["rooms"]["join"]
    assert "m.heroes" not in rooms[named]["summary"]
    assert rooms[named]["summary"]["m.invited_member_count"] == 1
    assert rooms[with_bob]["summary"]["m.heroes"] == [bob.user_id]
    assert rooms[with_bob]["summary"]["m.joined_member_count"] == 1
    # Heroes in the order the members' events came: Bob joined before Carol was invited.
    assert rooms[with_both]["summary"]["m.heroes"] == [bob.user_id, carol.user_id]
    assert rooms[with_both]["summary"]["m.joined_member_count"] == 2
    assert rooms[with_both]["summary"]["m.invited_member_count"] == 1


async def test_the_sender_sees_the_transaction_id_of_their_own_message(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    await alice.call("PUT", f"/rooms/{room_id}/send/m.room.message/mytxn", {"msgtype": "m.text", "body": "x"})
    room = (await sync(alice))["rooms"]["join"][room_id]
    assert room["timeline"]["events"][-1]["unsigned"]["transaction_id"] == "mytxn"


async def test_extensions_add_room_fields_ephemeral_events_and_top_level_sections(hs, client):
    from homeserver.streams.sources import EphemeralSource, TopLevelSource

    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    calls = []

    async def unread(user_id, room_ids, since, now):
        calls.append((user_id, list(room_ids)))
        return {r: {"unread_notifications": {"highlight_count": 1, "notification_count": 2}} for r in room_ids}

    async def keys(user_id, device_id, start, end):
        return {"device_one_time_keys_count": {"signed_curve25519": 7}}

    async def position():
        return 3

    async def presence_events(user_id, room_ids, start, end):
        return {r: [{"type": "nl.huiskamer.ephemeral", "content": {"from": start}}] for r in room_ids}

    hs.sync.add_room_fields_provider(unread)
    hs.sync.add_top_level_source(TopLevelSource("to_device", position, keys, every_sync=True))
    hs.sync.add_ephemeral_source(EphemeralSource("presence", position, presence_events))
    first = await sync(alice)
    room = first["rooms"]["join"][room_id]
    assert room["unread_notifications"] == {"highlight_count": 1, "notification_count": 2}
    assert room["ephemeral"]["events"] == [{"type": "nl.huiskamer.ephemeral", "content": {"from": None}}]
    assert first["device_one_time_keys_count"] == {"signed_curve25519": 7}
    assert calls == [(alice.user_id, [room_id])]
    # Nothing moved: the ephemeral source is not asked again, the every-sync source is.
    second = await sync(alice, since=first["next_batch"])
    assert second["rooms"]["join"] == {}
    assert second["device_one_time_keys_count"] == {"signed_curve25519": 7}


async def test_a_knock_shows_under_knock_with_stripped_state(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(room_version="10", name="Klop klop", initial_state=[
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}])
    since = (await sync(bob))["next_batch"]
    await bob.call("POST", f"/knock/{room_id}", {"reason": "mag ik erin?"})
    body = await sync(bob, since=since)
    knock = body["rooms"]["knock"][room_id]["knock_state"]["events"]
    assert {"m.room.create", "m.room.join_rules", "m.room.name"} <= {e["type"] for e in knock}
    assert knock[-1]["type"] == "m.room.member" and knock[-1]["content"]["membership"] == "knock"
    assert room_id not in body["rooms"]["join"]


async def test_a_push_rule_change_delivers_fresh_m_push_rules_account_data(client):
    alice = await new_user(client, "alice")
    since = (await sync(alice))["next_batch"]
    await alice.call("PUT", "/pushrules/global/override/.m.rule.master/enabled", {"enabled": True})
    body = await sync(alice, since=since)
    [rules] = [e for e in body["account_data"]["events"] if e["type"] == "m.push_rules"]
    master = [r for r in rules["content"]["global"]["override"] if r["rule_id"] == ".m.rule.master"]
    assert master[0]["enabled"] is True
    again = await sync(alice, since=body["next_batch"])
    assert again["account_data"]["events"] == []


async def test_a_limited_incremental_sync_returns_the_state_changed_in_the_gap(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat", name="Gat")
    lazy_small = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 2}}}
    since = (await sync(alice, filter=lazy_small))["next_batch"]
    await alice.call("PUT", f"/rooms/{room_id}/state/m.room.topic/", {"topic": "in het gat"})
    await bob.join(room_id)
    for i in range(4):
        await alice.send(room_id, f"m{i}")
    room = (await sync(alice, filter=lazy_small, since=since))["rooms"]["join"][room_id]
    assert room["timeline"]["limited"] is True
    state = {(e["type"], e["state_key"]): e["content"] for e in room["state"]["events"]}
    assert state[("m.room.topic", "")] == {"topic": "in het gat"}
    # Bob's join happened in the gap: lazy loading must not hide it, though he sent nothing shown.
    assert state[("m.room.member", bob.user_id)]["membership"] == "join"
    assert ("m.room.name", "") not in state
    assert room["summary"]["m.joined_member_count"] == 2


async def test_rejoining_a_joined_only_room_syncs_the_members_who_joined_while_away(client):
    alice, bob, carol = [await new_user(client, n) for n in ("alice", "bob", "carol")]
    room_id = await alice.create_room(preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}])
    await bob.join(room_id)
    await alice.send(room_id, "before")
    since = (await sync(bob))["next_batch"]
    await bob.call("POST", f"/rooms/{room_id}/leave", {})
    await carol.join(room_id)
    await alice.send(room_id, "while bob was away")
    await bob.join(room_id)
    room = (await sync(bob, since=since))["rooms"]["join"][room_id]
    # A rejoin is a new start, as Synapse treats it: a limited timeline and the room's state.
    assert room["timeline"]["limited"] is True
    assert "while bob was away" not in bodies(room)
    members = {e["state_key"]: e["content"]["membership"]
               for e in [*room["state"]["events"], *room["timeline"]["events"]] if e["type"] == "m.room.member"}
    assert members[carol.user_id] == "join"
    assert members[alice.user_id] == "join"
    assert members[bob.user_id] == "join"
    assert room["summary"]["m.joined_member_count"] == 3


async def test_a_filtered_timeline_with_exactly_limit_matching_events_is_not_limited(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room(name="Eén")
    await alice.send(room_id, "the only message")
    only_messages = {"room": {"timeline": {"limit": 1, "types": ["m.room.message"]}}}
    room = (await sync(alice, filter=only_messages))["rooms"]["join"][room_id]
    assert bodies(room) == ["the only message"]
    assert room["timeline"]["limited"] is False
    await alice.send(room_id, "a second one")
    room = (await sync(alice, filter=only_messages))["rooms"]["join"][room_id]
    assert bodies(room) == ["a second one"]
    assert room["timeline"]["limited"] is True
