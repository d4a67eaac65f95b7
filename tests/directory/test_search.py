"""Server-side search (POST /search) over HTTP, on SQLite (FTS5) and PostgreSQL (tsvector)."""

from __future__ import annotations

from typing import Any

from tests.support.rooms import User, new_user


def _search_body(term: str, **criteria: Any) -> dict[str, Any]:
    return {"search_categories": {"room_events": {"search_term": term, **criteria}}}


async def _search(user: User, term: str, expect: int = 200, next_batch: str | None = None,
                  **criteria: Any) -> dict[str, Any]:
    params = {"next_batch": next_batch} if next_batch else {}
    body = await user.call("POST", "/search", _search_body(term, **criteria), expect=expect, **params)
    return body.get("search_categories", {}).get("room_events", body)


def _bodies(result: dict[str, Any]) -> list[str]:
    return [r["result"]["content"].get("body") for r in result["results"]]


async def test_search_finds_messages_by_word_and_prefix_in_joined_rooms(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    await alice.send(room_id, "the quick brown fox")
    await alice.send(room_id, "a lazy dog sleeps")
    found = await _search(alice, "fox")
    assert _bodies(found) == ["the quick brown fox"]
    assert found["count"] == 1
    assert found["results"][0]["result"]["room_id"] == room_id
    assert _bodies(await _search(alice, "sleep")) == ["a lazy dog sleeps"]
    assert _bodies(await _search(alice, "quick fox")) == ["the quick brown fox"]
    assert _bodies(await _search(alice, "quick dog")) == []


async def test_search_never_returns_events_of_rooms_the_searcher_is_not_in(client):
    alice, eve = await new_user(client, "alice"), await new_user(client, "eve")
    room_id = await alice.create_room(preset="public_chat")
    await alice.send(room_id, "secret plans")
    assert _bodies(await _search(eve, "secret")) == []
    await eve.join(room_id)
    assert _bodies(await _search(eve, "secret")) == ["secret plans"]


async def test_search_hides_history_before_joining_when_visibility_is_joined(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}])
    await alice.send(room_id, "before bob joined")
    await bob.join(room_id)
    await alice.send(room_id, "after bob joined")
    assert _bodies(await _search(bob, "joined")) == ["after bob joined"]
    assert len(_bodies(await _search(alice, "joined"))) == 2


