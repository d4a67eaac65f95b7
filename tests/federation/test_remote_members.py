"""Members of a room we joined over federation are members like any other once the room's state is
known: the state came as outliers, which record no membership, so the rows readers of
`room_memberships` use are added when the join brings the full state, or when a partial-state room
gets it. Admin queries of a remote user's rooms and the user directory then see them."""

from __future__ import annotations

from tests.federation.helpers import user_with_displayname
from tests.federation.resident import client_call
from tests.federation.test_join_remote import join, resident
from tests.federation.test_partial_state_joins import fed_fully_joined, join_remote, partial_resident


async def directory_search(hs, ca, token: str, term: str) -> dict[str, str | None]:
    status, body = await client_call(hs, ca, token, "POST", "/_matrix/client/v3/user_directory/search",
                                     {"search_term": term, "limit": 50})
    assert status == 200, body
    return {r["user_id"]: r.get("display_name") for r in body["results"]}


async def test_remote_members_of_a_fully_joined_room_have_membership_rows(fed_hs, ca, make_remote):
    room = await resident(make_remote)
    zoe = room.user("zoe")
    room.send("m.room.member", {"membership": "join", "displayname": "Zoë Zeldzaam"}, state_key=zoe, sender=zoe)
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    assert (await join(fed_hs, ca, dave["access_token"], room.room_id, [room.remote.server_name]))[0] == 200

    assert await fed_hs.admin_store.rooms_of_user_ever(zoe) == [room.room_id]
    assert await fed_hs.admin_store.rooms_of_user_ever(room.creator) == [room.room_id]
    assert await directory_search(fed_hs, ca, dave["access_token"], "zeldzaam") == {zoe: "Zoë Zeldzaam"}
    # Our own user is found by their profile as before.
    assert dave["user_id"] in await directory_search(fed_hs, ca, dave["access_token"], "dave")


async def test_remote_members_of_a_partial_state_room_get_rows_once_its_state_is_complete(fed_hs, ca, make_remote):
    room = await partial_resident(make_remote, members=5)
    dave = await user_with_displayname(fed_hs, ca, "dave", "Dave")
    await join_remote(fed_hs, ca, dave["access_token"], room)
    await fed_fully_joined(fed_hs, room.room_id)
    for i in range(5):
        assert await fed_hs.admin_store.rooms_of_user_ever(room.user(f"member{i}")) == [room.room_id]
    found = await directory_search(fed_hs, ca, dave["access_token"], "member")
    assert set(found) == {room.user(f"member{i}") for i in range(5)}
