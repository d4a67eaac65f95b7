"""Our own admin endpoints for a privacy export: a user's events, connections, the login feed."""

from __future__ import annotations

import asyncio

from tests.accounts.helpers import login
from tests.admin.privacy_helpers import OWN, events_ndjson, new_admin, new_caller, own, q


async def test_a_users_events_stream_as_ndjson_oldest_first_across_rooms_with_redactions_marked(client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    bob = await new_caller(client, "bob")
    private = await alice.create_room(preset="private_chat")
    public = await bob.create_room(preset="public_chat")
    await alice.join(public)
    first = await alice.send(private, "first secret")
    second = await alice.send(public, "second hello")
    await bob.send(public, "not alice's")
    await alice.call("PUT", f"/rooms/{q(private)}/redact/{q(first)}/r1", {})
    content_type, lines = await events_ndjson(admin, alice.user_id)
    assert content_type.startswith("application/x-ndjson")
    assert {line["room_id"] for line in lines} == {private, public}
    assert all(set(line) >= {"event_id", "room_id", "type", "content", "origin_server_ts", "redacted"}
               for line in lines)
    by_id = {line["event_id"]: line for line in lines}
    assert by_id[first]["redacted"] is True and by_id[first]["content"] == {}
    assert by_id[second]["redacted"] is False and by_id[second]["content"]["body"] == "second hello"
    assert [line["origin_server_ts"] for line in lines] == sorted(line["origin_server_ts"] for line in lines)
    assert all(line["type"] != "m.room.message" or line["content"].get("body") != "not alice's" for line in lines)
    member = next(line for line in lines if line["type"] == "m.room.member")
    assert member["state_key"] == alice.user_id
    assert "state_key" not in by_id[second]
    _, later = await events_ndjson(admin, alice.user_id, since_ts=by_id[second]["origin_server_ts"])
    assert second in {line["event_id"] for line in later} and first not in {line["event_id"] for line in later}


async def test_the_export_endpoints_are_admin_only_and_check_their_input(client):
    admin = await new_admin(client)
    bob = await new_caller(client, "bob")
    for method, path in (("GET", f"/users/{q(bob.user_id)}/events"), ("GET", f"/users/{q(bob.user_id)}/connections"),
                         ("GET", "/logins"), ("POST", f"/users/{q(bob.user_id)}/erase"),
                         ("GET", "/tasks/x"), ("DELETE", f"/users/{q(bob.user_id)}/redacted_originals"),
                         ("PUT", "/consent/policy"), ("GET", f"/users/{q(bob.user_id)}/consent")):
        data = await own(bob, method, path, {} if method in ("POST", "PUT") else None, expect=403)
        assert data["errcode"] == "M_FORBIDDEN"
    assert (await own(admin, "GET", "/users/nobody/events", expect=400))["errcode"] == "M_INVALID_PARAM"
    data = await own(admin, "GET", f"/users/{q(bob.user_id)}/events", expect=400, since_ts="soon")
    assert "since_ts" in data["error"]
    assert (await own(admin, "GET", "/logins", expect=400, **{"from": "abc"}))["errcode"] == "M_INVALID_PARAM"
    assert (await own(admin, "GET", "/tasks/nope", expect=404))["errcode"] == "M_NOT_FOUND"


async def test_connections_list_the_ip_and_user_agent_history_and_the_logins(hs, client):
    admin = await new_admin(client)
    await new_caller(client, "carol")
    session = await login(client, "carol", device_id="PHONE")
    async with client.get("/_matrix/client/v3/account/whoami", headers={
            "Authorization": f"Bearer {session['access_token']}", "User-Agent": "CarolPhone/1.0"}) as resp:
        assert resp.status == 200
    await hs.auth.flush_last_seen()
    data = await own(admin, "GET", f"/users/{q(session['user_id'])}/connections")
    assert any(c["device_id"] == "PHONE" and c["ip"] == "127.0.0.1" and c["user_agent"] == "CarolPhone/1.0"
               and c["last_seen_ts"] > 0 for c in data["connections"])
    # The registration's session (the spec's automatic login) first, then the login.
    assert [entry["registration"] for entry in data["logins"]] == [True, False]
    assert data["logins"][1]["device_id"] == "PHONE"
    assert all(e["ip"] == "127.0.0.1" and e["ts"] > 0 for e in data["logins"])


async def _login_with_agent(client, user: str, device_id: str, agent: str) -> None:
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
            "password": "correct horse", "device_id": device_id}
    async with client.post("/_matrix/client/v3/login", json=body, headers={"User-Agent": agent}) as resp:
        assert resp.status == 200


