"""Profiles: /profile/{userId}, display name, avatar and the extended fields of spec v1.16."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from homeserver.accounts.profiles import MAX_PROFILE_BYTES
from homeserver.streams.updates import ProfileChanged
from tests.accounts.helpers import bearer, register

V3 = "/_matrix/client/v3"


def profile_path(user_id: str, key: str | None = None) -> str:
    path = f"{V3}/profile/{quote(user_id, safe='@:')}"
    return path if key is None else f"{path}/{quote(key, safe='')}"


async def get(client, path, token=None):
    async with client.get(path, headers=bearer(token) if token else None) as resp:
        return resp.status, await resp.json()


async def put(client, path, body, token):
    async with client.put(path, json=body, headers=bearer(token) if token else None) as resp:
        return resp.status, await resp.json()


async def delete(client, path, token):
    async with client.delete(path, headers=bearer(token) if token else None) as resp:
        return resp.status, await resp.json()


@pytest.fixture
async def alice(client):
    return await register(client, "alice")


@pytest.fixture
async def bob(client):
    return await register(client, "bob")


async def test_a_new_user_has_their_localpart_as_display_name(client, alice):
    assert await get(client, profile_path(alice["user_id"])) == (200, {"displayname": "alice"})
    status, body = await get(client, profile_path(alice["user_id"], "displayname"))
    assert (status, body) == (200, {"displayname": "alice"})


async def test_setting_the_display_name_shows_in_the_profile(client, alice):
    path = profile_path(alice["user_id"], "displayname")
    assert await put(client, path, {"displayname": "  Alice Liddell "}, alice["access_token"]) == (200, {})
    assert await get(client, path) == (200, {"displayname": "Alice Liddell"})


async def test_setting_the_avatar_url_shows_in_the_whole_profile(client, alice):
    mxc = "mxc://example.org/SDGdghriugerRg"
    status, _ = await put(
        client, profile_path(alice["user_id"], "avatar_url"), {"avatar_url": mxc}, alice["access_token"]
    )
    assert status == 200
    assert await get(client, profile_path(alice["user_id"])) == (
        200,
        {"displayname": "alice", "avatar_url": mxc},
    )


async def test_custom_fields_hold_any_json_and_can_be_deleted(client, alice):
    token = alice["access_token"]
    fields = {
        "nl.huiskamergeklets.gender": "vrouw",
        "nl.huiskamergeklets.born": {"year": 1990, "month": 4},
        "m.tz": "Europe/Amsterdam",
        "org.example.flag": None,
    }
    for key, value in fields.items():
        assert await put(client, profile_path(alice["user_id"], key), {key: value}, token) == (200, {})
    status, profile = await get(client, profile_path(alice["user_id"]))
    assert status == 200 and profile == {"displayname": "alice", **fields}
    assert await get(client, profile_path(alice["user_id"], "org.example.flag")) == (
        200,
        {"org.example.flag": None},
    )
    key = "nl.huiskamergeklets.gender"
    assert await delete(client, profile_path(alice["user_id"], key), token) == (200, {})
    status, body = await get(client, profile_path(alice["user_id"], key))
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"


async def test_deleting_the_display_name_or_an_absent_field_succeeds(client, alice):
    token = alice["access_token"]
    assert await delete(client, profile_path(alice["user_id"], "displayname"), token) == (200, {})
    assert await delete(client, profile_path(alice["user_id"], "org.example.never_set"), token) == (200, {})
    assert await get(client, profile_path(alice["user_id"])) == (200, {})
    status, body = await get(client, profile_path(alice["user_id"], "displayname"))
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"


async def test_an_empty_display_name_clears_it(client, alice):
    token = alice["access_token"]
    assert await put(client, profile_path(alice["user_id"], "displayname"), {"displayname": ""}, token) == (
        200,
        {},
    )
    assert await get(client, profile_path(alice["user_id"])) == (200, {})


async def test_profile_changes_are_published_with_both_member_fields(hs, client, alice):
    seen = []

    async def record(update):
        seen.append((update.user_id, update.displayname, update.avatar_url))

    def broken(update):
        raise RuntimeError("a failing consumer must not fail the request")

    hs.bus.subscribe(ProfileChanged, broken)
    hs.bus.subscribe(ProfileChanged, record)
    token, user_id = alice["access_token"], alice["user_id"]
    assert (await put(client, profile_path(user_id, "displayname"), {"displayname": "A"}, token))[0] == 200
    assert (await put(client, profile_path(user_id, "avatar_url"), {"avatar_url": "mxc://x.org/a"}, token))[
        0
    ] == 200
    assert (await put(client, profile_path(user_id, "org.example.job"), {"org.example.job": "x"}, token))[
        0
    ] == 200
    assert (await delete(client, profile_path(user_id, "displayname"), token))[0] == 200
    assert seen == [(user_id, "A", None), (user_id, "A", "mxc://x.org/a"), (user_id, None, "mxc://x.org/a")]


async def test_a_missing_token_is_401_for_changes_but_lookups_are_public(client, alice):
    for status, body in [
        await put(client, profile_path(alice["user_id"], "displayname"), {"displayname": "x"}, None),
        await delete(client, profile_path(alice["user_id"], "displayname"), None),
    ]:
        assert status == 401 and body["errcode"] == "M_MISSING_TOKEN"
    assert (await get(client, profile_path(alice["user_id"])))[0] == 200


async def test_a_lookup_with_an_unknown_token_is_401(client, alice):
    status, body = await get(client, profile_path(alice["user_id"]), token="not-a-token")
    assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN"


async def test_changing_another_users_profile_is_403(client, alice, bob):
    for key in ("displayname", "avatar_url", "org.example.job"):
        status, body = await put(
            client, profile_path(bob["user_id"], key), {key: "mxc://x.org/a"}, alice["access_token"]
        )
        assert status == 403 and body["errcode"] == "M_FORBIDDEN"
        status, body = await delete(client, profile_path(bob["user_id"], key), alice["access_token"])
        assert status == 403 and body["errcode"] == "M_FORBIDDEN"


async def test_unknown_users_are_404_and_users_of_unreachable_servers_502(hs, client):
    for path in (profile_path(f"@nobody:{hs.config.server_name}"),
                 profile_path(f"@nobody:{hs.config.server_name}", "displayname")):
        status, body = await get(client, path)
        assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    # Other servers' users are asked over federation (tests/federation/test_client_federation.py);
    # a server that cannot be reached is a 502, as in Synapse.
    for path in (profile_path("@someone:elsewhere.invalid"), profile_path("@someone:elsewhere.invalid", "displayname")):
        status, body = await get(client, path)
        assert status == 502 and body["errcode"] == "M_UNKNOWN"


@pytest.mark.parametrize("user_id", ["alice", "@", "@alice", "!room:example.org", "@" + "a" * 300 + ":x.org"])
async def test_invalid_user_ids_are_400_invalid_param(client, alice, user_id):
    for status, body in [
        await get(client, profile_path(user_id)),
        await get(client, profile_path(user_id, "displayname")),
        await put(client, profile_path(user_id, "displayname"), {"displayname": "x"}, alice["access_token"]),
    ]:
        assert status == 400 and body["errcode"] == "M_INVALID_PARAM", body


@pytest.mark.parametrize(
    ("key", "errcode"),
    [
        ("Upper.case", "M_INVALID_PARAM"),
        ("1digit.first", "M_INVALID_PARAM"),
        ("has space", "M_INVALID_PARAM"),
        ("ünïcode.key", "M_INVALID_PARAM"),
        ("a" * 256, "M_KEY_TOO_LARGE"),
    ],
)
async def test_key_names_outside_the_grammar_are_refused(client, alice, key, errcode):
    path = profile_path(alice["user_id"], key)
    for status, body in [
        await put(client, path, {key: "v"}, alice["access_token"]),
        await get(client, path),
        await delete(client, path, alice["access_token"]),
    ]:
        assert status == 400 and body["errcode"] == errcode, body


async def test_a_key_of_exactly_255_bytes_is_accepted(client, alice):
    key = "a" * 255
    assert await put(client, profile_path(alice["user_id"], key), {key: 1}, alice["access_token"]) == (
        200,
        {},
    )


@pytest.mark.parametrize(
    ("key", "body", "errcode"),
    [
        ("displayname", {}, "M_MISSING_PARAM"),
        ("displayname", {"other": "x"}, "M_MISSING_PARAM"),
        ("displayname", {"displayname": 5}, "M_INVALID_PARAM"),
        ("displayname", {"displayname": None}, "M_INVALID_PARAM"),
        ("displayname", {"displayname": "x" * 257}, "M_INVALID_PARAM"),
        ("avatar_url", {"avatar_url": ["mxc://x.org/a"]}, "M_INVALID_PARAM"),
        ("avatar_url", {"avatar_url": "https://example.org/me.png"}, "M_INVALID_PARAM"),
        ("avatar_url", {"avatar_url": "mxc://x.org/" + "a" * 1000}, "M_INVALID_PARAM"),
        ("m.tz", {"m.tz": 1}, "M_INVALID_PARAM"),
        ("org.example.job", [], "M_BAD_JSON"),
    ],
)
async def test_bad_values_are_400_naming_the_problem(client, alice, key, body, errcode):
    status, error = await put(client, profile_path(alice["user_id"], key), body, alice["access_token"])
    assert status == 400 and error["errcode"] == errcode, error


async def test_a_body_that_is_not_json_is_400_not_json(client, alice):
    async with client.put(
        profile_path(alice["user_id"], "displayname"), data=b"{nope", headers=bearer(alice["access_token"])
    ) as resp:
        assert resp.status == 400 and (await resp.json())["errcode"] == "M_NOT_JSON"


async def test_the_whole_profile_is_limited_to_64_kib(client, alice):
    token, user_id = alice["access_token"], alice["user_id"]
    chunk = "x" * 30_000
    for key in ("org.example.one", "org.example.two"):
        assert (await put(client, profile_path(user_id, key), {key: chunk}, token))[0] == 200
    status, body = await put(
        client, profile_path(user_id, "org.example.three"), {"org.example.three": chunk}, token
    )
    assert status == 400 and body["errcode"] == "M_PROFILE_TOO_LARGE"
    # Replacing a field counts its new size, not old and new together.
    assert (await put(client, profile_path(user_id, "org.example.two"), {"org.example.two": chunk}, token))[
        0
    ] == 200
    status, profile = await get(client, profile_path(user_id))
    assert "org.example.three" not in profile
    assert len(str(profile)) < MAX_PROFILE_BYTES


async def test_the_r0_prefix_serves_profiles_too(client, alice):
    status, body = await get(client, profile_path(alice["user_id"]).replace("/v3/", "/r0/"))
    assert (status, body) == (200, {"displayname": "alice"})


async def test_user_ids_with_a_slash_work_when_percent_encoded(client):
    user = await register(client, "a/b")
    path = profile_path(user["user_id"], "displayname")
    assert "%2F" in path
    assert await put(client, path, {"displayname": "Slash"}, user["access_token"]) == (200, {})
    assert await get(client, path) == (200, {"displayname": "Slash"})
