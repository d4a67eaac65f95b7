"""Guest access: guest registration, the endpoints guests may use, joining, upgrading, removal."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support.rooms import User, new_user

REGISTER = "/_matrix/client/v3/register"


@pytest.fixture
async def guest_hs(make_homeserver):
    return await make_homeserver(registration={"enabled": True, "allow_guests": True})


@pytest.fixture
async def guest_client(guest_hs):
    async with aiohttp.ClientSession(guest_hs.base_url()) as session:
        yield session


async def register_guest(client: aiohttp.ClientSession) -> User:
    async with client.post(REGISTER, params={"kind": "guest"}, json={}) as resp:
        assert resp.status == 200, await resp.text()
        return User(client, await resp.json())


async def room_allowing_guests(owner: User, guest_access: str = "can_join") -> str:
    return await owner.create_room(preset="public_chat", initial_state=[
        {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": guest_access}},
    ])


async def test_a_guest_registers_without_auth_and_whoami_says_guest(guest_client):
    guest = await register_guest(guest_client)
    assert guest.user_id[1:].split(":")[0].isdigit() and guest.device_id
    assert await guest.call("GET", "/account/whoami") == {"user_id": guest.user_id, "device_id": guest.device_id,
                                                         "is_guest": True}


async def test_guests_are_refused_outside_the_allowed_endpoints(guest_client):
    guest = await register_guest(guest_client)
    for method, path, body in (("POST", "/createRoom", {}), ("GET", "/pushrules/", None),
                               ("PUT", f"/user/{guest.user_id}/account_data/m.x", {}),
                               ("PUT", f"/profile/{guest.user_id}/avatar_url", {"avatar_url": "mxc://a/b"}),
                               ("GET", "/account/3pid", None)):
        body = await guest.call(method, path, body, expect=403)
        assert body["errcode"] == "M_GUEST_ACCESS_FORBIDDEN", (method, path)
    await guest.call("PUT", f"/profile/{guest.user_id}/displayname", {"displayname": "Visitor"})


async def test_a_guest_joins_a_can_join_room_reads_and_sends(guest_client):
    owner = await new_user(guest_client, "owner")
    room_id = await room_allowing_guests(owner)
    guest = await register_guest(guest_client)
    await guest.call("POST", f"/rooms/{room_id}/join", {})
    member = await owner.call("GET", f"/rooms/{room_id}/state/m.room.member/{guest.user_id}")
    assert member["membership"] == "join" and member["kind"] == "guest"
    event_id = await guest.send(room_id, "hello from a guest")
    messages = await guest.call("GET", f"/rooms/{room_id}/messages", dir="b")
    assert event_id in [e["event_id"] for e in messages["chunk"]]
    sync = await guest.call("GET", "/sync")
    assert room_id in sync["rooms"]["join"]
    await guest.call("GET", f"/rooms/{room_id}/members")
    await guest.call("POST", f"/rooms/{room_id}/leave", {})


@pytest.mark.parametrize("guest_access", [None, "forbidden"])
async def test_a_guest_cannot_join_a_room_that_does_not_allow_guests(guest_client, guest_access):
    owner = await new_user(guest_client, "owner")
    if guest_access is None:
        room_id = await owner.create_room(preset="public_chat")
    else:
        room_id = await room_allowing_guests(owner, guest_access)
    guest = await register_guest(guest_client)
    body = await guest.call("POST", f"/join/{room_id}", {}, expect=403)
    assert body["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"


async def test_guests_leave_when_the_room_stops_allowing_them(guest_client):
    owner = await new_user(guest_client, "owner")
    room_id = await room_allowing_guests(owner)
    guest = await register_guest(guest_client)
    await guest.call("POST", f"/rooms/{room_id}/join", {})
    await owner.call("PUT", f"/rooms/{room_id}/state/m.room.guest_access", {"guest_access": "forbidden"})
    member = await owner.call("GET", f"/rooms/{room_id}/state/m.room.member/{guest.user_id}", format="event")
    assert member["content"]["membership"] == "leave" and member["sender"] == guest.user_id
    joined = await owner.call("GET", f"/rooms/{room_id}/joined_members")
    assert guest.user_id not in joined["joined"]


async def test_a_guest_upgrades_to_a_full_account_keeping_its_user_id(guest_hs, guest_client):
    guest = await register_guest(guest_client)
    localpart = guest.user_id[1:].split(":")[0]
    body = {"username": localpart, "password": "upgraded pw", "guest_access_token": guest.token,
            "auth": {"type": "m.login.dummy"}}
    async with guest_client.post(REGISTER, json=body) as resp:
        assert resp.status == 200, await resp.text()
        upgraded = User(guest_client, await resp.json())
    assert upgraded.user_id == guest.user_id
    assert (await upgraded.call("GET", "/account/whoami"))["is_guest"] is False
    await upgraded.call("POST", "/createRoom", {})
    login = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
             "password": "upgraded pw"}
    async with guest_client.post("/_matrix/client/v3/login", json=login) as resp:
        assert resp.status == 200


async def test_an_upgrade_needs_the_guests_own_token_and_name(guest_client):
    guest = await register_guest(guest_client)
    other = await register_guest(guest_client)
    localpart = guest.user_id[1:].split(":")[0]
    for token in (other.token, "not-a-token"):
        body = {"username": localpart, "password": "pw", "guest_access_token": token,
                "auth": {"type": "m.login.dummy"}}
        async with guest_client.post(REGISTER, json=body) as resp:
            assert resp.status in (400, 403), await resp.text()
    full = await new_user(guest_client, "fulluser")
    body = {"username": localpart, "password": "pw", "guest_access_token": full.token,
            "auth": {"type": "m.login.dummy"}}
    async with guest_client.post(REGISTER, json=body) as resp:
        assert resp.status == 403


async def test_a_guest_reads_a_world_readable_room_without_joining(guest_client):
    owner = await new_user(guest_client, "owner")
    room_id = await owner.create_room(preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable"}},
    ])
    sent = await owner.send(room_id, "anyone may read this")
    guest = await register_guest(guest_client)
    messages = await guest.call("GET", f"/rooms/{room_id}/messages", dir="b")
    assert sent in [e["event_id"] for e in messages["chunk"]]
    private = await owner.create_room(preset="private_chat")
    await guest.call("GET", f"/rooms/{private}/messages", dir="b", expect=403)
