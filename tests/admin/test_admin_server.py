"""Server-wide admin endpoints: version, registration tokens, event reports, notices, status."""

from __future__ import annotations

import aiohttp

from homeserver import __version__
from tests.admin.helpers import assert_admin_only, new_admin, new_caller, q
from tests.admin.test_admin_rooms import wait_for_status

SERVER_ENDPOINTS = [
    ("GET", "/v1/background_updates/status", None),
    ("GET", "/v1/scheduled_tasks", None),
    ("GET", "/v1/federation/destinations", None),
    ("GET", "/v1/registration_tokens", None),
    ("POST", "/v1/registration_tokens/new", {}),
    ("GET", "/v1/registration_tokens/abc", None),
    ("PUT", "/v1/registration_tokens/abc", {}),
    ("DELETE", "/v1/registration_tokens/abc", None),
    ("GET", "/v1/event_reports", None),
    ("GET", "/v1/event_reports/1", None),
    ("DELETE", "/v1/event_reports/1", None),
    ("POST", "/v1/send_server_notice", {"user_id": "@a:b", "content": {}}),
]


async def test_every_server_endpoint_refuses_a_non_admin_with_forbidden(client):
    await new_admin(client)
    mallory = await new_caller(client, "mallory")
    for method, path, body in SERVER_ENDPOINTS:
        await assert_admin_only(mallory, method, path, body)


async def test_the_server_version_is_served_and_status_endpoints_answer(client):
    admin = await new_admin(client)
    async with client.get("/_synapse/admin/v1/server_version") as resp:
        assert resp.status == 200 and await resp.json() == {"server_version": __version__}
    assert await admin.admin("GET", "/v1/background_updates/status") == {"enabled": True, "current_updates": {}}
    assert await admin.admin("GET", "/v1/federation/destinations") == {"destinations": [], "total": 0}
    assert (await admin.admin("GET", "/v1/federation/destinations", limit="-1", expect=400))["errcode"] == \
        "M_INVALID_PARAM"
    assert (await admin.admin("GET", "/v1/federation/destinations/other.example", expect=404))["errcode"] == \
        "M_NOT_FOUND"


async def test_registration_tokens_are_created_listed_updated_used_and_deleted(make_homeserver):
    hs = await make_homeserver(registration={"require_token": True})
    async with aiohttp.ClientSession(hs.base_url("client")) as client:
        admin = await new_admin(client)
        named = await admin.admin("POST", "/v1/registration_tokens/new", {"token": "welcome", "uses_allowed": 1})
        assert named == {"token": "welcome", "uses_allowed": 1, "pending": 0, "completed": 0, "expiry_time": None}
        generated = await admin.admin("POST", "/v1/registration_tokens/new", {"length": 10})
        assert len(generated["token"]) == 10 and generated["uses_allowed"] is None
        listed = await admin.admin("GET", "/v1/registration_tokens")
        assert {t["token"] for t in listed["registration_tokens"]} == {"welcome", generated["token"]}
        # Register with the token through the client API's UIA.
        async with client.post("/_matrix/client/v3/register", json={"username": "newbie", "password": "pw"}) as r:
            session = (await r.json())["session"]
        async with client.post("/_matrix/client/v3/register", json={
                "username": "newbie", "password": "pw",
                "auth": {"type": "m.login.registration_token", "token": "welcome", "session": session}}) as r:
            assert r.status == 200, await r.text()
        used = await admin.admin("GET", "/v1/registration_tokens/welcome")
        assert used["completed"] == 1
        invalid = await admin.admin("GET", "/v1/registration_tokens", valid="false")
        assert [t["token"] for t in invalid["registration_tokens"]] == ["welcome"]
        valid = await admin.admin("GET", "/v1/registration_tokens", valid="true")
        assert [t["token"] for t in valid["registration_tokens"]] == [generated["token"]]
        updated = await admin.admin("PUT", "/v1/registration_tokens/welcome", {"uses_allowed": 5,
                                                                                "expiry_time": 2 ** 50})
        assert updated["uses_allowed"] == 5 and updated["expiry_time"] == 2 ** 50
        await admin.admin("DELETE", "/v1/registration_tokens/welcome")
        assert (await admin.admin("GET", "/v1/registration_tokens/welcome", expect=404))["errcode"] == "M_NOT_FOUND"
        assert (await admin.admin("PUT", "/v1/registration_tokens/nope", {}, expect=404))["errcode"] == "M_NOT_FOUND"
        assert (await admin.admin("DELETE", "/v1/registration_tokens/nope", expect=404))["errcode"] == \
            "M_NOT_FOUND"


