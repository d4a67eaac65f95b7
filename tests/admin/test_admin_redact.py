"""Redacting all of a user's events through the admin API, with a status that survives a restart."""

from __future__ import annotations

import aiohttp

from homeserver.server import HomeServer
from tests.admin.helpers import assert_admin_only, new_admin, new_caller, q
from tests.admin.test_admin_rooms import wait_for_status


async def test_a_users_messages_are_redacted_everywhere_and_the_status_survives_a_restart(hs, client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    bob = await new_caller(client, "bob")
    room_id = await bob.create_room(preset="public_chat")
    await alice.join(room_id)
    sent = [await alice.send(room_id, f"spam {i}") for i in range(3)]
    kept = await bob.send(room_id, "innocent")
    started = await admin.admin("POST", f"/v1/user/{q(alice.user_id)}/redact", {"rooms": [], "reason": "spam"})
    status = await wait_for_status(admin, f"/v1/user/redact_status/{started['redact_id']}")
    assert status == {"status": "complete", "failed_redactions": {}}
    for event_id in sent:
        event = await bob.call("GET", f"/rooms/{q(room_id)}/event/{q(event_id)}")
        assert event["content"] == {} and "redacted_because" in event["unsigned"]
    assert (await bob.call("GET", f"/rooms/{q(room_id)}/event/{q(kept)}"))["content"]["body"] == "innocent"
    await hs.stop()
    again = HomeServer(hs.config)
    await again.start()
    try:
        async with aiohttp.ClientSession(again.base_url("client")) as other:
            async with other.get(f"/_synapse/admin/v1/user/redact_status/{started['redact_id']}",
                                 headers={"Authorization": f"Bearer {admin.token}"}) as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "complete"
    finally:
        await again.stop()


async def test_redaction_requests_are_checked_and_admin_only(client):
    admin = await new_admin(client)
    bob = await new_caller(client, "bob")
    await assert_admin_only(bob, "POST", f"/v1/user/{q(bob.user_id)}/redact", {"rooms": []})
    await assert_admin_only(bob, "GET", "/v1/user/redact_status/abc")
    for body, field in (({}, "rooms"), ({"rooms": "all"}, "rooms"), ({"rooms": [], "limit": 0}, "limit"),
                        ({"rooms": [], "reason": 5}, "reason")):
        data = await admin.admin("POST", f"/v1/user/{q(bob.user_id)}/redact", body, expect=400)
        assert field in data["error"], data
    assert (await admin.admin("POST", "/v1/user/not-a-user/redact", {"rooms": []}, expect=400))["errcode"] == \
        "M_INVALID_PARAM"
    assert (await admin.admin("GET", "/v1/user/redact_status/nope", expect=404))["errcode"] == "M_NOT_FOUND"
