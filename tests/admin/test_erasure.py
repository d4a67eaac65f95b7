"""Erasing a member through `POST /_huiskamer/admin/v1/users/{userId}/erase`: what other members
see afterwards, the task status, and the checks on the request."""

from __future__ import annotations

import aiohttp

from tests.admin.privacy_helpers import events_ndjson, new_admin, new_caller, own, q, wait_for_task


async def test_other_members_see_the_erased_members_messages_redacted_even_where_nobody_could_redact(client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    bob = await new_caller(client, "bob")
    shared = await bob.create_room(preset="private_chat", invite=[alice.user_id])
    await alice.join(shared)
    in_shared = await alice.send(shared, "said while present")
    left = await alice.create_room(preset="private_chat", invite=[bob.user_id])
    await bob.join(left)
    in_left = await alice.send(left, "said before leaving")
    await alice.call("POST", f"/rooms/{q(left)}/leave", {})

    started = await own(admin, "POST", f"/users/{q(alice.user_id)}/erase", {})
    status = await wait_for_task(admin, started["task_id"])
    assert status["status"] == "complete" and status["progress"]["step"] == "done"
    assert status["action"] == "erase_user" and status["resource_id"] == alice.user_id
    removed = status["result"]["removed"]
    assert removed["events_redacted"] == 1 and removed["events_pruned_without_redaction"] == 1
    assert status["result"]["kept"]["membership_events"]["why"]

    redacted = await bob.call("GET", f"/rooms/{q(shared)}/event/{q(in_shared)}")
    assert redacted["content"] == {} and "redacted_because" in redacted["unsigned"]
    pruned = await bob.call("GET", f"/rooms/{q(left)}/event/{q(in_left)}")
    assert pruned["content"] == {}
    # The export of an erased member shows no message content at all.
    _, lines = await events_ndjson(admin, alice.user_id)
    assert all("body" not in line["content"] for line in lines)
    members = await bob.call("GET", f"/rooms/{q(shared)}/members")
    assert {e["state_key"]: e["content"]["membership"] for e in members["chunk"]}[alice.user_id] == "leave"
    async with client.get("/_matrix/client/v3/account/whoami",
                          headers={"Authorization": f"Bearer {alice.token}"}) as resp:
        assert resp.status == 401


async def test_erase_requests_are_checked(hs, client):
    admin = await new_admin(client)
    bob = await new_caller(client, "bob")
    data = await own(admin, "POST", f"/users/{q(bob.user_id)}/erase", {"keep_public_room_messages": "yes"},
                     expect=400)
    assert data["errcode"] == "M_BAD_JSON" and data["error"].startswith("keep_public_room_messages")
    ghost = "@ghost:" + bob.user_id.split(":", 1)[1]
    assert (await own(admin, "POST", f"/users/{q(ghost)}/erase", {}, expect=404))["errcode"] == "M_NOT_FOUND"
    remote = await own(admin, "POST", f"/users/{q('@bob:elsewhere.example')}/erase", {}, expect=400)
    assert remote["errcode"] == "M_INVALID_PARAM"
    async with client.post(f"/_huiskamer/admin/v1/users/{q(bob.user_id)}/erase", data=b"{nope",
                           headers={"Authorization": f"Bearer {admin.token}"}) as resp:
        assert resp.status == 400 and (await resp.json())["errcode"] == "M_NOT_JSON"
    # An empty body erases with the defaults.
    async with aiohttp.ClientSession(hs.base_url("client")) as other:
        async with other.post(f"/_huiskamer/admin/v1/users/{q(bob.user_id)}/erase",
                              headers={"Authorization": f"Bearer {admin.token}"}) as resp:
            assert resp.status == 200
            task_id = (await resp.json())["task_id"]
    assert (await wait_for_task(admin, task_id))["status"] == "complete"
