"""Reading room history: /messages, /context and /timestamp_to_event, with history visibility."""

from __future__ import annotations

import json

from tests.support.rooms import User, new_user


async def _room_with_messages(alice: User, count: int, **create: object) -> tuple[str, list[str]]:
    room_id = await alice.create_room(**create)
    sent = [await alice.send(room_id, f"m{i}") for i in range(count)]
    return room_id, sent


async def _paginate(user: User, room_id: str, direction: str, limit: int, **params: object) -> list[dict]:
    events: list[dict] = []
    token = params.pop("from", None)
    for _ in range(200):
        query = {"dir": direction, "limit": limit, **params}
        if token is not None:
            query["from"] = token
        page = await user.call("GET", f"/rooms/{room_id}/messages", **query)
        events += page["chunk"]
        if "end" not in page:
            return events
        assert page["end"] != token, "pagination did not move"
        token = page["end"]
    raise AssertionError("pagination did not end")


async def test_backwards_pagination_covers_the_whole_room_without_gaps_or_duplicates(client):
    alice = await new_user(client, "alice")
    room_id, sent = await _room_with_messages(alice, 23)
    events = await _paginate(alice, room_id, "b", 5)
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))
    assert [i for i in ids if i in sent] == list(reversed(sent))
    assert events[-1]["type"] == "m.room.create"
    assert all(e["room_id"] == room_id for e in events)


async def test_forwards_pagination_is_the_exact_reverse_of_backwards(client):
    alice = await new_user(client, "alice")
    room_id, _ = await _room_with_messages(alice, 12)
    backwards = [e["event_id"] for e in await _paginate(alice, room_id, "b", 4)]
    forwards = [e["event_id"] for e in await _paginate(alice, room_id, "f", 3)]
    assert forwards == list(reversed(backwards))


async def test_paging_back_then_forward_from_a_middle_token_resumes_exactly(client):
    alice = await new_user(client, "alice")
    room_id, sent = await _room_with_messages(alice, 10)
    first = await alice.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=4)
    assert [e["event_id"] for e in first["chunk"]] == list(reversed(sent[-4:]))
    forward = await alice.call("GET", f"/rooms/{room_id}/messages", dir="f", limit=10, **{"from": first["end"]})
    assert [e["event_id"] for e in forward["chunk"]] == sent[-4:]
    assert forward["start"] == first["end"]


async def test_a_sync_style_token_is_accepted_as_from(client):
    alice = await new_user(client, "alice")
    room_id, sent = await _room_with_messages(alice, 3)
    page = await alice.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=2, **{"from": "s999999_0_0_0_0_0_0_0"})
    assert [e["event_id"] for e in page["chunk"]] == [sent[2], sent[1]]
    page = await alice.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=5, **{"from": "s0"})
    assert page["chunk"] == [] and "end" not in page


async def test_to_stops_the_page_at_the_given_token(client):
    alice = await new_user(client, "alice")
    room_id, sent = await _room_with_messages(alice, 6)
    head = await alice.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=2)
    page = await alice.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=50, to=head["end"])
    assert [e["event_id"] for e in page["chunk"]] == [sent[5], sent[4]]


async def test_filters_select_types_senders_and_urls_in_the_database(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    with_url = await alice.send(room_id, "pic", msgtype="m.image", url="mxc://x/y")
    plain = await bob.send(room_id, "hoi")
    await alice.send(room_id, "no", event_type="org.example.custom")

    async def ids(**flt: object) -> list[str]:
        page = await alice.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=50, filter=json.dumps(flt))
        return [e["event_id"] for e in page["chunk"]]

    assert await ids(types=["m.room.message"]) == [plain, with_url]
    assert await ids(types=["m.room.mess*"]) == [plain, with_url]
    assert all(t != "m.room.message" for t in [e for e in await ids(not_types=["m.room.message"])
                                                if e in (plain, with_url)])
    assert await ids(types=["m.room.message"], senders=[bob.user_id]) == [plain]
    assert await ids(types=["m.room.message"], not_senders=[bob.user_id]) == [with_url]
    assert await ids(contains_url=True) == [with_url]
    assert with_url not in await ids(contains_url=False) and plain in await ids(contains_url=False)
    assert await ids(types=[]) == []


