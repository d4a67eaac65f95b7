"""Presence: the pure state machine, and GET/PUT /presence plus delivery through /sync over HTTP."""

from __future__ import annotations

import aiohttp
import pytest

from homeserver.ephemeral.presence import (
    IDLE_TIMEOUT_MS,
    OFFLINE_TIMEOUT_MS,
    apply_activity,
    apply_set,
    apply_sync,
    apply_timeouts,
    presence_content,
)
from storage.stores.presence import PresenceRow
from tests.support.rooms import User, new_user

NOW = 10_000_000


def row(state: str, *, active_ago: int = 0, synced_ago: int = 0, explicit: bool = False,
        status: str | None = None) -> PresenceRow:
    return PresenceRow("@u:hs", state, status, NOW - active_ago, NOW - synced_ago, explicit)


@pytest.mark.parametrize(("before", "set_presence", "expected"), [
    (row("offline"), "online", "online"),
    (row("offline"), "unavailable", "unavailable"),
    (row("offline"), "offline", "offline"),
    (row("online"), "offline", "online"),
    (row("unavailable", explicit=True), "online", "unavailable"),
    (row("online"), "unavailable", "unavailable"),
])
def test_a_sync_sets_presence_as_its_set_presence_asks(before, set_presence, expected):
    assert apply_sync(before, set_presence, NOW).state == expected


@pytest.mark.parametrize(("before", "syncing", "expected"), [
    (row("online", active_ago=IDLE_TIMEOUT_MS + 1), True, "unavailable"),
    (row("online", active_ago=IDLE_TIMEOUT_MS - 1), True, "online"),
    (row("online", active_ago=OFFLINE_TIMEOUT_MS + 1, synced_ago=OFFLINE_TIMEOUT_MS + 1), False, "offline"),
    (row("online", active_ago=OFFLINE_TIMEOUT_MS + 1, synced_ago=OFFLINE_TIMEOUT_MS + 1), True, "online"),
    (row("unavailable", active_ago=OFFLINE_TIMEOUT_MS + 1, synced_ago=10), False, "unavailable"),
    (row("offline", active_ago=10 * IDLE_TIMEOUT_MS), False, "offline"),
])
def test_idle_users_become_unavailable_and_absent_users_offline(before, syncing, expected):
    assert apply_timeouts(before, NOW, syncing).state == expected


def test_activity_makes_a_user_online_and_currently_active_even_after_explicit_unavailable():
    after = apply_activity(row("unavailable", explicit=True, active_ago=500_000), NOW)
    assert presence_content(after, NOW) == {"presence": "online", "last_active_ago": 0, "currently_active": True}


def test_an_explicit_status_keeps_its_message_and_offline_has_no_currently_active():
    after = apply_set(row("online"), "offline", "gone fishing", NOW)
    content = presence_content(after, NOW)
    assert content["presence"] == "offline" and content["status_msg"] == "gone fishing"
    assert "currently_active" not in content


async def _presence_events(user: User, since: str | None = None) -> tuple[list[dict], str]:
    params = {"timeout": 0, **({"since": since} if since else {})}
    body = await user.call("GET", "/sync", **params)
    return body["presence"]["events"], body["next_batch"]


async def test_put_and_get_presence_with_status_message(client):
    alice = await new_user(client, "alice")
    await alice.call("PUT", f"/presence/{alice.user_id}/status", {"presence": "online", "status_msg": "hi"})
    status = await alice.call("GET", f"/presence/{alice.user_id}/status")
    assert status["presence"] == "online" and status["status_msg"] == "hi" and status["currently_active"] is True
    assert status["last_active_ago"] >= 0
    await alice.call("PUT", f"/presence/{alice.user_id}/status", {"presence": "unavailable"})
    assert (await alice.call("GET", f"/presence/{alice.user_id}/status"))["presence"] == "unavailable"


async def test_presence_of_others_is_only_settable_by_them_and_visible_to_room_mates(client):
    alice, bob, eve = [await new_user(client, n) for n in ("alice", "bob", "eve")]
    body = await bob.call("PUT", f"/presence/{alice.user_id}/status", {"presence": "online"}, expect=403)
    assert body["errcode"] == "M_FORBIDDEN"
    await alice.call("PUT", f"/presence/{alice.user_id}/status", {"presence": "sleeping"}, expect=400)
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await alice.call("PUT", f"/presence/{alice.user_id}/status", {"presence": "online"})
    assert (await bob.call("GET", f"/presence/{alice.user_id}/status"))["presence"] == "online"
    await eve.call("GET", f"/presence/{alice.user_id}/status", expect=403)


async def test_sync_delivers_presence_of_users_sharing_a_room(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    _, since = await _presence_events(bob)
    await alice.call("PUT", f"/presence/{alice.user_id}/status", {"presence": "unavailable", "status_msg": "away"})
    events, _ = await _presence_events(bob, since)
    mine = [e for e in events if e["sender"] == alice.user_id]
    assert mine and mine[-1]["type"] == "m.presence"
    assert mine[-1]["content"]["presence"] == "unavailable" and mine[-1]["content"]["status_msg"] == "away"


async def test_syncing_with_set_presence_takes_effect(client):
    alice = await new_user(client, "alice")
    await alice.call("GET", "/sync", timeout=0, set_presence="unavailable")
    assert (await alice.call("GET", f"/presence/{alice.user_id}/status"))["presence"] == "unavailable"
    other = await new_user(client, "other")
    await other.call("GET", "/sync", timeout=0, set_presence="offline")
    assert (await other.call("GET", f"/presence/{other.user_id}/status"))["presence"] == "offline"
    await other.call("GET", "/sync", timeout=0)
    assert (await other.call("GET", f"/presence/{other.user_id}/status"))["presence"] == "online"


@pytest.mark.parametrize("database_config", ["sqlite"], indirect=True)
async def test_disabled_presence_records_and_delivers_nothing(make_homeserver):
    hs = await make_homeserver(presence={"enabled": False})
    async with aiohttp.ClientSession(hs.base_url("client")) as session:
        alice, bob = await new_user(session, "alice"), await new_user(session, "bob")
        room_id = await alice.create_room(preset="public_chat")
        await bob.join(room_id)
        await alice.call("PUT", f"/presence/{alice.user_id}/status", {"presence": "online", "status_msg": "x"})
        assert await bob.call("GET", f"/presence/{alice.user_id}/status") == {"presence": "offline"}
        events, _ = await _presence_events(bob)
        assert events == []


async def test_users_who_come_to_share_a_room_see_each_others_presence_in_their_next_sync(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    await alice.call("PUT", f"/presence/{alice.user_id}/status", {"presence": "online", "status_msg": "here"})
    await bob.call("PUT", f"/presence/{bob.user_id}/status", {"presence": "unavailable", "status_msg": "lunch"})
    _, alice_since = await _presence_events(alice)
    _, bob_since = await _presence_events(bob)
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    # Neither presence changed since their tokens: only the new shared room makes them visible.
    events, _ = await _presence_events(bob, bob_since)
    seen = {e["sender"]: e["content"] for e in events}
    assert seen[alice.user_id]["presence"] == "online" and seen[alice.user_id]["status_msg"] == "here"
    events, _ = await _presence_events(alice, alice_since)
    seen = {e["sender"]: e["content"] for e in events}
    assert seen[bob.user_id]["presence"] == "unavailable" and seen[bob.user_id]["status_msg"] == "lunch"
