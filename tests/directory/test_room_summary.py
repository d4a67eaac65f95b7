"""Room summaries (MSC3266) and mutual rooms (MSC2666) over HTTP on both engines."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.support.rooms import new_user

SUMMARY = "/_matrix/client/v1/room_summary/"
UNSTABLE_SUMMARY = "/_matrix/client/unstable/im.nheko.summary/summary/"
MUTUAL = "/_matrix/client/v1/mutual_rooms"


async def test_a_public_room_is_summarised_for_anyone_even_without_a_token(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room(preset="public_chat", name="Plein", topic="Praatjes",
                                      room_alias_name="plein")
    server = alice.user_id.split(":", 1)[1]
    async with client.get(SUMMARY + quote(room_id)) as resp:
        assert resp.status == 200
        anonymous = await resp.json()
    assert anonymous["room_id"] == room_id
    assert (anonymous["name"], anonymous["topic"], anonymous["join_rule"]) == ("Plein", "Praatjes", "public")
    assert anonymous["num_joined_members"] == 1
    assert anonymous["canonical_alias"] == f"#plein:{server}"
    assert anonymous["room_version"] and anonymous["world_readable"] is False
    assert "membership" not in anonymous
    by_alias = await alice.call("GET", SUMMARY + quote(f"#plein:{server}"))
    assert by_alias == {**anonymous, "membership": "join"}
    assert await alice.call("GET", UNSTABLE_SUMMARY + quote(room_id)) == by_alias


async def test_a_private_room_is_summarised_for_members_and_invitees_but_hidden_from_others(client):
    alice, bob, eve = await new_user(client, "alice"), await new_user(client, "bob"), await new_user(client, "eve")
    room_id = await alice.create_room(preset="private_chat", invite=[bob.user_id])
    assert (await bob.call("GET", SUMMARY + quote(room_id)))["membership"] == "invite"
    hidden = await eve.call("GET", SUMMARY + quote(room_id), expect=404)
    unknown = await eve.call("GET", SUMMARY + quote("!nothere:example.org"), expect=404)
    assert hidden["errcode"] == unknown["errcode"] == "M_NOT_FOUND"
    async with client.get(SUMMARY + quote(room_id)) as resp:
        assert resp.status == 404


async def test_a_room_summary_of_a_malformed_identifier_is_400(client):
    alice = await new_user(client, "alice")
    body = await alice.call("GET", SUMMARY + "nonsense", expect=400)
    assert body["errcode"] == "M_INVALID_PARAM"


async def test_mutual_rooms_lists_the_rooms_both_users_joined(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    shared = sorted([await alice.create_room(preset="public_chat") for _ in range(2)])
    for room_id in shared:
        await bob.join(room_id)
    await alice.create_room()  # alice alone
    left = await alice.create_room(preset="public_chat")
    await bob.join(left)
    await bob.call("POST", f"/rooms/{left}/leave", {})
    body = await alice.call("GET", MUTUAL, user_id=bob.user_id)
    assert body == {"joined": shared, "count": 2}
    unstable = await bob.call("GET", "/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms",
                              user_id=alice.user_id)
    assert unstable == body


async def test_mutual_rooms_are_paged_by_a_hundred_with_a_next_batch(client, monkeypatch):
    import homeserver.rooms.reading as reading
    monkeypatch.setattr(reading, "MUTUAL_ROOMS_BATCH", 2)
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    shared = sorted([await alice.create_room(preset="public_chat") for _ in range(3)])
    for room_id in shared:
        await bob.join(room_id)
    first = await alice.call("GET", MUTUAL, user_id=bob.user_id)
    assert first["joined"] == shared[:2] and first["count"] == 3
    second = await alice.call("GET", MUTUAL, user_id=bob.user_id, **{"from": first["next_batch"]})
    assert second == {"joined": shared[2:], "count": 3}


@pytest.mark.parametrize(("params", "errcode"), [
    ({}, "M_MISSING_PARAM"),
    ({"user_id": "not-a-user"}, "M_INVALID_PARAM"),
    ({"user_id": "SELF"}, "M_INVALID_PARAM"),
    ({"user_id": "@bob:example.org", "from": "***"}, "M_INVALID_PARAM"),
])
async def test_mutual_rooms_refuse_bad_parameters(client, params, errcode):
    alice = await new_user(client, "alice")
    params = {k: (alice.user_id if v == "SELF" else v) for k, v in params.items()}
    body = await alice.call("GET", MUTUAL, expect=400, **params)
    assert body["errcode"] == errcode
