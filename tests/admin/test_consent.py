"""Consent to the privacy policy: the policy version, each member's acceptance, and the send block."""

from __future__ import annotations

import aiohttp

from homeserver.server import HomeServer
from tests.admin.privacy_helpers import new_admin, new_caller, own, q

SERVER = "consent.test"
BOT = f"@privacybot:{SERVER}"
POLICY = {"version": "1.0", "url": "https://huiskamer.example/privacy/1.0"}


async def test_a_member_who_has_not_consented_is_blocked_except_in_a_dm_with_the_privacy_bot(make_homeserver):
    hs = await make_homeserver(server_name=SERVER, consent={"exempt_users": [BOT]})
    async with aiohttp.ClientSession(hs.base_url("client")) as client:
        admin = await new_admin(client)
        bot = await new_caller(client, "privacybot")
        member = await new_caller(client, "member")
        room = await member.create_room(preset="public_chat")
        assert await own(admin, "GET", "/consent/policy") == {"version": None, "url": None, "set_ts": None}
        policy = await own(admin, "PUT", "/consent/policy", POLICY)
        assert policy["version"] == "1.0" and policy["url"] == POLICY["url"] and policy["set_ts"] > 0

        blocked = await member.call("PUT", f"/rooms/{q(room)}/send/m.room.message/t1", {"msgtype": "m.text",
                                                                                         "body": "hi"}, expect=403)
        assert blocked["errcode"] == "M_CONSENT_NOT_GIVEN" and blocked["consent_uri"] == POLICY["url"]
        # The admin who owns nothing here is not blocked.
        await admin.join(room)
        await admin.send(room, "admins may speak")

        dm = await bot.create_room(preset="private_chat", invite=[member.user_id], is_direct=True)
        await member.join(dm)
        await member.send(dm, "I agree")
        # Leaving is always allowed.
        await member.call("POST", f"/rooms/{q(room)}/leave", {})

        assert await own(admin, "GET", f"/users/{q(member.user_id)}/consent") == {"version": None, "ts": None}
        recorded = await own(admin, "PUT", f"/users/{q(member.user_id)}/consent", {"version": "1.0"})
        assert recorded["version"] == "1.0" and recorded["ts"] > 0
        assert await own(admin, "GET", f"/users/{q(member.user_id)}/consent") == recorded
        details = await admin.admin("GET", f"/v2/users/{q(member.user_id)}")
        assert (details["consent_version"], details["consent_ts"]) == ("1.0", recorded["ts"])
        await member.join(room)
        await member.send(room, "now I may")

        # A new version blocks again until it is accepted.
        await own(admin, "PUT", "/consent/policy", {**POLICY, "version": "2.0"})
        again = await member.call("PUT", f"/rooms/{q(room)}/send/m.room.message/t2", {"msgtype": "m.text",
                                                                                       "body": "hi"}, expect=403)
        assert again["errcode"] == "M_CONSENT_NOT_GIVEN"


async def test_the_policy_survives_a_restart(make_homeserver):
    hs = await make_homeserver(server_name=SERVER)
    async with aiohttp.ClientSession(hs.base_url("client")) as client:
        admin = await new_admin(client)
        member = await new_caller(client, "member")
        room = await member.create_room()
        await own(admin, "PUT", "/consent/policy", POLICY)
    await hs.stop()
    again = HomeServer(hs.config)
    await again.start()
    try:
        async with aiohttp.ClientSession(again.base_url("client")) as client:
            async with client.post("/_matrix/client/v3/createRoom", json={},
                                   headers={"Authorization": f"Bearer {member.token}"}) as resp:
                assert resp.status == 403 and (await resp.json())["errcode"] == "M_CONSENT_NOT_GIVEN"
            async with client.put(f"/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/x", json={"body": "x"},
                                  headers={"Authorization": f"Bearer {member.token}"}) as resp:
                assert resp.status == 403 and (await resp.json())["errcode"] == "M_CONSENT_NOT_GIVEN"
    finally:
        await again.stop()


async def test_blocking_can_be_turned_off_in_config(make_homeserver):
    hs = await make_homeserver(server_name=SERVER, consent={"block_events": False})
    async with aiohttp.ClientSession(hs.base_url("client")) as client:
        admin = await new_admin(client)
        member = await new_caller(client, "member")
        await own(admin, "PUT", "/consent/policy", POLICY)
        room = await member.create_room()
        await member.send(room, "no consent needed here")


async def test_policy_and_consent_bodies_are_checked(client):
    admin = await new_admin(client)
    member = await new_caller(client, "member")
    for body, field in (({}, "version"), ({"version": "1"}, "url"), ({"version": 1, "url": "https://x"}, "version"),
                        ({"version": "1", "url": "ftp://x"}, "url")):
        data = await own(admin, "PUT", "/consent/policy", body, expect=400)
        assert field in data["error"], data
    data = await own(admin, "PUT", f"/users/{q(member.user_id)}/consent", {}, expect=400)
    assert data["errcode"] == "M_MISSING_PARAM" and "version" in data["error"]
    data = await own(admin, "GET", f"/users/{q('@ghost:' + member.user_id.split(':', 1)[1])}/consent", expect=404)
    assert data["errcode"] == "M_NOT_FOUND"
