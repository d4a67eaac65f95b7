"""Typing notifications: the endpoint, expiry, the in-memory stream and its sync provider."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.ephemeral.typing import MAX_TIMEOUT_MS, parse_typing_body
from homeserver.errors import MatrixError
from tests.support.rooms import new_user


def typing_path(room_id: str, user_id: str) -> str:
    return f"/rooms/{room_id}/typing/{user_id}"


async def room_with_two(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    return alice, bob, room_id


async def typing_seen_by(hs, user_id: str, room_id: str, since: int = 0):
    position = await hs.typing.current_position()
    return (await hs.typing.events_for_rooms(user_id, [room_id], since, position)).get(room_id)


@pytest.mark.parametrize(("body", "expected"), [
    ({"typing": True, "timeout": 5000}, (True, 5000)),
    ({"typing": True}, (True, 30_000)),
    ({"typing": True, "timeout": 10 * MAX_TIMEOUT_MS}, (True, MAX_TIMEOUT_MS)),
    ({"typing": False}, (False, 0)),
    ({"typing": False, "timeout": 100}, (False, 100)),
    ({"typing": True, "timeout": 2500.0}, (True, 2500)),
])
def test_typing_bodies_parse_to_a_flag_and_a_capped_timeout(body, expected):
    assert parse_typing_body(body) == expected


@pytest.mark.parametrize(("body", "errcode"), [
    ({}, "M_MISSING_PARAM"),
    ({"typing": "yes"}, "M_BAD_JSON"),
    ({"typing": 1}, "M_BAD_JSON"),
    ({"typing": True, "timeout": "30000"}, "M_BAD_JSON"),
    ({"typing": True, "timeout": True}, "M_BAD_JSON"),
    ({"typing": True, "timeout": -1}, "M_INVALID_PARAM"),
])
def test_malformed_typing_bodies_are_refused_naming_the_field(body, errcode):
    with pytest.raises(MatrixError) as caught:
        parse_typing_body(body)
    assert caught.value.http_status == 400 and caught.value.errcode == errcode


async def test_a_typing_member_is_listed_for_the_room_until_they_stop(hs, client):
    alice, bob, room_id = await room_with_two(client)
    before = await hs.typing.current_position()
    await alice.call("PUT", typing_path(room_id, alice.user_id), {"typing": True, "timeout": 30000})
    started = await hs.typing.current_position()
    assert started > before
    assert await typing_seen_by(hs, bob.user_id, room_id) == [
        {"type": "m.typing", "content": {"user_ids": [alice.user_id]}}]
    await bob.call("PUT", typing_path(room_id, bob.user_id), {"typing": True})
    assert (await typing_seen_by(hs, alice.user_id, room_id))[0]["content"]["user_ids"] == sorted(
        [alice.user_id, bob.user_id])

    stop_from = await hs.typing.current_position()
    await alice.call("PUT", typing_path(room_id, alice.user_id), {"typing": False})
    assert await typing_seen_by(hs, bob.user_id, room_id, since=stop_from) == [
        {"type": "m.typing", "content": {"user_ids": [bob.user_id]}}]
    # Nothing changed after the latest position, so nothing is delivered from it.
    assert await typing_seen_by(hs, bob.user_id, room_id, since=await hs.typing.current_position()) is None


async def test_refreshing_an_ongoing_typing_notification_does_not_move_the_stream(hs, client):
    alice, _, room_id = await room_with_two(client)
    await alice.call("PUT", typing_path(room_id, alice.user_id), {"typing": True, "timeout": 30000})
    position = await hs.typing.current_position()
    await alice.call("PUT", typing_path(room_id, alice.user_id), {"typing": True, "timeout": 30000})
    assert await hs.typing.current_position() == position
    await alice.call("PUT", typing_path(room_id, alice.user_id), {"typing": False})
    await alice.call("PUT", typing_path(room_id, alice.user_id), {"typing": False})
    assert await hs.typing.current_position() == position + 1


async def test_typing_expires_after_its_timeout(hs, client):
    alice, bob, room_id = await room_with_two(client)
    await alice.call("PUT", typing_path(room_id, alice.user_id), {"typing": True, "timeout": 200})
    started = await hs.typing.current_position()
    assert hs.typing.typing_users(room_id) == [alice.user_id]
    async with hs.notifier.listen(bob.user_id, [room_id]) as listener:
        assert await listener.wait(3), "expiry did not wake the room's listeners"
    assert hs.typing.typing_users(room_id) == []
    assert await typing_seen_by(hs, bob.user_id, room_id, since=started) == [
        {"type": "m.typing", "content": {"user_ids": []}}]


async def test_a_refresh_extends_the_expiry(hs, client):
    alice, _, room_id = await room_with_two(client)
    await alice.call("PUT", typing_path(room_id, alice.user_id), {"typing": True, "timeout": 300})
    await alice.call("PUT", typing_path(room_id, alice.user_id), {"typing": True, "timeout": 5000})
    await asyncio.sleep(0.6)
    assert hs.typing.typing_users(room_id) == [alice.user_id]


async def test_starting_to_type_wakes_the_other_members_syncs(hs, client):
    alice, bob, room_id = await room_with_two(client)
    async with hs.notifier.listen(bob.user_id, [room_id]) as listener:
        await alice.call("PUT", typing_path(room_id, alice.user_id), {"typing": True})
        assert await listener.wait(2)


async def test_leaving_the_room_ends_typing(hs, client):
    alice, bob, room_id = await room_with_two(client)
    await bob.call("PUT", typing_path(room_id, bob.user_id), {"typing": True})
    await bob.call("POST", f"/rooms/{room_id}/leave", {})
    assert hs.typing.typing_users(room_id) == []
    assert (await typing_seen_by(hs, alice.user_id, room_id))[0]["content"]["user_ids"] == []


async def test_a_token_from_before_a_restart_gets_the_current_typing_lists(hs, client):
    alice, bob, room_id = await room_with_two(client)
    await alice.call("PUT", typing_path(room_id, alice.user_id), {"typing": True})
    position = await hs.typing.current_position()
    # A typing position larger than this process ever reached was handed out by an earlier one.
    events = await hs.typing.events_for_rooms(bob.user_id, [room_id], position + 1000, position)
    assert events[room_id][0]["content"]["user_ids"] == [alice.user_id]


async def test_rooms_without_typing_changes_are_left_out(hs, client):
    alice, bob, room_id = await room_with_two(client)
    quiet_room = await alice.create_room()
    await alice.call("PUT", typing_path(room_id, alice.user_id), {"typing": True})
    events = await hs.typing.events_for_rooms(alice.user_id, [room_id, quiet_room], 0,
                                              await hs.typing.current_position())
    assert set(events) == {room_id}


async def test_typing_for_another_user_is_forbidden(client):
    alice, bob, room_id = await room_with_two(client)
    body = await alice.call("PUT", typing_path(room_id, bob.user_id), {"typing": True}, expect=403)
    assert body["errcode"] == "M_FORBIDDEN"


async def test_typing_in_a_room_you_are_not_joined_to_is_forbidden(client):
    alice = await new_user(client, "alice")
    carol = await new_user(client, "carol")
    room_id = await alice.create_room(preset="private_chat")
    body = await carol.call("PUT", typing_path(room_id, carol.user_id), {"typing": True}, expect=403)
    assert body["errcode"] == "M_FORBIDDEN"
    await alice.call("POST", f"/rooms/{room_id}/invite", {"user_id": carol.user_id})
    await carol.call("PUT", typing_path(room_id, carol.user_id), {"typing": True}, expect=403)


async def test_typing_requests_are_validated(client):
    alice, _, room_id = await room_with_two(client)
    path = typing_path(room_id, alice.user_id)
    assert (await alice.call("PUT", path, {}, expect=400))["errcode"] == "M_MISSING_PARAM"
    assert (await alice.call("PUT", path, {"typing": "no"}, expect=400))["errcode"] == "M_BAD_JSON"
    assert (await alice.call("PUT", typing_path(room_id, "not-a-user"), {"typing": True},
                             expect=400))["errcode"] == "M_INVALID_PARAM"
    async with client.put("/_matrix/client/v3" + path, json={"typing": True}) as resp:
        assert resp.status == 401 and (await resp.json())["errcode"] == "M_MISSING_TOKEN"


async def test_an_initial_sync_gets_only_the_rooms_where_someone_types_now(hs, client):
    alice, bob, room_id = await room_with_two(client)
    other_room = await alice.create_room()
    await alice.call("PUT", typing_path(other_room, alice.user_id), {"typing": True})
    await alice.call("PUT", typing_path(other_room, alice.user_id), {"typing": False})
    await bob.call("PUT", typing_path(room_id, bob.user_id), {"typing": True})
    events = await hs.typing.events_for_rooms(alice.user_id, [room_id, other_room], None,
                                              await hs.typing.current_position())
    assert events == {room_id: [{"type": "m.typing", "content": {"user_ids": [bob.user_id]}}]}
