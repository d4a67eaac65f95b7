"""GET /capabilities and the unstable features /versions advertises."""

from __future__ import annotations

import pytest

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from tests.accounts.helpers import bearer, register

CAPABILITIES = "/_matrix/client/v3/capabilities"


async def get_capabilities(client, token):
    async with client.get(CAPABILITIES, headers=bearer(token)) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["capabilities"]


async def test_room_versions_come_from_the_table_with_the_configured_default(make_homeserver):
    import aiohttp

    server = await make_homeserver(default_room_version="10")
    async with aiohttp.ClientSession(server.base_url()) as session:
        user = await register(session, "alice")
        versions = (await get_capabilities(session, user["access_token"]))["m.room_versions"]
    assert versions["default"] == "10"
    assert versions["available"] == {v: KNOWN_ROOM_VERSIONS[v].stability.value for v in KNOWN_ROOM_VERSIONS}
    assert versions["available"]["11"] == "stable"


async def test_account_capabilities_say_what_a_user_may_change(client):
    user = await register(client, "alice")
    capabilities = await get_capabilities(client, user["access_token"])
    assert capabilities["m.change_password"] == {"enabled": True}
    assert capabilities["m.set_displayname"] == {"enabled": True}
    assert capabilities["m.set_avatar_url"] == {"enabled": True}
    assert capabilities["m.profile_fields"] == {"enabled": True}
    assert capabilities["m.3pid_changes"] == {"enabled": False}
    assert capabilities["m.get_login_token"] == {"enabled": False}


@pytest.mark.parametrize(
    ("headers", "errcode"), [({}, "M_MISSING_TOKEN"), ({"Authorization": "Bearer nope"}, "M_UNKNOWN_TOKEN")]
)
async def test_capabilities_need_a_valid_token(client, headers, errcode):
    async with client.get(CAPABILITIES, headers=headers) as resp:
        assert resp.status == 401 and (await resp.json())["errcode"] == errcode


async def test_versions_advertises_stable_extended_profiles(client):
    async with client.get("/_matrix/client/versions") as resp:
        body = await resp.json()
    assert body["unstable_features"]["uk.tcpip.msc4133.stable"] is True
