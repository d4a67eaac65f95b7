"""A policy version published while members exist: they are asked at once, not at their next sign-in."""

from __future__ import annotations

import asyncio
import dataclasses

from appservices.privacy.config import ConsentConfig
from appservices.privacy.service import PrivacyService
from tests.admin.helpers import q


async def test_publishing_a_version_asks_every_existing_member_and_blocks_them_until_they_accept(make_privacy):
    env = await make_privacy()  # no policy yet
    try:
        silent = await env.member("wim", dm=False)  # signed in before the policy, never talked to the bot
        talker = await env.member("els")  # has a DM with the bot already
        room = (await talker.caller.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        await silent.caller.call("POST", f"/join/{q(room)}", {})
        await talker.caller.call("POST", f"/rooms/{q(room)}/send/m.room.message",
                                 {"msgtype": "m.text", "body": "hallo"})  # no policy is required yet
        await env.service.stop()
        config = dataclasses.replace(env.service.config, consent=ConsentConfig(
            version="1", documents=env.service.config.consent.documents))
        published = PrivacyService(config, clock=env.clock, login_poll_timeout_ms=2000)
        await published.start()
        env.service = published
        try:
            await asyncio.wait_for(published.consent_swept.wait(), 60)
            # Neither signed in again: the sweep asked both, in the DM the member has or one the bot opens.
            [asked] = await silent.join_bot_dm(published.store)
            assert "versie 1" in asked["content"]["body"] and "/_privacy/consent/1" in asked["content"]["body"]
            replies = await talker.next_replies(until="versie 1")
            assert any("toestemming akkoord" in e["content"]["body"] for e in replies)
            for member in (silent, talker):
                refused = await member.caller.call("POST", f"/rooms/{q(room)}/send/m.room.message",
                                                   {"msgtype": "m.text", "body": "mag dit?"}, expect=403)
                assert refused["errcode"] == "M_CONSENT_NOT_GIVEN"
            await talker.ask("toestemming akkoord")
            await talker.caller.call("POST", f"/rooms/{q(room)}/send/m.room.message",
                                     {"msgtype": "m.text", "body": "nu wel"})
            await silent.caller.call("POST", f"/rooms/{q(room)}/send/m.room.message",
                                     {"msgtype": "m.text", "body": "nog niet"}, expect=403)
            entries = (await env.privacy_admin("GET", "/audit"))["entries"]
            asked_users = {e["user_id"] for e in entries if e["action"] == "consent.asked"}
            assert {silent.user_id, talker.user_id} <= asked_users
            assert [e["detail"]["version"] for e in entries if e["action"] == "consent.swept"] == ["1"]
            # Once per version: a second sweep (a restart) asks nobody again.
            assert await published.bot.sweep_consent() == 0
        finally:
            await published.stop()
    finally:
        await env.close()