async def test_registration_token_requests_with_bad_fields_are_refused_naming_them(client):
    admin = await new_admin(client)
    await admin.admin("POST", "/v1/registration_tokens/new", {"token": "dup"})
    for body, field in (({"token": "has space"}, "token"), ({"length": 0}, "length"), ({"length": "5"}, "length"),
                        ({"uses_allowed": -1}, "uses_allowed"), ({"expiry_time": 1}, "expiry_time"),
                        ({"token": "dup"}, "token")):
        data = await admin.admin("POST", "/v1/registration_tokens/new", body, expect=400)
        assert data["errcode"] == "M_INVALID_PARAM" and field in data["error"], data
    data = await admin.admin("PUT", "/v1/registration_tokens/dup", {"uses_allowed": "x"}, expect=400)
    assert "uses_allowed" in data["error"]
    assert (await admin.admin("GET", "/v1/registration_tokens", valid="maybe", expect=400))["errcode"] == \
        "M_INVALID_PARAM"


async def test_event_reports_are_listed_shown_and_deleted(client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    bob = await new_caller(client, "bob")
    room_id = await alice.create_room(name="Lounge", preset="public_chat")
    await bob.join(room_id)
    first = await alice.send(room_id, "rude")
    second = await alice.send(room_id, "ruder")
    await bob.call("POST", f"/rooms/{q(room_id)}/report/{q(first)}", {"reason": "spam", "score": -50})
    await bob.call("POST", f"/rooms/{q(room_id)}/report/{q(second)}", {"reason": "abuse"})
    await bob.call("POST", f"/rooms/{q(room_id)}/report", {"reason": "a room report, not an event report"})
    listed = await admin.admin("GET", "/v1/event_reports", limit=1)
    assert listed["total"] == 2 and listed["next_token"] == 1
    newest = listed["event_reports"][0]
    assert newest["event_id"] == second and newest["user_id"] == bob.user_id and newest["sender"] == alice.user_id
    assert newest["name"] == "Lounge" and newest["room_id"] == room_id
    assert set(newest) == {"id", "received_ts", "room_id", "name", "event_id", "user_id", "reason", "score",
                           "sender", "canonical_alias"}
    forwards = await admin.admin("GET", "/v1/event_reports", dir="f")
    assert [r["event_id"] for r in forwards["event_reports"]] == [first, second]
    by_sender = await admin.admin("GET", "/v1/event_reports", event_sender_user_id=bob.user_id)
    assert by_sender["total"] == 0
    report = await admin.admin("GET", f"/v1/event_reports/{newest['id']}")
    assert report["event_json"]["content"]["body"] == "ruder"
    await admin.admin("DELETE", f"/v1/event_reports/{newest['id']}")
    assert (await admin.admin("GET", f"/v1/event_reports/{newest['id']}", expect=404))["errcode"] == "M_NOT_FOUND"
    assert (await admin.admin("DELETE", "/v1/event_reports/9999", expect=404))["errcode"] == "M_NOT_FOUND"
    bad = await admin.admin("GET", "/v1/event_reports/abc", expect=400)
    assert bad["errcode"] == "M_INVALID_PARAM" and "report_id" in bad["error"]
    assert (await admin.admin("GET", "/v1/event_reports", dir="x", expect=400))["errcode"] == "M_INVALID_PARAM"


async def test_server_notices_go_to_a_tagged_room_of_the_users_own(make_homeserver):
    hs = await make_homeserver(server_notices={"system_mxid_localpart": "notices"})
    async with aiohttp.ClientSession(hs.base_url("client")) as client:
        admin = await new_admin(client)
        bob = await new_caller(client, "bob")
        sent = await admin.admin("POST", "/v1/send_server_notice", {
            "user_id": bob.user_id, "content": {"msgtype": "m.text", "body": "Maintenance tonight"}})
        invites = (await bob.call("GET", "/sync"))["rooms"]["invite"]
        assert len(invites) == 1
        room_id = next(iter(invites))
        await bob.join(room_id)
        messages = await bob.call("GET", f"/rooms/{q(room_id)}/messages", dir="b")
        notice = next(e for e in messages["chunk"] if e["event_id"] == sent["event_id"])
        assert notice["sender"] == f"@notices:{hs.config.server_name}"
        assert notice["content"]["body"] == "Maintenance tonight"
        tags = await bob.call("GET", f"/user/{q(bob.user_id)}/rooms/{q(room_id)}/tags")
        assert "m.server_notice" in tags["tags"]
        again = await admin.admin("PUT", "/v1/send_server_notice/txn1", {
            "user_id": bob.user_id, "content": {"msgtype": "m.text", "body": "Done"}})
        repeated = await admin.admin("PUT", "/v1/send_server_notice/txn1", {
            "user_id": bob.user_id, "content": {"msgtype": "m.text", "body": "Done"}})
        assert again == repeated
        assert (await bob.call("GET", f"/rooms/{q(room_id)}/event/{q(again['event_id'])}"))["room_id"] == room_id
        refused = await bob.call("PUT", f"/rooms/{q(room_id)}/send/m.room.message/t1", {"msgtype": "m.text",
                                                                                       "body": "reply"}, expect=403)
        assert refused["errcode"] == "M_FORBIDDEN"
        for body, field in (({"content": {}}, "user_id"), ({"user_id": bob.user_id}, "content"),
                            ({"user_id": bob.user_id, "content": {}, "type": 5}, "type")):
            assert field in (await admin.admin("POST", "/v1/send_server_notice", body, expect=400))["error"]
        ghost = "@ghost:" + hs.config.server_name
        assert (await admin.admin("POST", "/v1/send_server_notice", {"user_id": ghost, "content": {}},
                                  expect=404))["errcode"] == "M_NOT_FOUND"


async def test_server_notices_are_refused_when_not_configured(client):
    admin = await new_admin(client)
    data = await admin.admin("POST", "/v1/send_server_notice", {"user_id": admin.user_id, "content": {}},
                             expect=400)
    assert "not enabled" in data["error"]


async def test_user_reports_are_listed_shown_and_deleted(client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    bob = await new_caller(client, "bob")
    await bob.call("POST", f"/users/{q(alice.user_id)}/report", {"reason": "harassment"})
    listed = await admin.admin("GET", "/v1/user_reports")
    assert listed["total"] == 1
    report = listed["user_reports"][0]
    assert report["target_user_id"] == alice.user_id and report["user_id"] == bob.user_id
    assert set(report) == {"id", "received_ts", "target_user_id", "user_id", "reason"}
    assert await admin.admin("GET", f"/v1/user_reports/{report['id']}") == report
    assert (await admin.admin("GET", "/v1/user_reports", target_user_id=bob.user_id))["total"] == 0
    await admin.admin("DELETE", f"/v1/user_reports/{report['id']}")
    assert (await admin.admin("GET", f"/v1/user_reports/{report['id']}", expect=404))["errcode"] == "M_NOT_FOUND"
    assert (await admin.admin("GET", "/v1/user_reports/x", expect=400))["errcode"] == "M_INVALID_PARAM"
    await assert_admin_only(bob, "GET", "/v1/user_reports")
    await assert_admin_only(bob, "DELETE", "/v1/user_reports/1")


async def test_scheduled_tasks_list_the_admin_jobs_with_filters(client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    kept, doomed = await alice.create_room(), await alice.create_room()
    purge_id = (await admin.admin("POST", f"/v1/purge_history/{q(kept)}", {"purge_up_to_ts": 1}))["purge_id"]
    delete_id = (await admin.admin("DELETE", f"/v2/rooms/{q(doomed)}", {}))["delete_id"]
    await wait_for_status(admin, f"/v1/purge_history_status/{purge_id}")
    await wait_for_status(admin, f"/v2/rooms/delete_status/{delete_id}")

    tasks = (await admin.admin("GET", "/v1/scheduled_tasks"))["scheduled_tasks"]
    by_id = {t["id"]: t for t in tasks}
    assert set(by_id) == {purge_id, delete_id}
    assert set(by_id[purge_id]) == {"id", "action", "status", "timestamp_ms", "resource_id", "result", "error"}
    assert by_id[purge_id]["action"] == "purge_history" and by_id[purge_id]["resource_id"] == kept
    assert by_id[delete_id]["action"] == "shutdown_and_purge_room" and by_id[delete_id]["status"] == "complete"
    only = await admin.admin("GET", "/v1/scheduled_tasks", action_name="purge_history")
    assert [t["id"] for t in only["scheduled_tasks"]] == [purge_id]
    only = await admin.admin("GET", "/v1/scheduled_tasks", resource_id=doomed, job_status="complete")
    assert [t["id"] for t in only["scheduled_tasks"]] == [delete_id]
    assert (await admin.admin("GET", "/v1/scheduled_tasks", job_status="failed"))["scheduled_tasks"] == []
    assert (await admin.admin("GET", "/v1/scheduled_tasks", max_timestamp=1))["scheduled_tasks"] == []
    for params, field in (({"job_status": "done"}, "job_status"), ({"max_timestamp": "soon"}, "max_timestamp")):
        bad = await admin.admin("GET", "/v1/scheduled_tasks", expect=400, **params)
        assert bad["errcode"] == "M_INVALID_PARAM" and field in bad["error"]