async def test_only_star_is_a_wildcard_in_type_filters(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    literal = await alice.send(room_id, "a", event_type="org.ex_am%ple.one")
    await alice.send(room_id, "b", event_type="org.exXamZple.one")
    page = await alice.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=10,
                            filter=json.dumps({"types": ["org.ex_am%ple.*"]}))
    assert [e["event_id"] for e in page["chunk"]] == [literal]


async def test_a_full_filtered_page_is_returned_when_matches_are_sparse(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    wanted = []
    for i in range(9):
        if i % 3 == 0:
            wanted.append(await alice.send(room_id, f"w{i}", event_type="org.example.wanted"))
        else:
            await alice.send(room_id, f"x{i}")
    page = await alice.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=3,
                            filter=json.dumps({"types": ["org.example.wanted"]}))
    assert [e["event_id"] for e in page["chunk"]] == list(reversed(wanted))


async def test_lazy_loading_returns_the_senders_member_events_as_state(client):
    alice, bob, carol = [await new_user(client, n) for n in ("alice", "bob", "carol")]
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await carol.join(room_id)
    await bob.send(room_id, "from bob")
    page = await alice.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=1,
                            filter=json.dumps({"lazy_load_members": True}))
    assert [(e["type"], e["state_key"]) for e in page["state"]] == [("m.room.member", bob.user_id)]
    plain = await alice.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=1)
    assert "state" not in plain


async def test_messages_of_ignored_users_are_left_out_but_their_state_is_not(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    noise = await bob.send(room_id, "noise")
    kept = await alice.send(room_id, "kept")
    await alice.call("PUT", f"/user/{alice.user_id}/account_data/m.ignored_user_list",
                     {"ignored_users": {bob.user_id: {}}})
    page = await alice.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=3)
    ids = [e["event_id"] for e in page["chunk"]]
    assert noise not in ids and ids[0] == kept
    assert page["chunk"][1]["type"] == "m.room.member" and page["chunk"][1]["state_key"] == bob.user_id