async def test_redacted_messages_drop_out_of_search_results(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    event_id = await alice.send(room_id, "regrettable words")
    assert _bodies(await _search(alice, "regrettable")) == ["regrettable words"]
    await alice.call("PUT", f"/rooms/{room_id}/redact/{event_id}/r1", {})
    assert (await _search(alice, "regrettable"))["results"] == []


async def test_recent_order_pages_with_next_batch_until_every_match_is_seen(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    for i in range(7):
        await alice.send(room_id, f"update number {i}")
    seen: list[str] = []
    token = None
    for _ in range(10):
        page = await _search(alice, "update", next_batch=token, order_by="recent", filter={"limit": 3})
        seen += _bodies(page)
        token = page.get("next_batch")
        if token is None:
            break
    assert seen == [f"update number {i}" for i in reversed(range(7))]


async def test_rank_order_pages_without_repeating_results(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    for i in range(5):
        await alice.send(room_id, f"ranked item {i}")
    first = await _search(alice, "ranked", filter={"limit": 2})
    assert len(first["results"]) == 2 and "next_batch" in first
    ids = [r["result"]["event_id"] for r in first["results"]]
    token = first["next_batch"]
    while token:
        page = await _search(alice, "ranked", next_batch=token, filter={"limit": 2})
        ids += [r["result"]["event_id"] for r in page["results"]]
        token = page.get("next_batch")
    assert len(ids) == len(set(ids)) == 5


async def test_search_covers_room_names_and_topics_and_honours_keys(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room(name="Gardening club", topic="tomatoes and basil")
    await alice.send(room_id, "nothing relevant")
    names = await _search(alice, "gardening")
    assert [r["result"]["type"] for r in names["results"]] == ["m.room.name"]
    topics = await _search(alice, "basil", keys=["content.topic"])
    assert [r["result"]["type"] for r in topics["results"]] == ["m.room.topic"]
    assert (await _search(alice, "basil", keys=["content.body"]))["results"] == []


async def test_filter_context_and_groupings_shape_the_results(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await alice.send(room_id, "first")
    await bob.send(room_id, "banana split")
    await alice.send(room_id, "last")
    other = await alice.create_room()
    await alice.send(other, "banana bread")
    only_bob = await _search(alice, "banana", filter={"senders": [bob.user_id]})
    assert _bodies(only_bob) == ["banana split"]
    only_other = await _search(alice, "banana", filter={"rooms": [other]})
    assert _bodies(only_other) == ["banana bread"]
    with_context = await _search(alice, "split", event_context={"before_limit": 1, "after_limit": 1,
                                                                "include_profile": True})
    context = with_context["results"][0]["context"]
    assert [e["content"]["body"] for e in context["events_before"]] == ["first"]
    assert [e["content"]["body"] for e in context["events_after"]] == ["last"]
    assert bob.user_id in context["profile_info"]
    grouped = await _search(alice, "banana", groupings={"group_by": [{"key": "room_id"}, {"key": "sender"}]})
    assert set(grouped["groups"]["room_id"]) == {room_id, other}
    assert set(grouped["groups"]["sender"]) == {alice.user_id, bob.user_id}


async def test_malformed_search_requests_are_rejected_naming_the_field(client):
    alice = await new_user(client, "alice")
    body = await alice.call("POST", "/search", {"search_categories": {"room_events": {}}}, expect=400)
    assert "search_term" in body["error"]
    body = await alice.call("POST", "/search", _search_body("x", order_by="newest"), expect=400)
    assert "order_by" in body["error"]
    body = await alice.call("POST", "/search", _search_body("x"), expect=400, next_batch="garbage")
    assert body["errcode"] == "M_INVALID_PARAM"


async def test_unusual_search_terms_are_matched_literally_and_never_break_the_query(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    await alice.send(room_id, "snake_case and ünïcödé words")
    for term in ['"', "a:b", "'quote", "&|!():*", "NEAR(", "the", "", "   "]:
        result = await _search(alice, term)
        assert isinstance(result["results"], list), term
    assert _bodies(await _search(alice, "ünïcödé")) == ["snake_case and ünïcödé words"]
    assert _bodies(await _search(alice, "snake_case")) == ["snake_case and ünïcödé words"]


async def test_rank_order_puts_the_better_match_first_and_recent_order_the_newest(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    await alice.send(room_id, "apple apple apple")
    await alice.send(room_id, "an apple among a great many other words in a long and winding sentence")
    by_rank = await _search(alice, "apple", order_by="rank")
    assert _bodies(by_rank)[0] == "apple apple apple"
    assert by_rank["results"][0]["rank"] > by_rank["results"][1]["rank"]
    by_recent = await _search(alice, "apple", order_by="recent")
    assert _bodies(by_recent)[0].startswith("an apple among")
    assert by_recent["count"] == 2


async def test_room_filters_and_former_membership_bound_the_rooms_searched(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    shared = await alice.create_room(preset="public_chat")
    await bob.join(shared)
    await alice.send(shared, "kumquat before bob left")
    await bob.call("POST", f"/rooms/{shared}/leave", {})
    await alice.send(shared, "kumquat after bob left")
    own = await bob.create_room()
    await bob.send(own, "kumquat in bob's own room")
    never = await alice.create_room()
    await alice.send(never, "kumquat where bob never was")
    # A former member still finds what was sent while they were in the room, and nothing after.
    assert sorted(_bodies(await _search(bob, "kumquat"))) == ["kumquat before bob left", "kumquat in bob's own room"]
    assert _bodies(await _search(bob, "kumquat", filter={"not_rooms": [own]})) == ["kumquat before bob left"]
    assert _bodies(await _search(bob, "kumquat", filter={"rooms": [own]})) == ["kumquat in bob's own room"]
    # Naming a room in the filter does not open it to a user who was never in it.
    assert (await _search(bob, "kumquat", filter={"rooms": [never]}))["results"] == []
    assert (await _search(bob, "kumquat", filter={"rooms": []}))["results"] == []


async def test_an_indexed_event_that_left_the_timeline_is_skipped_and_paging_goes_on(hs, client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    event_ids = [await alice.send(room_id, f"quince number {i}") for i in range(5)]
    assert len((await _search(alice, "quince"))["results"]) == 5
    # As if it had become an outlier without being unindexed: the index row stays, the event is not shown.
    await hs.db.execute("t", "UPDATE events SET outlier = TRUE WHERE event_id = ?", (event_ids[3],))
    for order in ("recent", "rank"):
        seen: list[str] = []
        token = None
        for _ in range(10):
            page = await _search(alice, "quince", next_batch=token, order_by=order, filter={"limit": 1})
            seen += [r["result"]["event_id"] for r in page["results"]]
            token = page.get("next_batch")
            if token is None:
                break
        assert sorted(seen) == sorted(event_ids[:3] + event_ids[4:]), order


async def test_hits_of_several_rooms_are_each_shown_by_their_own_room_history_and_page_in_order(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")

    async def room(visibility: str) -> str:
        return await alice.create_room(preset="public_chat", initial_state=[
            {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": visibility}}])

    joined_only, shared, left = await room("joined"), await room("shared"), await room("shared")
    await bob.join(left)
    sent: list[tuple[str, str]] = []  # (room, body), oldest first

    async def say(room_id: str, body: str) -> None:
        await alice.send(room_id, body)
        sent.append((room_id, body))

    await say(joined_only, "persimmon joined-only before bob")
    await say(shared, "persimmon shared before bob")
    await say(left, "persimmon while bob is in")
    await bob.join(joined_only)
    await bob.join(shared)
    await bob.call("POST", f"/rooms/{left}/leave", {})
    await say(left, "persimmon after bob left")
    await say(joined_only, "persimmon joined-only with bob")
    await say(shared, "persimmon shared with bob")
    hidden = {"persimmon joined-only before bob", "persimmon after bob left"}
    expected = [body for _, body in reversed(sent) if body not in hidden]
    # Every page mixes rooms; hits hidden in one room never fill a page or end the paging early.
    for order in ("recent", "rank"):
        seen: list[str] = []
        token = None
        for _ in range(10):
            page = await _search(bob, "persimmon", next_batch=token, order_by=order, filter={"limit": 1})
            seen += _bodies(page)
            token = page.get("next_batch")
            if token is None:
                break
        if order == "recent":
            assert seen == expected
        else:
            assert sorted(seen) == sorted(expected)
    # Alice was in every room all along: she sees every hit, newest first, in one page.
    assert _bodies(await _search(alice, "persimmon", order_by="recent")) == [body for _, body in reversed(sent)]


async def test_a_hit_with_an_edit_carries_its_bundled_aggregation(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    original = await alice.send(room_id, "apricot jam")
    plain = await alice.send(room_id, "apricot tart")
    edit = await alice.send(room_id, "* apricot jam recipe", **{
        "m.new_content": {"msgtype": "m.text", "body": "apricot jam recipe"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original}})
    found = {r["result"]["event_id"]: r["result"] for r in (await _search(alice, "apricot"))["results"]}
    assert set(found) == {original, plain, edit}
    assert found[original]["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit
    assert "m.relations" not in found[plain]["unsigned"]
    assert found[plain]["unsigned"]["age"] >= 0


async def test_each_hit_has_the_same_rank_newest_first_as_best_first(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    await alice.send(room_id, "fig fig fig")
    await alice.send(room_id, "a fig among a great many other words in a long sentence")
    await alice.send(room_id, "fig and fig")
    by_rank = {r["result"]["event_id"]: r["rank"] for r in (await _search(alice, "fig"))["results"]}
    by_recent = {r["result"]["event_id"]: r["rank"] for r in (await _search(alice, "fig", order_by="recent"))["results"]}
    assert by_recent == by_rank
    assert len(set(by_rank.values())) == 3 and all(rank > 0 for rank in by_rank.values())
