"""Server-side search: POST /search over room events."""

from __future__ import annotations

import os
from typing import Any

from synctest.cases.messages import CLIENT, create_room, join, q, send_text
from synctest.checks import expect, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case
from synctest.users import User

SEARCH = CLIENT + "/search"


def unique_word(prefix: str) -> str:
    return f"{prefix}{os.urandom(5).hex()}"


async def search(ctx: Context, user: User, term: str, next_batch: str | None = None,
                 **criteria: Any) -> dict[str, Any]:
    body = {"search_categories": {"room_events": {"search_term": term, **criteria}}}
    response = await ctx.post(SEARCH, json=body, token=user.access_token,
                              params={"next_batch": next_batch} if next_batch else None)
    expect_status(response, 200)
    return expect_schema(response, SEARCH)["search_categories"]["room_events"]


def bodies(result: dict[str, Any]) -> list[str]:
    return [r["result"]["content"].get("body") for r in result.get("results", [])]


@case
async def search_finds_messages_in_rooms_the_user_is_in(ctx: Context) -> None:
    alice, eve = await ctx.register_user(), await ctx.register_user()
    word = unique_word("needle")
    room_id = await create_room(ctx, alice, preset="public_chat")
    await send_text(ctx, alice, room_id, f"a {word} in the haystack")
    await send_text(ctx, alice, room_id, "only hay here")
    found = await search(ctx, alice, word)
    expect(bodies(found) == [f"a {word} in the haystack"], f"search {word!r} found {bodies(found)}")
    expect(found.get("count") == 1, f"count {found.get('count')}")
    expect(found["results"][0]["result"]["room_id"] == room_id, "the result names its room")
    expect(bodies(await search(ctx, eve, word)) == [], "a non-member finds nothing")
    await join(ctx, eve, room_id)
    expect(bodies(await search(ctx, eve, word)) == [f"a {word} in the haystack"], "a member finds it")


@case
async def search_by_recent_pages_with_next_batch(ctx: Context) -> None:
    alice = await ctx.register_user()
    word = unique_word("update")
    room_id = await create_room(ctx, alice)
    for i in range(5):
        await send_text(ctx, alice, room_id, f"{word} number {i}")
    seen: list[str] = []
    token = None
    for _ in range(10):
        page = await search(ctx, alice, word, next_batch=token, order_by="recent", filter={"limit": 2})
        seen += bodies(page)
        token = page.get("next_batch")
        if not token:
            break
    expect(seen == [f"{word} number {i}" for i in reversed(range(5))], f"recent order paged {seen}")


@case
async def search_returns_context_and_groups_when_asked(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    word = unique_word("middle")
    room_id = await create_room(ctx, alice, preset="public_chat")
    await join(ctx, bob, room_id)
    await send_text(ctx, alice, room_id, "before it")
    await send_text(ctx, bob, room_id, f"the {word} one")
    await send_text(ctx, alice, room_id, "after it")
    found = await search(ctx, alice, word, event_context={"before_limit": 1, "after_limit": 1},
                         groupings={"group_by": [{"key": "room_id"}]})
    expect(bodies(found) == [f"the {word} one"], f"found {bodies(found)}")
    context = found["results"][0].get("context", {})
    expect([e["content"].get("body") for e in context.get("events_before", [])] == ["before it"],
           f"events_before: {context.get('events_before')}")
    expect([e["content"].get("body") for e in context.get("events_after", [])] == ["after it"],
           f"events_after: {context.get('events_after')}")
    group = found.get("groups", {}).get("room_id", {}).get(room_id, {})
    expect(group.get("results") == [found["results"][0]["result"]["event_id"]], f"groups: {found.get('groups')}")


@case
async def search_honours_the_filter_and_the_keys(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    word = unique_word("topic")
    room_id = await create_room(ctx, alice, preset="public_chat", topic=f"about {word}")
    await join(ctx, bob, room_id)
    await send_text(ctx, bob, room_id, f"bob says {word}")
    await send_text(ctx, alice, room_id, f"alice says {word}")
    only_bob = await search(ctx, alice, word, keys=["content.body"], filter={"senders": [bob.user_id]})
    expect(bodies(only_bob) == [f"bob says {word}"], f"senders filter gave {bodies(only_bob)}")
    topics = await search(ctx, alice, word, keys=["content.topic"])
    expect([r["result"]["type"] for r in topics["results"]] == ["m.room.topic"], f"topic search: {topics}")


@case
async def redacted_messages_are_not_search_results(ctx: Context) -> None:
    alice = await ctx.register_user()
    word = unique_word("oops")
    room_id = await create_room(ctx, alice)
    event_id = await send_text(ctx, alice, room_id, f"{word} regrettable")
    expect(bodies(await search(ctx, alice, word)) == [f"{word} regrettable"], "found before redaction")
    redact = f"{CLIENT}/rooms/{q(room_id)}/redact/{q(event_id)}/synctest-{os.urandom(4).hex()}"
    expect_status(await ctx.put(redact, json={}, token=alice.access_token), 200)
    expect(bodies(await search(ctx, alice, word)) == [], "a redacted message is no longer found")


@case
async def search_without_a_search_term_is_rejected(ctx: Context) -> None:
    alice = await ctx.register_user()
    response = await ctx.post(SEARCH, json={"search_categories": {"room_events": {}}}, token=alice.access_token)
    expect_status(response, 400)
    expect(str(response.json.get("errcode", "")).startswith("M_"), f"a Matrix error: {response.json}")
