"""Account data, global and per room, room tags, and the account_data stream behind them."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from homeserver.streams.updates import AccountDataChanged
from tests.accounts.helpers import bearer, register

V3 = "/_matrix/client/v3"
ROOM = "!abcdef:example.org"


def q(part: str) -> str:
    return quote(part, safe="@:!")


def global_path(user_id: str, data_type: str) -> str:
    return f"{V3}/user/{q(user_id)}/account_data/{q(data_type)}"


def room_path(user_id: str, room_id: str, data_type: str) -> str:
    return f"{V3}/user/{q(user_id)}/rooms/{q(room_id)}/account_data/{q(data_type)}"


def tags_path(user_id: str, room_id: str, tag: str | None = None) -> str:
    path = f"{V3}/user/{q(user_id)}/rooms/{q(room_id)}/tags"
    return path if tag is None else f"{path}/{q(tag)}"


async def call(client, method, path, token=None, body=None):
    async with client.request(method, path, json=body, headers=bearer(token) if token else None) as resp:
        return resp.status, await resp.json()


@pytest.fixture
async def alice(client):
    return await register(client, "alice")


@pytest.fixture
async def bob(client):
    return await register(client, "bob")


async def test_global_account_data_round_trips_and_can_be_replaced(client, alice):
    path, token = global_path(alice["user_id"], "org.example.config"), alice["access_token"]
    assert await call(client, "PUT", path, token, {"theme": "dark"}) == (200, {})
    assert await call(client, "GET", path, token) == (200, {"theme": "dark"})
    assert await call(client, "PUT", path, token, {"theme": "light", "n": [1, 2]}) == (200, {})
    assert await call(client, "GET", path, token) == (200, {"theme": "light", "n": [1, 2]})


async def test_room_account_data_is_kept_apart_from_global_and_other_rooms(client, alice):
    token, user_id = alice["access_token"], alice["user_id"]
    assert (await call(client, "PUT", room_path(user_id, ROOM, "org.example.x"), token, {"a": 1}))[0] == 200
    assert await call(client, "GET", room_path(user_id, ROOM, "org.example.x"), token) == (200, {"a": 1})
    for path in (
        global_path(user_id, "org.example.x"),
        room_path(user_id, "!other:example.org", "org.example.x"),
    ):
        status, body = await call(client, "GET", path, token)
        assert status == 404 and body["errcode"] == "M_NOT_FOUND"


async def test_unset_account_data_is_404(client, alice):
    status, body = await call(
        client, "GET", global_path(alice["user_id"], "org.example.none"), alice["access_token"]
    )
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"


@pytest.mark.parametrize("data_type", ["m.fully_read", "m.push_rules"])
async def test_server_managed_types_are_refused_with_405_bad_json(client, alice, data_type):
    token, user_id = alice["access_token"], alice["user_id"]
    for path in (global_path(user_id, data_type), room_path(user_id, ROOM, data_type)):
        status, body = await call(client, "PUT", path, token, {"event_id": "$x"})
        assert status == 405 and body["errcode"] == "M_BAD_JSON"


async def test_the_ignored_user_list_is_stored_as_given(client, alice):
    path = global_path(alice["user_id"], "m.ignored_user_list")
    content = {"ignored_users": {"@troll:example.org": {}, "@spam:other.example": {}}}
    assert await call(client, "PUT", path, alice["access_token"], content) == (200, {})
    assert await call(client, "GET", path, alice["access_token"]) == (200, content)


@pytest.mark.parametrize(
    "content",
    [{}, {"ignored_users": []}, {"ignored_users": {"not-a-user": {}}}, {"ignored_users": {"@a:b.org": True}}],
)
async def test_a_malformed_ignored_user_list_is_400_bad_json(client, alice, content):
    status, body = await call(
        client, "PUT", global_path(alice["user_id"], "m.ignored_user_list"), alice["access_token"], content
    )
    assert status == 400 and body["errcode"] == "M_BAD_JSON" and "ignored_users" in body["error"]


@pytest.mark.parametrize("body", [[], "text", 3, True])
async def test_content_that_is_not_an_object_is_400_bad_json(client, alice, body):
    for path in (
        global_path(alice["user_id"], "org.example.x"),
        room_path(alice["user_id"], ROOM, "org.example.x"),
    ):
        status, error = await call(client, "PUT", path, alice["access_token"], body)
        assert status == 400 and error["errcode"] == "M_BAD_JSON"


async def test_a_body_that_is_not_json_is_400_not_json(client, alice):
    async with client.put(
        global_path(alice["user_id"], "org.example.x"), data=b"{", headers=bearer(alice["access_token"])
    ) as resp:
        assert resp.status == 400 and (await resp.json())["errcode"] == "M_NOT_JSON"


async def test_an_over_long_type_is_400_invalid_param(client, alice):
    for path in (global_path(alice["user_id"], "t" * 256), room_path(alice["user_id"], ROOM, "t" * 256)):
        status, body = await call(client, "PUT", path, alice["access_token"], {})
        assert status == 400 and body["errcode"] == "M_INVALID_PARAM"


@pytest.mark.parametrize("room_id", ["room", "#alias:example.org", "!", "!" + "r" * 255])
async def test_invalid_room_ids_are_400_invalid_param(client, alice, room_id):
    token, user_id = alice["access_token"], alice["user_id"]
    for method, path in [
        ("PUT", room_path(user_id, room_id, "org.example.x")),
        ("GET", room_path(user_id, room_id, "org.example.x")),
        ("GET", tags_path(user_id, room_id)),
        ("PUT", tags_path(user_id, room_id, "u.x")),
    ]:
        status, body = await call(client, method, path, token, {} if method == "PUT" else None)
        assert status == 400 and body["errcode"] == "M_INVALID_PARAM", (method, path, body)


async def test_another_users_account_data_is_403(client, alice, bob):
    token = alice["access_token"]
    for method, path in [
        ("PUT", global_path(bob["user_id"], "org.example.x")),
        ("GET", global_path(bob["user_id"], "org.example.x")),
        ("PUT", room_path(bob["user_id"], ROOM, "org.example.x")),
        ("GET", room_path(bob["user_id"], ROOM, "org.example.x")),
        ("GET", tags_path(bob["user_id"], ROOM)),
        ("PUT", tags_path(bob["user_id"], ROOM, "u.x")),
        ("DELETE", tags_path(bob["user_id"], ROOM, "u.x")),
    ]:
        status, body = await call(client, method, path, token, {} if method == "PUT" else None)
        assert status == 403 and body["errcode"] == "M_FORBIDDEN", (method, path)


async def test_an_invalid_user_id_is_400_invalid_param(client, alice):
    status, body = await call(client, "GET", global_path("bob", "org.example.x"), alice["access_token"])
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"


async def test_a_missing_token_is_401_missing_token(client, alice):
    user_id = alice["user_id"]
    for method, path in [
        ("PUT", global_path(user_id, "org.example.x")),
        ("GET", global_path(user_id, "x")),
        ("PUT", room_path(user_id, ROOM, "x")),
        ("GET", room_path(user_id, ROOM, "x")),
        ("GET", tags_path(user_id, ROOM)),
        ("PUT", tags_path(user_id, ROOM, "u.x")),
        ("DELETE", tags_path(user_id, ROOM, "u.x")),
    ]:
        status, body = await call(client, method, path, None, {} if method == "PUT" else None)
        assert status == 401 and body["errcode"] == "M_MISSING_TOKEN", (method, path)


async def test_tags_are_added_listed_and_removed(client, alice):
    token, user_id = alice["access_token"], alice["user_id"]
    assert await call(client, "GET", tags_path(user_id, ROOM), token) == (200, {"tags": {}})
    assert await call(client, "PUT", tags_path(user_id, ROOM, "m.favourite"), token, {"order": 0.25}) == (
        200,
        {},
    )
    assert await call(client, "PUT", tags_path(user_id, ROOM, "u.Werk"), token, {}) == (200, {})
    assert await call(client, "GET", tags_path(user_id, ROOM), token) == (
        200,
        {"tags": {"m.favourite": {"order": 0.25}, "u.Werk": {}}},
    )
    # Tags are the room account data m.tag, as /sync will deliver them.
    assert await call(client, "GET", room_path(user_id, ROOM, "m.tag"), token) == (
        200,
        {"tags": {"m.favourite": {"order": 0.25}, "u.Werk": {}}},
    )
    assert await call(client, "DELETE", tags_path(user_id, ROOM, "m.favourite"), token) == (200, {})
    assert await call(client, "DELETE", tags_path(user_id, ROOM, "m.never"), token) == (200, {})
    assert await call(client, "GET", tags_path(user_id, ROOM), token) == (200, {"tags": {"u.Werk": {}}})


@pytest.mark.parametrize(
    ("tag", "body", "errcode"),
    [
        ("u." + "x" * 254, {}, "M_INVALID_PARAM"),
        ("u.x", {"order": "first"}, "M_BAD_JSON"),
        ("u.x", {"order": True}, "M_BAD_JSON"),
        ("u.x", [], "M_BAD_JSON"),
    ],
)
async def test_bad_tags_are_400(client, alice, tag, body, errcode):
    status, error = await call(
        client, "PUT", tags_path(alice["user_id"], ROOM, tag), alice["access_token"], body
    )
    assert status == 400 and error["errcode"] == errcode


async def test_concurrent_tag_writes_all_survive(client, alice):
    import asyncio

    token, user_id = alice["access_token"], alice["user_id"]
    results = await asyncio.gather(
        *(call(client, "PUT", tags_path(user_id, ROOM, f"u.t{i}"), token, {}) for i in range(10))
    )
    assert all(status == 200 for status, _ in results)
    _, body = await call(client, "GET", tags_path(user_id, ROOM), token)
    assert set(body["tags"]) == {f"u.t{i}" for i in range(10)}


async def test_each_write_moves_the_stream_and_changes_since_a_position_are_returned(hs, client, alice):
    token, user_id = alice["access_token"], alice["user_id"]
    start = await hs.account_data.current_position()
    await call(client, "PUT", global_path(user_id, "org.example.a"), token, {"v": 1})
    middle = await hs.account_data.current_position()
    assert middle == start + 1
    await call(client, "PUT", global_path(user_id, "org.example.b"), token, {"v": 2})
    await call(client, "PUT", tags_path(user_id, ROOM, "u.x"), token, {})
    await call(client, "DELETE", tags_path(user_id, ROOM, "u.absent"), token)  # no change, no position
    end = await hs.account_data.current_position()
    assert end == middle + 2

    changes = await hs.account_data.get_changes(user_id, middle)
    assert changes.position == end
    assert changes.global_data == {"org.example.b": {"v": 2}}
    assert changes.room_data == {ROOM: {"m.tag": {"tags": {"u.x": {}}}}}
    everything = await hs.account_data.get_changes(user_id, 0)
    assert set(everything.global_data) == {"org.example.a", "org.example.b"}
    assert (await hs.account_data.get_changes(user_id, end)).global_data == {}


async def test_every_write_is_published_on_the_bus(hs, client, alice):
    heard = []
    hs.bus.subscribe(AccountDataChanged, lambda update: heard.append((update.user_id, update.position)))
    await call(client, "PUT", global_path(alice["user_id"], "org.example.a"), alice["access_token"], {})
    assert heard == [(alice["user_id"], await hs.account_data.current_position())]
