"""Sync filters: upload with validation against the spec's schema, download, ownership."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.accounts.user_filters import SCHEMA_DIR, SCHEMA_FILES
from tests.accounts.helpers import bearer, register
from tests.support.spec import need_spec

V3 = "/_matrix/client/v3"

LAZY_LOADING_FILTER = {
    "event_fields": ["type", "content", "sender"],
    "event_format": "client",
    "presence": {"not_types": ["*"]},
    "account_data": {"types": ["m.*"], "limit": 10},
    "room": {
        "rooms": ["!a:example.org"],
        "not_rooms": ["!b:example.org"],
        "include_leave": False,
        "state": {"lazy_load_members": True, "types": ["m.room.*"]},
        "timeline": {
            "limit": 20,
            "senders": ["@alice:example.org"],
            "not_senders": ["@spam:example.org"],
            "contains_url": False,
            "unread_thread_notifications": True,
        },
        "ephemeral": {"not_types": ["m.typing"]},
        "account_data": {"limit": 0},
    },
    "org.example.future_key": {"kept": True},
}


async def call(client, method, path, token=None, body=None):
    async with client.request(method, path, json=body, headers=bearer(token) if token else None) as resp:
        return resp.status, await resp.json()


@pytest.fixture
async def alice(client):
    return await register(client, "alice")


async def upload(client, user, body):
    return await call(client, "POST", f"{V3}/user/{user['user_id']}/filter", user["access_token"], body)


async def test_a_filter_round_trips_exactly(client, alice):
    status, body = await upload(client, alice, LAZY_LOADING_FILTER)
    assert status == 200 and isinstance(body["filter_id"], str) and not body["filter_id"].startswith("{")
    assert await call(
        client, "GET", f"{V3}/user/{alice['user_id']}/filter/{body['filter_id']}", alice["access_token"]
    ) == (200, LAZY_LOADING_FILTER)


async def test_new_filters_get_increasing_ids_and_identical_ones_keep_theirs(client, alice):
    ids = [
        (await upload(client, alice, {"room": {"timeline": {"limit": n}}}))[1]["filter_id"] for n in (1, 2, 3)
    ]
    assert [int(i) for i in ids] == sorted(int(i) for i in ids) and len(set(ids)) == 3
    assert (await upload(client, alice, {"room": {"timeline": {"limit": 2}}}))[1]["filter_id"] == ids[1]


async def test_concurrent_uploads_get_distinct_ids(client, alice):
    results = await asyncio.gather(
        *(upload(client, alice, {"room": {"timeline": {"limit": n}}}) for n in range(1, 9))
    )
    assert all(status == 200 for status, _ in results)
    assert len({body["filter_id"] for _, body in results}) == 8


async def test_filter_ids_are_per_user(client, alice):
    bob = await register(client, "bob")
    first_alice = (await upload(client, alice, {}))[1]["filter_id"]
    first_bob = (await upload(client, bob, {"presence": {"types": []}}))[1]["filter_id"]
    assert first_alice == first_bob == "0"
    assert await call(client, "GET", f"{V3}/user/{bob['user_id']}/filter/0", bob["access_token"]) == (
        200,
        {"presence": {"types": []}},
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"room": {"timeline": {"limit": "ten"}}}, "room.timeline.limit"),
        ({"room": {"timeline": {"limit": -1}}}, "room.timeline.limit"),
        ({"room": {"rooms": ["#alias:example.org"]}}, "room.rooms.0"),
        ({"room": {"state": {"lazy_load_members": "yes"}}}, "room.state.lazy_load_members"),
        ({"room": {"include_leave": 1}}, "room.include_leave"),
        ({"room": []}, "room"),
        ({"presence": {"senders": ["bob"]}}, "presence.senders.0"),
        ({"account_data": {"types": "m.*"}}, "account_data.types"),
        ({"event_format": "xml"}, "event_format"),
        ({"event_fields": [1]}, "event_fields.0"),
    ],
)
async def test_invalid_filters_are_400_bad_json_naming_the_field(client, alice, body, field):
    status, error = await upload(client, alice, body)
    assert status == 400 and error["errcode"] == "M_BAD_JSON"
    assert error["error"].startswith(f"{field}:"), error["error"]


@pytest.mark.parametrize("body", [[], "filter", 1])
async def test_a_filter_that_is_not_an_object_is_400_bad_json(client, alice, body):
    status, error = await upload(client, alice, body)
    assert status == 400 and error["errcode"] == "M_BAD_JSON"


async def test_unknown_filter_ids_are_404(client, alice):
    for filter_id in ("0", "12345", "abc", "-1", "9" * 40):
        status, body = await call(
            client, "GET", f"{V3}/user/{alice['user_id']}/filter/{filter_id}", alice["access_token"]
        )
        assert status == 404 and body["errcode"] == "M_NOT_FOUND", filter_id


async def test_another_users_filters_are_403(client, alice):
    bob = await register(client, "bob")
    filter_id = (await upload(client, bob, {}))[1]["filter_id"]
    status, body = await call(
        client, "GET", f"{V3}/user/{bob['user_id']}/filter/{filter_id}", alice["access_token"]
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    status, body = await call(client, "POST", f"{V3}/user/{bob['user_id']}/filter", alice["access_token"], {})
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"


async def test_an_invalid_user_id_is_400_invalid_param(client, alice):
    status, body = await call(client, "POST", f"{V3}/user/alice/filter", alice["access_token"], {})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"


async def test_a_missing_token_is_401_missing_token(client, alice):
    for method, path in [
        ("POST", f"{V3}/user/{alice['user_id']}/filter"),
        ("GET", f"{V3}/user/{alice['user_id']}/filter/0"),
    ]:
        status, body = await call(client, method, path, None, {} if method == "POST" else None)
        assert status == 401 and body["errcode"] == "M_MISSING_TOKEN"


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_the_bundled_filter_schemas_match_the_spec_checkout(name):
    definitions = need_spec("data/api/client-server/definitions")
    assert (SCHEMA_DIR / name).read_text() == (definitions / name).read_text()
