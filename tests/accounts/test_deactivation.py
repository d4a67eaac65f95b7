"""Deactivation leaves every room and removes the account's data; erasure also forgets who they were."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.push.helpers import PushGateway, pusher_body
from tests.support.rooms import User, new_user

PASSWORD = "correct horse"
# Values only the erased user's profile holds, so the table scan can look for them anywhere.
DISPLAY_NAME = "Erasable Ernestine Q7"
AVATAR_URL = "mxc://localhost/erasableavatarQ7"
BIRTH_DATE = "erasable-birth-date-1987-03-07"
STATUS = "erasable status message Q7"


async def deactivate(user: User, erase: bool) -> None:
    challenge = await user.call("POST", "/account/deactivate", {"erase": erase}, expect=401)
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": PASSWORD, "session": challenge["session"]}
    await user.call("POST", "/account/deactivate", {"erase": erase, "auth": auth})


async def shared_room(owner: User, *others: User, history_visibility: str = "shared") -> str:
    room_id = await owner.create_room(preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": history_visibility}},
    ])
    for other in others:
        await other.join(room_id)
    return room_id


async def with_full_profile(user: User) -> None:
    await user.call("PUT", f"/profile/{quote(user.user_id)}/displayname", {"displayname": DISPLAY_NAME})
    await user.call("PUT", f"/profile/{quote(user.user_id)}/avatar_url", {"avatar_url": AVATAR_URL})
    await user.call("PUT", f"/profile/{quote(user.user_id)}/org.example.birth_date",
                    {"org.example.birth_date": BIRTH_DATE})
    await user.call("PUT", f"/presence/{quote(user.user_id)}/status", {"presence": "online", "status_msg": STATUS})


async def all_table_text(hs) -> dict[str, str]:
    """Every table's rows as text, table by table (PostgreSQL: each row cast to text)."""
    db = hs.db
    if db.dialect.is_postgres:
        tables = [r[0] for r in await db.fetch_all(
            "tables", "SELECT table_name FROM information_schema.tables"
                      " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")]
        return {t: " ".join(str(r[0]) for r in await db.fetch_all("scan", f'SELECT t::text FROM "{t}" t'))
                for t in tables}
    tables = [r[0] for r in await db.fetch_all("tables", "SELECT name FROM sqlite_master WHERE type = 'table'")]
    out = {}
    for table in tables:
        rows = await db.fetch_all("scan", f'SELECT * FROM "{table}"')
        out[table] = " ".join(repr(value) for row in rows for value in row)
    return out


async def test_deactivation_leaves_rooms_rejects_invites_and_removes_settings(hs, client):
    gateway = PushGateway()
    await gateway.start()
    try:
        alice = await new_user(client, "alice")
        bob = await new_user(client, "bob")
        joined = await shared_room(alice, bob)
        invited = await alice.create_room(invite=[bob.user_id])
        await bob.call("POST", "/pushers/set", pusher_body(gateway.url))
        await bob.call("PUT", f"/user/{quote(bob.user_id)}/account_data/org.example.setting", {"on": True})
        await bob.call("PUT", "/pushrules/global/content/myrule", {"pattern": "cake", "actions": ["notify"]})
        await deactivate(bob, erase=False)
    finally:
        await gateway.stop()
    members = await alice.call("GET", f"/rooms/{joined}/joined_members")
    assert bob.user_id not in members["joined"]
    invite_state = await alice.call("GET", f"/rooms/{invited}/state/m.room.member/{quote(bob.user_id)}")
    assert invite_state["membership"] == "leave"
    assert await hs.pushers.get_pushers(bob.user_id) == []
    assert await hs.account_data_store.get_global(bob.user_id, "org.example.setting") is None
    assert await hs.db.fetch_all("rules", "SELECT rule_id FROM push_rules WHERE user_id = ?", (bob.user_id,)) == []
    assert await hs.account_store.get_devices(bob.user_id) == []
    found = await alice.call("POST", "/user_directory/search", {"search_term": "bob"})
    assert bob.user_id not in [r["user_id"] for r in found["results"]]


async def test_erasure_leaves_no_profile_value_in_any_table(hs, client):
    alice = await new_user(client, "alice")
    bob = await new_user(client, "bob")
    await with_full_profile(bob)
    room_id = await shared_room(alice, bob)
    await bob.send(room_id, "a message from bob")
    await hs.auth.flush_last_seen()
    before = await all_table_text(hs)
    assert any(DISPLAY_NAME in text for text in before.values())  # the scan does see them beforehand
    await deactivate(bob, erase=True)
    await hs.auth.flush_last_seen()
    after = await all_table_text(hs)
    for value in (DISPLAY_NAME, AVATAR_URL, BIRTH_DATE, STATUS):
        assert [table for table, text in after.items() if value in text] == [], value
    profile = await alice.call("GET", f"/profile/{quote(bob.user_id)}", expect=None)
    assert DISPLAY_NAME not in str(profile) and AVATAR_URL not in str(profile)
    assert not [row for row in await hs.account_store.get_user_ips(bob.user_id)]


async def messages(user: User, room_id: str) -> list[dict[str, Any]]:
    return (await user.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=50))["chunk"]


@pytest.mark.parametrize("erase", [True, False])
async def test_later_joiners_see_an_erased_users_messages_without_content(client, erase):
    alice = await new_user(client, "alice")
    bob = await new_user(client, "bob")
    room_id = await shared_room(alice, bob)
    sent = await bob.send(room_id, "bob was here")
    await deactivate(bob, erase=erase)
    carol = await new_user(client, "carol")
    await carol.join(room_id)

    seen_by_carol = {e["event_id"]: e for e in await messages(carol, room_id)}
    seen_by_alice = {e["event_id"]: e for e in await messages(alice, room_id)}
    assert seen_by_alice[sent]["content"]["body"] == "bob was here"  # joined at the time
    single = await carol.call("GET", f"/rooms/{room_id}/event/{sent}")
    sync = await carol.call("GET", "/sync")
    in_sync = {e["event_id"]: e for e in sync["rooms"]["join"][room_id]["timeline"]["events"]}
    if erase:
        assert seen_by_carol[sent]["content"] == {}
        assert single["content"] == {}
        assert sent not in in_sync or in_sync[sent]["content"] == {}
    else:
        assert seen_by_carol[sent]["content"]["body"] == "bob was here"
        assert single["content"]["body"] == "bob was here"


async def test_deactivation_through_the_service_needs_no_request(hs, client):
    alice = await new_user(client, "alice")
    bob = await new_user(client, "bob")
    room_id = await shared_room(alice, bob)
    await hs.deactivation.deactivate(bob.user_id, erase=True)
    assert (await hs.account_store.get_user(bob.user_id)).erased
    assert bob.user_id not in (await alice.call("GET", f"/rooms/{room_id}/joined_members"))["joined"]
    await bob.call("GET", "/account/whoami", expect=401)
