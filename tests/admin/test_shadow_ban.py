"""A shadow-banned user's sends, invites and typing are answered as done, and nobody else sees them (as Synapse)."""

from __future__ import annotations

from tests.admin.helpers import Caller, new_admin, new_caller, q


async def messages_of(user: Caller, room_id: str) -> list[dict]:
    return (await user.call("GET", f"/rooms/{q(room_id)}/messages", dir="b", limit=50))["chunk"]


async def test_a_shadow_banned_users_messages_get_event_ids_but_reach_nobody(client):
    admin = await new_admin(client)
    alice, bob = await new_caller(client, "alice"), await new_caller(client, "bob")
    room_id = await alice.create_room(preset="public_chat", name="Lobby")
    await bob.join(room_id)
    before_ban = await bob.send(room_id, "before the ban")
    await admin.admin("POST", f"/v1/users/{q(bob.user_id)}/shadow_ban", {})

    path = f"/rooms/{q(room_id)}/send/m.room.message/shadow-1"
    fake = (await bob.call("PUT", path, {"msgtype": "m.text", "body": "spam"}))["event_id"]
    assert fake.startswith("$") and len(fake) > 20
    assert (await bob.call("PUT", path, {"msgtype": "m.text", "body": "spam"}))["event_id"] == fake
    topic = (await bob.call("PUT", f"/rooms/{q(room_id)}/state/m.room.topic", {"topic": "spam"}))["event_id"]
    redaction = (await bob.call("PUT", f"/rooms/{q(room_id)}/redact/{q(before_ban)}/r1", {}))["event_id"]
    assert len({fake, topic, redaction}) == 3

    seen = await messages_of(alice, room_id)
    ids = {event["event_id"] for event in seen}
    assert not ids & {fake, topic, redaction}
    assert [e["content"].get("body") for e in seen if e["type"] == "m.room.message"] == ["before the ban"]
    assert (await alice.call("GET", f"/rooms/{q(room_id)}/event/{q(fake)}", expect=404))["errcode"] == "M_NOT_FOUND"
    assert (await alice.call("GET", f"/rooms/{q(room_id)}/state/m.room.topic", expect=404))["errcode"] == \
        "M_NOT_FOUND"
    assert await bob.call("PUT", f"/rooms/{q(room_id)}/typing/{q(bob.user_id)}",
                          {"typing": True, "timeout": 30000}) == {}
    renamed = await bob.call("PUT", f"/rooms/{q(room_id)}/state/m.room.member/{q(bob.user_id)}",
                             {"membership": "join", "displayname": "Spammer"})
    assert renamed["event_id"].startswith("$")
    member = await alice.call("GET", f"/rooms/{q(room_id)}/state/m.room.member/{q(bob.user_id)}")
    assert member.get("displayname") != "Spammer" and member["membership"] == "join"
    upgrade = await bob.call("POST", f"/rooms/{q(room_id)}/upgrade", {"new_version": "10"})
    assert upgrade["replacement_room"].startswith("!")
    assert (await admin.admin("GET", f"/v1/rooms/{q(upgrade['replacement_room'])}", expect=404))["errcode"] == \
        "M_NOT_FOUND"

    await admin.admin("DELETE", f"/v1/users/{q(bob.user_id)}/shadow_ban")
    real = await bob.send(room_id, "after the ban")
    assert real in {event["event_id"] for event in await messages_of(alice, room_id)}


async def test_a_shadow_banned_users_invites_are_dropped_but_joins_and_leaves_work(client):
    admin = await new_admin(client)
    alice, bob, carol = (await new_caller(client, "alice"), await new_caller(client, "bob"),
                         await new_caller(client, "carol"))
    public = await alice.create_room(preset="public_chat")
    await admin.admin("POST", f"/v1/users/{q(bob.user_id)}/shadow_ban", {})

    await bob.join(public)
    assert await bob.call("POST", f"/rooms/{q(public)}/invite", {"user_id": carol.user_id}) == {}
    own = await bob.create_room(invite=[carol.user_id], name="Bob's")
    members = await admin.admin("GET", f"/v1/rooms/{q(public)}/members")
    assert bob.user_id in members["members"] and carol.user_id not in members["members"]
    invites = (await carol.call("GET", "/sync"))["rooms"].get("invite", {})
    assert public not in invites and own not in invites
    assert (await admin.admin("GET", f"/v1/rooms/{q(own)}"))["name"] == "Bob's"

    await bob.call("POST", f"/rooms/{q(public)}/leave", {})
    members = await admin.admin("GET", f"/v1/rooms/{q(public)}/members")
    assert bob.user_id not in members["members"]
