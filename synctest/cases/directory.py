"""Room directory (/publicRooms, /directory/list/room), canonical alias checks and the user directory."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import Any

from synctest.cases.messages import CLIENT, create_room, join, q
from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case
from synctest.users import User

PUBLIC_ROOMS = CLIENT + "/publicRooms"
LIST_ROOM = CLIENT + "/directory/list/room/{roomId}"
ALIAS = CLIENT + "/directory/room/{roomAlias}"
USER_SEARCH = CLIENT + "/user_directory/search"
# Servers update their user directory in the background (Synapse does), so searches are retried.
DIRECTORY_WAIT_SECONDS = 15.0


def unique_word(prefix: str) -> str:
    return f"{prefix}{os.urandom(5).hex()}"


def list_path(room_id: str) -> str:
    return LIST_ROOM.replace("{roomId}", q(room_id))


async def search_public_rooms(ctx: Context, user: User, term: str, **body: Any) -> dict[str, Any]:
    payload = {"filter": {"generic_search_term": term, **body.pop("filter", {})}, **body}
    response = await ctx.post(PUBLIC_ROOMS, json=payload, token=user.access_token)
    expect_status(response, 200)
    return expect_schema(response, PUBLIC_ROOMS)


def room_ids(listing: dict[str, Any]) -> list[str]:
    return [room["room_id"] for room in listing["chunk"]]


async def published(ctx: Context, admin: User, room_id: str) -> bool:
    """Whether the room is in the directory, publishing it if creation did not.

    A server may refuse publication by policy (stock Synapse denies it unless its
    room_list_publication_rules allow it): that is a 403 and the room stays unlisted.
    """
    if (await ctx.get(list_path(room_id))).json.get("visibility") == "public":
        return True
    response = await ctx.put(list_path(room_id), json={"visibility": "public"}, token=admin.access_token)
    if response.status == 403:
        expect_error(response, 403, response.json.get("errcode", "M_FORBIDDEN"))
        return False
    expect_status(response, 200)
    return True


@case
async def rooms_created_public_are_listed_with_their_name_topic_and_alias(ctx: Context) -> None:
    # Publishing may be limited to server admins (Synapse's publication rules); an admin may always.
    alice = await ctx.register_admin_user()
    word = unique_word("lobby")
    room_id = await create_room(ctx, alice, visibility="public", preset="public_chat", name=f"The {word}",
                                topic="come in", room_alias_name=word)
    if not await published(ctx, alice, room_id):
        expect(room_ids(await search_public_rooms(ctx, alice, word)) == [], "an unpublished room is not listed")
        return
    listing = await search_public_rooms(ctx, alice, word)
    expect(room_ids(listing) == [room_id], f"expected only {room_id} for {word!r}, got {room_ids(listing)}")
    entry = listing["chunk"][0]
    expect(entry.get("name") == f"The {word}" and entry.get("topic") == "come in", f"entry details: {entry}")
    expect(str(entry.get("canonical_alias", "")).startswith(f"#{word}:"), f"canonical_alias: {entry}")
    expect(entry["num_joined_members"] == 1 and entry["world_readable"] is False, f"entry counts: {entry}")
    expect(listing["total_room_count_estimate"] >= 1, "total_room_count_estimate counts the room")
    unauthenticated = await ctx.get(PUBLIC_ROOMS, params={"limit": "1"}, token=alice.access_token)
    expect_status(unauthenticated, 200)
    expect_schema(unauthenticated, PUBLIC_ROOMS)


@case
async def only_room_admins_change_the_directory_visibility_of_a_room(ctx: Context) -> None:
    alice, bob = await ctx.register_admin_user(), await ctx.register_user()
    word = unique_word("club")
    room_id = await create_room(ctx, alice, preset="public_chat", name=word)
    await join(ctx, bob, room_id)
    shown = await ctx.get(list_path(room_id))
    expect_status(shown, 200)
    expect(expect_schema(shown, LIST_ROOM)["visibility"] == "private", "new rooms are private")
    expect_error(await ctx.put(list_path(room_id), json={"visibility": "public"}, token=bob.access_token),
                 403, "M_FORBIDDEN")
    if not await published(ctx, alice, room_id):
        expect((await ctx.get(list_path(room_id))).json["visibility"] == "private", "refused means unpublished")
        return
    expect((await ctx.get(list_path(room_id))).json["visibility"] == "public", "published after PUT")
    expect(room_ids(await search_public_rooms(ctx, alice, word)) == [room_id], "the published room is listed")
    expect_status(await ctx.put(list_path(room_id), json={"visibility": "private"}, token=alice.access_token),
                  200)
    expect(room_ids(await search_public_rooms(ctx, alice, word)) == [], "an unpublished room is not listed")
    expect_status(await ctx.get(list_path(f"!unknown{os.urandom(4).hex()}:{alice.user_id.split(':', 1)[1]}")),
                  404)


@case
async def public_rooms_paginate_and_filter_by_room_type(ctx: Context) -> None:
    alice = await ctx.register_admin_user()
    word = unique_word("pages")
    plain = [await create_room(ctx, alice, visibility="public", preset="public_chat", name=f"{word} {i}")
             for i in range(3)]
    space = await create_room(ctx, alice, visibility="public", preset="public_chat", name=f"{word} space",
                              creation_content={"type": "m.space"})
    allowed = [await published(ctx, alice, room_id) for room_id in [*plain, space]]
    if not all(allowed):
        expect(not any(allowed), "the server's publication policy treats alike rooms alike")
        expect(room_ids(await search_public_rooms(ctx, alice, word)) == [], "unpublished rooms are not listed")
        return
    seen: list[str] = []
    since = None
    for _ in range(10):
        page = await search_public_rooms(ctx, alice, word, limit=2, **({"since": since} if since else {}))
        seen += room_ids(page)
        since = page.get("next_batch")
        if not since:
            break
    expect(sorted(seen) == sorted([*plain, space]), f"paging saw {seen}")
    spaces = await search_public_rooms(ctx, alice, word, filter={"room_types": ["m.space"]})
    expect(room_ids(spaces) == [space], f"room_types m.space gave {room_ids(spaces)}")
    expect(spaces["chunk"][0].get("room_type") == "m.space", "room_type is reported")
    untyped = await search_public_rooms(ctx, alice, word, filter={"room_types": [None]})
    expect(sorted(room_ids(untyped)) == sorted(plain), f"room_types [null] gave {room_ids(untyped)}")


@case
async def canonical_alias_events_must_name_aliases_of_the_room(ctx: Context) -> None:
    alice = await ctx.register_user()
    server = alice.user_id.split(":", 1)[1]
    room_id = await create_room(ctx, alice)
    other_room = await create_room(ctx, alice)
    mine, theirs = f"#{unique_word('mine')}:{server}", f"#{unique_word('theirs')}:{server}"
    for alias, target in ((mine, room_id), (theirs, other_room)):
        created = await ctx.put(ALIAS.replace("{roomAlias}", q(alias)), json={"room_id": target},
                                token=alice.access_token)
        expect_status(created, 200)
    path = f"{CLIENT}/rooms/{q(room_id)}/state/m.room.canonical_alias/"
    expect_status(await ctx.put(path, json={"alias": mine}, token=alice.access_token), 200)
    expect_error(await ctx.put(path, json={"alias": theirs}, token=alice.access_token), 400, "M_BAD_ALIAS")
    missing = f"#{unique_word('missing')}:{server}"
    expect_error(await ctx.put(path, json={"alias": mine, "alt_aliases": [missing]}, token=alice.access_token),
                 400, "M_BAD_ALIAS")


async def search_users_until(ctx: Context, user: User, term: str, done: Callable[[dict[str, Any]], bool],
                             limit: int = 10) -> dict[str, Any]:
    deadline = time.monotonic() + DIRECTORY_WAIT_SECONDS
    while True:
        response = await ctx.post(USER_SEARCH, json={"search_term": term, "limit": limit},
                                  token=user.access_token)
        expect_status(response, 200)
        # Synapse sends `"avatar_url": null` for users without one, which the schema does not allow;
        # the spec's shape is checked with such nulls dropped.
        body = response.json
        for result in body.get("results", []):
            for key in ("avatar_url", "display_name"):
                if result.get(key, "") is None:
                    del result[key]
        expect_schema(dataclasses.replace(response, body=json.dumps(body).encode()), USER_SEARCH)
        if done(body) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.5)


async def set_displayname(ctx: Context, user: User, name: str) -> None:
    path = f"{CLIENT}/profile/{q(user.user_id)}/displayname"
    expect_status(await ctx.put(path, json={"displayname": name}, token=user.access_token), 200)


@case
async def user_directory_finds_room_mates_but_not_strangers(ctx: Context) -> None:
    alice, bob, stranger = await ctx.register_user(), await ctx.register_user(), await ctx.register_user()
    word = unique_word("builder")
    await set_displayname(ctx, bob, f"Bob {word}")
    await set_displayname(ctx, stranger, f"Stranger {word}")
    room_id = await create_room(ctx, alice, preset="private_chat", invite=[bob.user_id])
    await join(ctx, bob, room_id)
    found = await search_users_until(ctx, alice, word, lambda b: bool(b["results"]))
    ids = [r["user_id"] for r in found["results"]]
    expect(ids == [bob.user_id], f"searching {word!r} found {ids}, expected only the room mate")
    expect(found["results"][0].get("display_name") == f"Bob {word}", f"display_name: {found['results']}")
    expect(found["limited"] is False, "limited is false when everything fitted")


@case
async def user_directory_reports_limited_when_more_users_match(ctx: Context) -> None:
    alice = await ctx.register_user()
    word = unique_word("crowd")
    room_id = await create_room(ctx, alice, preset="public_chat")
    for i in range(3):
        member = await ctx.register_user()
        await set_displayname(ctx, member, f"{word} {i}")
        await join(ctx, member, room_id)
    every = await search_users_until(ctx, alice, word, lambda b: len(b["results"]) == 3)
    expect(len(every["results"]) == 3, f"expected the 3 members, got {every['results']}")
    limited = await search_users_until(ctx, alice, word, lambda b: True, limit=2)
    expect(len(limited["results"]) == 2 and limited["limited"] is True, f"limit 2 gave {limited}")


@case
async def room_aliases_are_listed_at_the_stable_and_msc2432_paths(ctx: Context) -> None:
    # Servers advertising `org.matrix.msc2432` serve the list at its unstable path too.
    alice = await ctx.register_user()
    word = unique_word("aliases")
    room_id = await create_room(ctx, alice, room_alias_name=word)
    advertised = (await ctx.get("/_matrix/client/versions")).json.get("unstable_features", {})
    paths = [f"{CLIENT}/rooms/{q(room_id)}/aliases"]
    if advertised.get("org.matrix.msc2432"):
        paths.append(f"/_matrix/client/unstable/org.matrix.msc2432/rooms/{q(room_id)}/aliases")
    for path in paths:
        response = await ctx.get(path, token=alice.access_token)
        expect_status(response, 200)
        aliases = response.json.get("aliases")
        expect(isinstance(aliases, list) and any(a.startswith(f"#{word}:") for a in aliases),
               f"{path} lists {aliases}, not #{word}")


async def user_directory_public_means_joinable_or_world_readable_not_published(ctx: Context) -> None:
    alice, carol, dave = await ctx.register_user(), await ctx.register_user(), await ctx.register_user()
    erin, fran = await ctx.register_user(), await ctx.register_user()
    word = unique_word("neighbour")
    for user, name in ((carol, "Carol"), (dave, "Dave"), (erin, "Erin"), (fran, "Fran")):
        await set_displayname(ctx, user, f"{name} {word}")
    # Alice is only in a private room, with Carol.
    private = await create_room(ctx, alice, preset="private_chat", invite=[carol.user_id])
    await join(ctx, carol, private)
    await create_room(ctx, dave, preset="public_chat")
    # Invite-only, though listed in the room directory: its members are not public.
    await create_room(ctx, erin, preset="private_chat", visibility="public")
    # Invite-only but world-readable: its members are public.
    await create_room(ctx, fran, preset="private_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable"}}])
    found = await search_users_until(ctx, alice, word, lambda b: len(b["results"]) >= 3)
    ids = sorted(r["user_id"] for r in found["results"])
    expect(ids == sorted([carol.user_id, dave.user_id, fran.user_id]),
           f"searching {word!r} found {ids}; expected the room mate and the public rooms' members only")