async def test_the_login_feed_wakes_a_waiting_request_and_flags_new_ips_and_devices(client):
    admin = await new_admin(client)
    start = await own(admin, "GET", "/logins")
    assert start["logins"] == [] and start["next_token"]
    waiting = asyncio.create_task(own(admin, "GET", "/logins", timeout=30000, **{"from": start["next_token"]}))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await new_caller(client, "dave")  # registering logs the new account in: the feed's first entry
    registered = await asyncio.wait_for(waiting, 10)
    [entry] = registered["logins"]
    assert entry["user_id"].startswith("@dave:") and entry["registration"] is True
    assert entry["new_ip"] is True and entry["new_device"] is True
    await _login_with_agent(client, "dave", "LAPTOP", "DaveLaptop/1.0")
    first = await own(admin, "GET", "/logins", timeout=5000, **{"from": registered["next_token"]})
    assert [(e["user_id"].split(":")[0], e["device_id"]) for e in first["logins"]] == [("@dave", "LAPTOP")]
    assert first["logins"][0]["new_device"] is True and first["logins"][0]["new_ip"] is False
    assert first["logins"][0]["registration"] is False and first["logins"][0]["ip"] == "127.0.0.1"
    await _login_with_agent(client, "dave", "LAPTOP", "DaveLaptop/1.0")
    again = await own(admin, "GET", "/logins", timeout=5000, **{"from": first["next_token"]})
    assert len(again["logins"]) == 1
    assert again["logins"][0]["new_ip"] is False and again["logins"][0]["new_device"] is False
    empty = await own(admin, "GET", "/logins", timeout=0, **{"from": again["next_token"]})
    assert empty == {"logins": [], "next_token": again["next_token"]}


async def test_pruning_redacted_originals_counts_and_keeps_the_redacted_form(hs, client):
    admin = await new_admin(client)
    erin = await new_caller(client, "erin")
    room = await erin.create_room()
    event_id = await erin.send(room, "regrettable words")
    await erin.call("PUT", f"/rooms/{q(room)}/redact/{q(event_id)}/r1", {})
    assert await own(admin, "DELETE", f"/users/{q(erin.user_id)}/redacted_originals") == {"deleted": 1}
    assert await own(admin, "DELETE", f"/users/{q(erin.user_id)}/redacted_originals") == {"deleted": 0}
    rows = await hs.db.fetch_all("t", "SELECT json FROM event_json WHERE event_id = ?", (event_id,))
    assert "regrettable" not in rows[0][0]
    event = await erin.call("GET", f"/rooms/{q(room)}/event/{q(event_id)}")
    assert event["content"] == {} and "redacted_because" in event["unsigned"]


async def test_an_application_service_whose_sender_is_an_admin_calls_the_admin_api_with_its_token(
        make_homeserver, tmp_path):
    import aiohttp
    import yaml

    registration = {"id": "privacy", "url": None, "as_token": "as-secret-token", "hs_token": "hs-token",
                    "sender_localpart": "privacybot", "rate_limited": False,
                    "namespaces": {"users": [], "aliases": [], "rooms": []}}
    path = tmp_path / "privacy.yaml"
    path.write_text(yaml.safe_dump(registration))
    hs = await make_homeserver(app_service_config_files=[str(path)])
    async with aiohttp.ClientSession(hs.base_url("client")) as session:
        admin = await new_admin(session)
        bot_id = f"@privacybot:{hs.config.server_name}"
        data = await own(admin, "GET", "/logins", expect=None)
        assert "next_token" in data
        refused = await _as_call(session, "GET", f"{OWN}/logins", 403)
        assert refused["errcode"] == "M_FORBIDDEN"
        await admin.admin("PUT", f"/v1/users/{q(bot_id)}/admin", {"admin": True})
        assert "next_token" in await _as_call(session, "GET", f"{OWN}/logins", 200)
        assert (await _as_call(session, "GET", f"/_synapse/admin/v2/users/{q(admin.user_id)}", 200))["admin"]


async def _as_call(session, method: str, url: str, expect: int):
    async with session.request(method, url, headers={"Authorization": "Bearer as-secret-token"}) as resp:
        data = await resp.json()
        assert resp.status == expect, data
        return data
