"""Room directory (/publicRooms, /directory/list/room), canonical alias validation and the user directory."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support.rooms import new_user


async def test_public_rooms_lists_rooms_created_public_with_their_details(client):
    alice = await new_user(client, "alice")
    public = await alice.create_room(visibility="public", name="Lobby", topic="say hi", room_alias_name="lobby")
    await alice.create_room(name="Hidden")
    listing = await alice.call("GET", "/publicRooms")
    assert [r["room_id"] for r in listing["chunk"]] == [public]
    entry = listing["chunk"][0]
    assert entry["name"] == "Lobby" and entry["topic"] == "say hi"
    assert entry["canonical_alias"].startswith("#lobby:")
    assert entry["num_joined_members"] == 1 and entry["join_rule"] == "public"
    assert entry["world_readable"] is False and entry["guest_can_join"] is False
    assert listing["total_room_count_estimate"] == 1


async def test_only_room_admins_may_publish_a_room(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    assert (await bob.call("GET", f"/directory/list/room/{room_id}"))["visibility"] == "private"
    await bob.call("PUT", f"/directory/list/room/{room_id}", {"visibility": "public"}, expect=403)
    await alice.call("PUT", f"/directory/list/room/{room_id}", {"visibility": "public"})
    assert (await bob.call("GET", f"/directory/list/room/{room_id}"))["visibility"] == "public"
    await alice.call("PUT", f"/directory/list/room/{room_id}", {"visibility": "secret"}, expect=400)
    await alice.call("GET", "/directory/list/room/!nope:localhost", expect=404)


async def test_public_rooms_filters_by_search_term_and_room_type_and_paginates(client):
    alice = await new_user(client, "alice")
    rooms = [await alice.create_room(visibility="public", name=f"Chess {i}") for i in range(5)]
    space = await alice.create_room(visibility="public", name="Chess space", creation_content={"type": "m.space"})
    await alice.create_room(visibility="public", topic="cooking")
    chess = await alice.call("POST", "/publicRooms", {"filter": {"generic_search_term": "CHESS"}})
    assert {r["room_id"] for r in chess["chunk"]} == {*rooms, space}
    spaces = await alice.call("POST", "/publicRooms", {"filter": {"room_types": ["m.space"]}})
    assert [r["room_id"] for r in spaces["chunk"]] == [space]
    assert spaces["chunk"][0]["room_type"] == "m.space"
    untyped = await alice.call("POST", "/publicRooms", {"filter": {"room_types": [None]}})
    assert space not in {r["room_id"] for r in untyped["chunk"]} and len(untyped["chunk"]) == 6
    seen, since = [], None
    for _ in range(10):
        page = await alice.call("POST", "/publicRooms", {"limit": 3, **({"since": since} if since else {})})
        assert page["total_room_count_estimate"] == 7
        seen += [r["room_id"] for r in page["chunk"]]
        since = page.get("next_batch")
        if since is None:
            break
    assert len(seen) == len(set(seen)) == 7


async def test_larger_rooms_come_first_in_the_public_room_list(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    small = await alice.create_room(visibility="public")
    big = await alice.create_room(visibility="public")
    await bob.join(big)
    listing = await alice.call("GET", "/publicRooms")
    assert [r["room_id"] for r in listing["chunk"]] == [big, small]


async def test_canonical_alias_must_name_aliases_of_the_room(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    other = await alice.create_room()
    server = alice.user_id.split(":", 1)[1]
    await alice.call("PUT", f"/directory/room/%23mine:{server}", {"room_id": room_id})
    await alice.call("PUT", f"/directory/room/%23theirs:{server}", {"room_id": other})
    path = f"/rooms/{room_id}/state/m.room.canonical_alias/"
    await alice.call("PUT", path, {"alias": f"#mine:{server}"})
    body = await alice.call("PUT", path, {"alias": f"#theirs:{server}"}, expect=400)
    assert body["errcode"] == "M_BAD_ALIAS"
    body = await alice.call("PUT", path, {"alias": f"#mine:{server}", "alt_aliases": [f"#missing:{server}"]},
                            expect=400)
    assert body["errcode"] == "M_BAD_ALIAS"
    body = await alice.call("PUT", path, {"alias": "not an alias"}, expect=400)
    assert body["errcode"] == "M_INVALID_PARAM"
    await alice.call("PUT", path, {})


async def test_user_directory_finds_users_sharing_a_room_or_in_public_rooms_only(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    carol, dave = await new_user(client, "carol"), await new_user(client, "dave")
    await bob.call("PUT", f"/profile/{bob.user_id}/displayname", {"displayname": "Bob Builder"})
    private = await alice.create_room()
    await alice.call("POST", f"/rooms/{private}/invite", {"user_id": bob.user_id})
    await bob.join(private)
    await dave.create_room(preset="public_chat")
    found = await alice.call("POST", "/user_directory/search", {"search_term": "builder"})
    assert found == {"results": [{"user_id": bob.user_id, "display_name": "Bob Builder"}], "limited": False}
    assert [r["user_id"] for r in (await alice.call("POST", "/user_directory/search",
                                                    {"search_term": "dave"}))["results"]] == [dave.user_id]
    unfindable = await alice.call("POST", "/user_directory/search", {"search_term": carol.user_id[1:6]})
    assert unfindable["results"] == []


async def test_user_directory_ranks_better_matches_first_and_reports_limited(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    names = {"annabel": "Ann Other", "ann": "Ann", "joanne": "Joanne Ann-Marie"}
    users = {}
    for localpart, name in names.items():
        user = await new_user(client, localpart)
        await user.call("PUT", f"/profile/{user.user_id}/displayname", {"displayname": name})
        await alice.call("POST", f"/rooms/{room_id}/invite", {"user_id": user.user_id})
        await user.join(room_id)
        users[localpart] = user.user_id
    found = await alice.call("POST", "/user_directory/search", {"search_term": "ann"})
    ranked = [r["user_id"] for r in found["results"]]
    assert ranked[0] == users["ann"]
    assert set(ranked) == set(users.values())
    limited = await alice.call("POST", "/user_directory/search", {"search_term": "ann", "limit": 2})
    assert len(limited["results"]) == 2 and limited["limited"] is True


@pytest.mark.parametrize("database_config", ["sqlite"], indirect=True)
async def test_search_all_users_finds_users_in_no_shared_room(make_homeserver):
    hs = await make_homeserver(user_directory={"search_all_users": True})
    async with aiohttp.ClientSession(hs.base_url("client")) as session:
        alice = await new_user(session, "alice")
        loner = await new_user(session, "loner")
        found = await alice.call("POST", "/user_directory/search", {"search_term": "loner"})
        assert [r["user_id"] for r in found["results"]] == [loner.user_id]


async def test_user_directory_counts_public_join_rules_and_world_readable_rooms_as_public_not_publication(client):
    alice, carol = await new_user(client, "alice"), await new_user(client, "carol")
    erin, fran = await new_user(client, "erin"), await new_user(client, "fran")
    # Alice is only in a private room, with Carol.
    private = await alice.create_room(preset="private_chat", invite=[carol.user_id])
    await carol.join(private)
    # Erin's room is invite-only though listed in the room directory: its members stay private.
    listed = await erin.create_room(preset="private_chat", visibility="public")
    assert (await erin.call("GET", f"/directory/list/room/{listed}"))["visibility"] == "public"
    # Fran's room is invite-only but world-readable: anyone can see its members, so they are public.
    await fran.create_room(preset="private_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable"}}])

    async def finds(term: str) -> list[str]:
        return [r["user_id"] for r in (await alice.call("POST", "/user_directory/search",
                                                        {"search_term": term}))["results"]]

    assert await finds("carol") == [carol.user_id]
    assert await finds("erin") == []
    assert await finds("fran") == [fran.user_id]
