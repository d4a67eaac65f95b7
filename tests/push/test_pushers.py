"""Pushers over HTTP, and delivery to a push gateway on loopback."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest

from tests.accounts.helpers import login
from tests.push.helpers import PushGateway, pusher_body, read
from tests.support.rooms import User, new_user


@pytest.fixture
async def gateway():
    gw = PushGateway()
    await gw.start()
    yield gw
    await gw.stop()


@pytest.fixture
def fast_retries(hs):
    hs.outbound.min_retry_s = 0.01
    hs.outbound.max_retry_s = 0.05
    return hs.outbound


async def group(client, *names: str):
    users = [await new_user(client, name) for name in names]
    room_id = await users[0].create_room(preset="public_chat", name="Kitchen")
    for user in users[1:]:
        await user.join(room_id)
    return users, room_id


# --- the API ------------------------------------------------------------------------------------

async def test_a_pusher_is_listed_after_it_is_set_and_gone_after_kind_null(client, gateway):
    bob = await new_user(client, "bob")
    assert await bob.call("GET", "/pushers") == {"pushers": []}
    await bob.call("POST", "/pushers/set", pusher_body(gateway.url, profile_tag="tag1"))
    (listed,) = (await bob.call("GET", "/pushers"))["pushers"]
    assert listed == {"pushkey": "key-1", "kind": "http", "app_id": "org.example.app", "app_display_name": "Example",
                      "device_display_name": "Phone", "lang": "en", "data": {"url": gateway.url},
                      "profile_tag": "tag1"}
    await bob.call("POST", "/pushers/set", pusher_body(gateway.url, lang="nl"))
    assert [p["lang"] for p in (await bob.call("GET", "/pushers"))["pushers"]] == ["nl"]
    await bob.call("POST", "/pushers/set", {"kind": None, "app_id": "org.example.app", "pushkey": "key-1"})
    assert await bob.call("GET", "/pushers") == {"pushers": []}


async def test_setting_a_pushkey_takes_it_from_other_users_unless_appending(client, gateway):
    alice = await new_user(client, "alice")
    bob = await new_user(client, "bob")
    await alice.call("POST", "/pushers/set", pusher_body(gateway.url))
    await bob.call("POST", "/pushers/set", pusher_body(gateway.url, append=True))
    assert len((await alice.call("GET", "/pushers"))["pushers"]) == 1
    await bob.call("POST", "/pushers/set", pusher_body(gateway.url))
    assert (await alice.call("GET", "/pushers"))["pushers"] == []
    assert len((await bob.call("GET", "/pushers"))["pushers"]) == 1


@pytest.mark.parametrize("change, errcode", [
    ({"lang": None}, "M_MISSING_PARAM"),
    ({"pushkey": None}, "M_MISSING_PARAM"),
    ({"data": {}}, "M_INVALID_PARAM"),
    ({"data": {"url": "http://127.0.0.1:1/wrong/path"}}, "M_INVALID_PARAM"),
    ({"data": {"url": "ftp://127.0.0.1/_matrix/push/v1/notify"}}, "M_INVALID_PARAM"),
    ({"kind": "carrier-pigeon"}, "M_INVALID_PARAM"),
    ({"app_id": "x" * 65}, "M_INVALID_PARAM"),
    ({"append": "yes"}, "M_BAD_JSON"),
])
async def test_an_invalid_pusher_is_refused_naming_the_field(client, gateway, change, errcode):
    bob = await new_user(client, "bob")
    body = pusher_body(gateway.url)
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    error = await bob.call("POST", "/pushers/set", body, expect=400)
    assert error["errcode"] == errcode
    assert await bob.call("GET", "/pushers") == {"pushers": []}


# --- delivery ---------------------------------------------------------------------------------

async def test_the_gateway_receives_exactly_the_notifications_the_rules_ask_for(client, gateway):
    (alice, bob, carol), room_id = await group(client, "alice", "bob", "carol")
    await bob.call("PUT", f"/profile/{quote(bob.user_id)}/displayname", {"displayname": "Bob"})
    await bob.call("POST", "/pushers/set", pusher_body(gateway.url, data={"url": gateway.url, "custom": 1}))
    await alice.call("POST", "/pushers/set", pusher_body(gateway.url, pushkey="alice-key"))
    await bob.send(room_id, "bob's own message")  # nothing for Bob; Alice is notified
    await alice.send(room_id, "a notice", msgtype="m.notice")  # suppressed
    mention = await alice.send(room_id, "hi Bob", **{"m.mentions": {"user_ids": [bob.user_id]}})
    notifications = await gateway.wait_for(2)
    assert len(notifications) == 2
    by_key = {n["devices"][0]["pushkey"]: n for n in notifications}
    to_alice, to_bob = by_key["alice-key"], by_key["key-1"]
    assert to_alice["sender"] == bob.user_id and to_alice["content"]["body"] == "bob's own message"
    assert to_bob["event_id"] == mention
    assert to_bob["room_id"] == room_id
    assert to_bob["type"] == "m.room.message"
    assert to_bob["sender"] == alice.user_id
    assert to_bob["room_name"] == "Kitchen"
    assert to_bob["content"] == {"msgtype": "m.text", "body": "hi Bob",
                                 "m.mentions": {"user_ids": [bob.user_id]}}
    assert to_bob["prio"] == "high"
    assert to_bob["counts"] == {"unread": 1}
    device = to_bob["devices"][0]
    assert device["app_id"] == "org.example.app"
    assert device["data"] == {"custom": 1}  # everything but the URL
    assert device["tweaks"] == {"sound": "default", "highlight": True}
    assert isinstance(device["pushkey_ts"], int)


async def test_event_id_only_pushers_get_no_event_content(client, gateway):
    (alice, bob), room_id = await group(client, "alice", "bob")
    await bob.call("POST", "/pushers/set",
                   pusher_body(gateway.url, data={"url": gateway.url, "format": "event_id_only"}))
    first = await alice.send(room_id, "secret")
    await read(bob, room_id, first)
    second = await alice.send(room_id, "another secret")
    notifications = await gateway.wait_for(2)
    assert [n["event_id"] for n in notifications] == [first, second]
    assert set(notifications[1]) == {"event_id", "room_id", "counts", "prio", "devices"}
    # After reading the first, only the second is unread.
    assert notifications[1]["counts"] == {"unread": 1}
    assert notifications[1]["devices"][0]["data"] == {"format": "event_id_only"}


async def test_a_failing_gateway_is_retried_with_backoff(client, gateway, fast_retries):
    (alice, bob), room_id = await group(client, "alice", "bob")
    answers = iter([(500, {}), (503, {})])
    gateway.answer = lambda body: next(answers, (200, {"rejected": []}))
    await bob.call("POST", "/pushers/set", pusher_body(gateway.url))
    event_id = await alice.send(room_id, "persistent")
    notifications = await gateway.wait_for(3)
    assert [n["event_id"] for n in notifications] == [event_id] * 3


async def test_a_rejected_pushkey_removes_the_pusher(client, gateway):
    (alice, bob), room_id = await group(client, "alice", "bob")
    gateway.answer = lambda body: (200, {"rejected": ["key-1"]})
    await bob.call("POST", "/pushers/set", pusher_body(gateway.url))
    await alice.send(room_id, "first")
    assert len(await gateway.wait_for(1)) == 1
    assert await bob.call("GET", "/pushers") == {"pushers": []}
    await alice.send(room_id, "second")
    assert len(await gateway.wait_for(1)) == 1


async def test_a_client_error_from_the_gateway_is_not_retried(client, gateway, fast_retries):
    (alice, bob), room_id = await group(client, "alice", "bob")
    gateway.answer = lambda body: (400, {"error": "bad"})
    await bob.call("POST", "/pushers/set", pusher_body(gateway.url))
    await alice.send(room_id, "once")
    assert len(await gateway.wait_for(1)) == 1
    assert len((await bob.call("GET", "/pushers"))["pushers"]) == 1


# --- pushers end with their sessions ----------------------------------------------------------

async def test_a_password_change_removes_the_pushers_of_the_other_sessions(client, gateway):
    bob = await new_user(client, "bob")
    other = User(client, await login(client, "bob"))
    await bob.call("POST", "/pushers/set", pusher_body(gateway.url, pushkey="this-session"))
    await other.call("POST", "/pushers/set", pusher_body(gateway.url, pushkey="other-session", append=True))
    assert len((await bob.call("GET", "/pushers"))["pushers"]) == 2
    challenge = await bob.call("POST", "/account/password", {"new_password": "new pw"}, expect=401)
    auth = {"type": "m.login.password", "session": challenge["session"], "password": "correct horse",
            "identifier": {"type": "m.id.user", "user": bob.user_id}}
    await bob.call("POST", "/account/password", {"new_password": "new pw", "auth": auth})
    assert [p["pushkey"] for p in (await bob.call("GET", "/pushers"))["pushers"]] == ["this-session"]


async def test_logging_out_removes_that_sessions_pushers_only(client, gateway):
    bob = await new_user(client, "bob")
    other = User(client, await login(client, "bob"))
    await bob.call("POST", "/pushers/set", pusher_body(gateway.url, pushkey="stays"))
    await other.call("POST", "/pushers/set", pusher_body(gateway.url, pushkey="goes", append=True))
    await other.call("POST", "/logout", {})
    assert [p["pushkey"] for p in (await bob.call("GET", "/pushers"))["pushers"]] == ["stays"]


async def test_a_logged_out_sessions_pusher_gets_no_more_notifications(client, gateway):
    (alice, bob), room_id = await group(client, "alice", "bob")
    phone = User(client, await login(client, "bob"))
    await phone.call("POST", "/pushers/set", pusher_body(gateway.url, pushkey="phone"))
    await bob.call("POST", "/pushers/set", pusher_body(gateway.url, pushkey="laptop", append=True))
    await phone.call("POST", "/logout", {})
    await alice.send(room_id, "after the logout")
    await gateway.wait_for(1)
    await alice.send(room_id, "and another")
    notifications = await gateway.wait_for(2)
    assert [n["devices"][0]["pushkey"] for n in notifications] == ["laptop", "laptop"]


async def test_notifications_list_events_without_room_id_beside_their_room(client):
    (alice, bob), room_id = await group(client, "alice", "bob")
    await alice.send(room_id, "count me", **{"m.mentions": {"user_ids": [bob.user_id]}})
    for _ in range(50):
        listed = (await bob.call("GET", "/notifications"))["notifications"]
        if listed:
            break
        await asyncio.sleep(0.05)
    (notification,) = listed
    assert notification["room_id"] == room_id and "room_id" not in notification["event"]
    assert set(notification) >= {"actions", "event", "read", "room_id", "ts"}
