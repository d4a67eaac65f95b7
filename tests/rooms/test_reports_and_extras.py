"""Content reports, /admin/whois, and the empty answers for services we do not run."""

from __future__ import annotations

from storage.stores.reports import ReportStore
from tests.accounts.helpers import register_admin
from tests.support.rooms import User, new_user


async def test_a_visible_event_can_be_reported_and_the_report_is_stored(hs, client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    event_id = await alice.send(room_id, "iets onaardigs")
    await bob.call("POST", f"/rooms/{room_id}/report/{event_id}", {"reason": "rude", "score": -50})
    await bob.call("POST", f"/rooms/{room_id}/report", {"reason": "spam room"})
    await bob.call("POST", f"/users/{alice.user_id}/report", {"reason": "harassment"})
    reports = await ReportStore(hs.db).list_reports()
    assert [(r.event_id, r.room_id, r.target_user_id, r.reason) for r in reversed(reports)] == [
        (event_id, room_id, None, "rude"),
        (None, room_id, None, "spam room"),
        (None, None, alice.user_id, "harassment"),
    ]


async def test_reports_of_unknown_or_invisible_events_are_404(client):
    alice, carol = await new_user(client, "alice"), await new_user(client, "carol")
    room_id = await alice.create_room(preset="private_chat")
    event_id = await alice.send(room_id, "privé")
    body = await carol.call("POST", f"/rooms/{room_id}/report/{event_id}", {"reason": "x"}, expect=404)
    assert body["errcode"] == "M_NOT_FOUND"
    await alice.call("POST", f"/rooms/{room_id}/report/$nope", {}, expect=404)
    await alice.call("POST", "/users/@nobody:nowhere/report", {}, expect=404)


async def test_report_fields_are_validated(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    event_id = await alice.send(room_id)
    for body, field in (({"score": 5}, "score"), ({"score": "bad"}, "score"), ({"reason": 3}, "reason")):
        error = await alice.call("POST", f"/rooms/{room_id}/report/{event_id}", body, expect=400)
        assert error["error"].startswith(field)


async def test_whois_shows_connections_to_the_user_and_admins_only(hs, client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    await alice.call("GET", "/account/whoami")
    await hs.auth.flush_last_seen()
    mine = await alice.call("GET", f"/admin/whois/{alice.user_id}")
    connections = mine["devices"][alice.device_id]["sessions"][0]["connections"]
    assert connections[0]["ip"] == "127.0.0.1"
    denied = await bob.call("GET", f"/admin/whois/{alice.user_id}", expect=403)
    assert denied["errcode"] == "M_FORBIDDEN"
    admin = User(client, await register_admin(client, "beheerder"))
    assert (await admin.call("GET", f"/admin/whois/{alice.user_id}"))["user_id"] == alice.user_id


async def test_thirdparty_and_turn_answer_empty_without_bridges_or_turn(client):
    alice = await new_user(client, "alice")
    assert await alice.call("GET", "/thirdparty/protocols") == {}
    assert await alice.call("GET", "/thirdparty/location", alias="#x:y") == []
    assert await alice.call("GET", "/voip/turnServer") == {}
    missing = await alice.call("GET", "/thirdparty/protocol/irc", expect=404)
    assert missing["errcode"] == "M_NOT_FOUND"
    async with client.get("/_matrix/client/v3/voip/turnServer") as resp:
        assert resp.status == 401