async def test_bad_parameters_are_400_naming_the_field(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    base = f"/rooms/{room_id}/messages"
    assert (await alice.call("GET", base, expect=400, dir="x"))["errcode"] == "M_INVALID_PARAM"
    assert (await alice.call("GET", base, expect=400, **{"from": "garbage"}))["errcode"] == "M_INVALID_PARAM"
    assert (await alice.call("GET", base, expect=400, filter="{nope"))["errcode"] == "M_NOT_JSON"
    bad = await alice.call("GET", base, expect=400, filter=json.dumps({"types": "m.room.message"}))
    assert bad["errcode"] == "M_BAD_JSON" and "types" in bad["error"]


async def test_non_members_cannot_read_a_private_room(client):
    alice, eve = await new_user(client, "alice"), await new_user(client, "eve")
    room_id, _ = await _room_with_messages(alice, 2)
    body = await eve.call("GET", f"/rooms/{room_id}/messages", expect=403, dir="b")
    assert body["errcode"] == "M_FORBIDDEN"


async def test_joined_visibility_hides_everything_before_the_join(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(
        preset="public_chat",
        initial_state=[{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}])
    secret = await alice.send(room_id, "before bob")
    await bob.join(room_id)
    after = await alice.send(room_id, "after bob")
    seen = [e for e in await _paginate(bob, room_id, "b", 3)]
    ids = [e["event_id"] for e in seen]
    assert after in ids and secret not in ids
    assert [e for e in seen if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    context = await bob.call("GET", f"/rooms/{room_id}/context/{secret}", expect=404)
    assert context["errcode"] == "M_NOT_FOUND"


async def test_shared_visibility_shows_history_from_before_the_join(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")  # history_visibility defaults to shared
    earlier = await alice.send(room_id, "before bob")
    await bob.join(room_id)
    ids = [e["event_id"] for e in await _paginate(bob, room_id, "b", 3)]
    assert earlier in ids


async def test_a_former_member_reads_only_up_to_their_leave(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    while_there = await alice.send(room_id, "hello bob")
    await bob.call("POST", f"/rooms/{room_id}/leave", {})
    later = await alice.send(room_id, "bob is gone")
    ids = [e["event_id"] for e in await _paginate(bob, room_id, "b", 4)]
    assert while_there in ids and later not in ids
    forwards = [e["event_id"] for e in await _paginate(bob, room_id, "f", 4)]
    assert later not in forwards and forwards == list(reversed(ids))


async def test_batch_visibility_agrees_with_the_per_event_rules_through_changing_settings(hs, client):
    alice, bob, carol = [await new_user(client, n) for n in ("alice", "bob", "carol")]
    room_id = await alice.create_room(preset="public_chat")

    async def set_visibility(value: str) -> None:
        await alice.call("PUT", f"/rooms/{room_id}/state/m.room.history_visibility", {"history_visibility": value})

    await set_visibility("joined")
    await alice.send(room_id, "joined-only, before bob")
    await bob.join(room_id)
    await alice.send(room_id, "bob is here")
    await set_visibility("invited")
    await bob.call("POST", f"/rooms/{room_id}/leave", {})
    await alice.send(room_id, "bob left")
    await alice.call("POST", f"/rooms/{room_id}/invite", {"user_id": bob.user_id})
    await alice.send(room_id, "bob is invited")
    await set_visibility("shared")
    await alice.send(room_id, "shared now")
    await set_visibility("world_readable")
    await alice.send(room_id, "world readable now")
    await bob.join(room_id)
    await alice.send(room_id, "bob is back")

    # Alice created the room and never left, so her view is the whole timeline.
    timeline = await alice.call("GET", f"/rooms/{room_id}/messages", dir="f", limit=1000)
    ids = [e["event_id"] for e in timeline["chunk"]]
    loaded = await hs.event_store.get_events(ids)
    events = [loaded[i] for i in ids]
    for user in (alice, bob, carol):
        batch = await hs.history_visibility.filter(user.user_id, events)
        per_event = await hs.room_reader.filter_visible(user.user_id, events)
        assert [e.event_id for e in batch] == [e.event_id for e in per_event], user.user_id
    seen_by_bob = [e.content.get("body") for e in await hs.history_visibility.filter(bob.user_id, events)
                   if e.type == "m.room.message"]
    assert "joined-only, before bob" not in seen_by_bob and "bob is invited" in seen_by_bob
    seen_by_carol = [e.content.get("body") for e in await hs.history_visibility.filter(carol.user_id, events)
                     if e.type == "m.room.message"]
    assert seen_by_carol == ["world readable now", "bob is back"]


async def test_context_returns_neighbours_tokens_and_state(client):
    alice = await new_user(client, "alice")
    room_id, sent = await _room_with_messages(alice, 9)
    middle = sent[4]
    body = await alice.call("GET", f"/rooms/{room_id}/context/{middle}", limit=4)
    assert body["event"]["event_id"] == middle
    assert [e["event_id"] for e in body["events_before"]] == [sent[3], sent[2]]
    assert [e["event_id"] for e in body["events_after"]] == [sent[5], sent[6]]
    assert ("m.room.create", "") in {(e["type"], e["state_key"]) for e in body["state"]}
    older = await alice.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=2, **{"from": body["start"]})
    assert [e["event_id"] for e in older["chunk"]] == [sent[1], sent[0]]
    newer = await alice.call("GET", f"/rooms/{room_id}/messages", dir="f", limit=2, **{"from": body["end"]})
    assert [e["event_id"] for e in newer["chunk"]] == [sent[7], sent[8]]


async def test_context_with_lazy_loading_returns_only_the_senders_members(client):
    alice, bob, carol = [await new_user(client, n) for n in ("alice", "bob", "carol")]
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await carol.join(room_id)
    before = await bob.send(room_id, "bob first")
    target = await alice.send(room_id, "alice second")
    body = await alice.call("GET", f"/rooms/{room_id}/context/{target}", limit=2,
                            filter=json.dumps({"lazy_load_members": True, "types": ["m.room.message"]}))
    assert [e["event_id"] for e in body["events_before"]] == [before]
    assert {(e["type"], e["state_key"]) for e in body["state"]} == {
        ("m.room.member", alice.user_id), ("m.room.member", bob.user_id)}


async def test_context_of_an_unknown_event_is_404(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    body = await alice.call("GET", f"/rooms/{room_id}/context/$nope", expect=404)
    assert body["errcode"] == "M_NOT_FOUND"


async def test_timestamp_to_event_finds_the_closest_event_each_way(client):
    alice = await new_user(client, "alice")
    room_id, sent = await _room_with_messages(alice, 3)
    events = [await alice.call("GET", f"/rooms/{room_id}/event/{e}") for e in sent]
    path = f"/_matrix/client/v1/rooms/{room_id}/timestamp_to_event"
    ts = events[1]["origin_server_ts"]
    # Several events may share a millisecond; whichever is picked must carry exactly that time.
    forward = await alice.call("GET", path, ts=ts, dir="f")
    assert forward["origin_server_ts"] == ts
    backward = await alice.call("GET", path, ts=ts, dir="b")
    assert backward["origin_server_ts"] == ts
    before_room = await alice.call("GET", path, expect=404, ts=1, dir="b")
    assert before_room["errcode"] == "M_NOT_FOUND"
    future = await alice.call("GET", path, expect=404, ts=events[2]["origin_server_ts"] + 60_000, dir="f")
    assert future["errcode"] == "M_NOT_FOUND"
    last = await alice.call("GET", path, ts=events[2]["origin_server_ts"] + 60_000, dir="b")
    assert last["event_id"] == sent[2]
    missing = await alice.call("GET", path, expect=400, ts=ts)
    assert missing["errcode"] == "M_MISSING_PARAM"


async def test_forward_messages_reaching_the_live_end_give_an_end_that_picks_up_new_events(client):
    alice = await new_user(client, "alice")
    room_id, sent = await _room_with_messages(alice, 4)
    first = await alice.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=2)
    forward = await alice.call("GET", f"/rooms/{room_id}/messages", dir="f", limit=10, **{"from": first["end"]})
    assert [e["event_id"] for e in forward["chunk"]] == sent[-2:]
    # Fewer than asked for: the live end. New events may still come, so `end` is given (as Synapse).
    assert "end" in forward
    later = await alice.send(room_id, "later")
    after = await alice.call("GET", f"/rooms/{room_id}/messages", dir="f", limit=10, **{"from": forward["end"]})
    assert [e["event_id"] for e in after["chunk"]] == [later]
    # An empty forward page has nothing to continue from: no `end`, as Synapse answers.
    empty = await alice.call("GET", f"/rooms/{room_id}/messages", dir="f", limit=10, **{"from": after["end"]})
    assert empty["chunk"] == [] and "end" not in empty


async def test_one_batch_over_several_rooms_judges_each_event_by_its_own_room(hs, client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    rooms = []
    # Bob joins the first two; a shared room he never joins shows him nothing, whatever his other rooms.
    for visibility in ("joined", "shared", "invited", "shared"):
        rooms.append(await alice.create_room(preset="public_chat", initial_state=[
            {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": visibility}}]))
    sent = []
    for i in range(2):
        for room_id in rooms:
            sent.append(await alice.send(room_id, f"before bob {i}"))
    await bob.join(rooms[0])
    await bob.join(rooms[1])
    for room_id in rooms:
        sent.append(await alice.send(room_id, "after bob joined two rooms"))
    loaded = await hs.event_store.get_events(sent)
    events = [loaded[i] for i in sent]  # the rooms interleaved
    for user in (alice, bob):
        batch = [e.event_id for e in await hs.history_visibility.filter(user.user_id, events)]
        per_room = set()
        for room_id in rooms:
            per_room |= {e.event_id for e in await hs.history_visibility.filter(
                user.user_id, [e for e in events if e.room_id == room_id])}
        # The same events as room by room, in the order given.
        assert batch == [e for e in sent if e in per_room], user.user_id
    seen_by_bob = {(e.room_id, e.content["body"]) for e in await hs.history_visibility.filter(bob.user_id, events)}
    assert seen_by_bob == {(rooms[1], "before bob 0"), (rooms[1], "before bob 1"),
                           (rooms[0], "after bob joined two rooms"), (rooms[1], "after bob joined two rooms")}
