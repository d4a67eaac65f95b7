"""Erasure leaves nothing behind: after `POST /_huiskamer/admin/v1/users/{userId}/erase` every table
and column of the database is scanned for the member's user ID, display name, e-mail address, IP
address and message bodies, and they are found only where docs/privacy-erasure.md says they stay."""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import pytest

from homeserver.server import HomeServer
from tests.admin.helpers import Caller
from tests.admin.privacy_helpers import new_admin, new_caller, own, q, wait_for_task

IP = "203.0.113.77"
DISPLAY_NAME = "Zorgvuldige Xylofoonspeler"
EMAIL = "xylofoon.erasure@example.org"
PRIVATE_BODY = "private-body-kwetsbaar-7731"
PUBLIC_BODY = "public-body-openbaar-4412"
ACCOUNT_DATA = "account-data-voorkeur-5519"
PROFILE_FIELD = "geboortedatum-1990-02-03"
FILTER_MARK = "filter-marker-8823"

# (table, column, what) places that may still hold a piece of the member's data after erasure,
# and why; docs/privacy-erasure.md explains each.
ALLOWED = {
    # The account row stays, deactivated and flagged erased, so the ID is never handed out again.
    ("users", "user_id", "user_id"),
    # The skeletons of the member's events (redacted: no content) keep their sender and room
    # position; the rooms' DAGs and other servers depend on them.
    ("events", "sender", "user_id"),
    ("event_json", "json", "user_id"),
    # Membership: the member's own member events (join/leave), and the room state that says they left.
    ("events", "state_key", "user_id"),
    ("current_state_events", "state_key", "user_id"),
    ("state_groups_state", "state_key", "user_id"),
    ("room_memberships", "user_id", "user_id"),
    ("room_memberships", "sender", "user_id"),
    # Empty shells that other members' clients and servers were told about: the profile row
    # (no name, no avatar), the presence row (offline, no status message), and the device-list
    # stream rows that announced the deletion of the member's devices.
    ("profiles", "user_id", "user_id"),
    ("presence_state", "user_id", "user_id"),
    ("device_list_changes", "user_id", "user_id"),
    ("device_list_membership_changes", "user_id", "user_id"),
    # The erasure task's own record (action, target, counts): the proof that it was done.
    ("admin_tasks", "resource_id", "user_id"),
}
# With `keep_public_room_messages`, the public-room message stays, as asked.
ALLOWED_KEEPING_PUBLIC = {("event_json", "json", "public_body"), ("event_search", "content", "public_body")}


async def as_member(client: aiohttp.ClientSession, token: str, method: str, path: str, body: Any = None,
                    **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": IP, "User-Agent": "XylofoonClient/2.0"}
    async with client.request(method, "/_matrix/client/v3" + path, json=body, headers=headers, **kwargs) as resp:
        data = await resp.json()
        assert resp.status == 200, f"{method} {path} -> {resp.status} {data}"
        return data


async def populate(hs: HomeServer, client: aiohttp.ClientSession, admin: Caller) -> tuple[str, str, Caller]:
    """A member with a name, e-mail, avatar, extended profile, account data, filters, logins from
    an IP, and messages in a private and a public room; returns (user_id, public room, bob who is in it)."""
    bob = await new_caller(client, "bob")
    await new_caller(client, "xylo")
    async with client.post("/_matrix/client/v3/login", headers={"X-Forwarded-For": IP, "User-Agent": "Xylo/1"},
                           json={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "xylo"},
                                 "password": "correct horse", "device_id": "XYLOPHONE"}) as resp:
        session = await resp.json()
        assert resp.status == 200, session
    user_id, token = session["user_id"], session["access_token"]
    await admin.admin("PUT", f"/v2/users/{q(user_id)}", {"threepids": [{"medium": "email", "address": EMAIL}]})
    await as_member(client, token, "PUT", f"/profile/{q(user_id)}/displayname", {"displayname": DISPLAY_NAME})
    await as_member(client, token, "PUT", f"/profile/{q(user_id)}/nl.huiskamer.birthdate",
                    {"nl.huiskamer.birthdate": PROFILE_FIELD})
    async with client.post("/_matrix/media/v3/upload", data=b"\x89PNG avatar bytes of xylo",
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "image/png",
                                    "X-Forwarded-For": IP}) as resp:
        avatar = (await resp.json())["content_uri"]
    await as_member(client, token, "PUT", f"/profile/{q(user_id)}/avatar_url", {"avatar_url": avatar})
    await as_member(client, token, "PUT", f"/user/{q(user_id)}/account_data/nl.huiskamer.prefs",
                    {"note": ACCOUNT_DATA})
    await as_member(client, token, "POST", f"/user/{q(user_id)}/filter",
                    {"room": {"timeline": {"types": [FILTER_MARK]}}})
    private = await bob.create_room(preset="private_chat", invite=[user_id])
    public = await bob.create_room(preset="public_chat")
    for room in (private, public):
        await as_member(client, token, "POST", f"/join/{q(room)}", {})
    await as_member(client, token, "PUT", f"/rooms/{q(private)}/send/m.room.message/p1",
                    {"msgtype": "m.text", "body": PRIVATE_BODY})
    await as_member(client, token, "PUT", f"/rooms/{q(public)}/send/m.room.message/p2",
                    {"msgtype": "m.text", "body": PUBLIC_BODY})
    await as_member(client, token, "POST", f"/rooms/{q(private)}/receipt/m.read/{q(await bob.send(private, 'hi'))}",
                    {})
    await as_member(client, token, "GET", "/sync", params={"timeout": "0"})
    await hs.auth.flush_last_seen()
    return user_id, public, bob


async def scan(hs: HomeServer, needles: dict[str, str]) -> set[tuple[str, str, str]]:
    """Every (table, column, needle name) where a needle occurs, over every table of the database."""
    if hs.db.engine == "sqlite":
        tables = [r[0] for r in await hs.db.fetch_all(
            "scan_tables", "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    else:
        tables = [r[0] for r in await hs.db.fetch_all(
            "scan_tables", "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            " AND table_type = 'BASE TABLE'")]
    assert "users" in tables and "event_json" in tables and len(tables) > 60
    found: set[tuple[str, str, str]] = set()
    for table in tables:
        columns = await table_columns(hs, table)
        rows = await hs.db.fetch_all("scan_rows", f'SELECT * FROM "{table}"')
        for row in rows:
            for column, value in zip(columns, row, strict=True):
                if value is None:
                    continue
                text = bytes(value).decode("latin-1") if isinstance(value, (bytes, memoryview)) else str(value)
                lowered = text.lower()
                for name, needle in needles.items():
                    if needle.lower() in lowered:
                        found.add((table, column, name))
    return found


def media_files(hs: HomeServer) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(hs.config.media["store_path"]) for f in files]


async def table_columns(hs: HomeServer, table: str) -> list[str]:
    if hs.db.engine == "sqlite":
        return [r[1] for r in await hs.db.fetch_all("scan_columns", f'PRAGMA table_info("{table}")')]
    return [r[0] for r in await hs.db.fetch_all(
        "scan_columns", "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = ? ORDER BY ordinal_position", (table,))]


@pytest.mark.parametrize("keep_public", [False, True], ids=["erase-all", "keep-public"])
async def test_erasure_leaves_the_members_data_only_where_the_policy_keeps_it(make_homeserver, keep_public):
    hs = await make_homeserver(http={"x_forwarded": True})
    async with aiohttp.ClientSession(hs.base_url("client")) as client:
        admin = await new_admin(client)
        user_id, public, bob = await populate(hs, client, admin)
        assert media_files(hs), "the avatar is on disk"
        needles = {"user_id": user_id, "display_name": DISPLAY_NAME, "email": EMAIL, "ip": IP,
                   "private_body": PRIVATE_BODY, "public_body": PUBLIC_BODY, "account_data": ACCOUNT_DATA,
                   "profile_field": PROFILE_FIELD, "filter": FILTER_MARK}
        before = await scan(hs, needles)
        # The scan sees the data where it lives, so an empty result afterwards means something.
        assert {n for _, _, n in before} == set(needles), before
        started = await own(admin, "POST", f"/users/{q(user_id)}/erase", {"keep_public_room_messages": keep_public})
        status = await wait_for_task(admin, started["task_id"])
        assert status["status"] == "complete", status
        result = status["result"]
        assert result["removed"]["media"] == 1 and result["removed"]["threepids"] == 1
        assert result["removed"]["login_log_entries"] >= 1 and result["removed"]["account_data"] >= 1
        if keep_public:
            assert result["kept"]["public_room_messages"]["count"] == 1
            assert result["kept"]["public_room_messages"]["why"]
        else:
            assert "public_room_messages" not in result["kept"]
        assert result["kept"]["erased_user_record"]["count"] == 1
        after = await scan(hs, needles)
        allowed = ALLOWED | (ALLOWED_KEEPING_PUBLIC if keep_public else set())
        assert after - allowed == set(), "\n".join(map(str, sorted(after - allowed)))
        if keep_public:
            assert ("event_json", "json", "public_body") in after
        assert media_files(hs) == []
        user = await admin.admin("GET", f"/v2/users/{q(user_id)}")
        assert user["deactivated"] and user["erased"] and user["displayname"] is None
        if keep_public:
            await served_anonymised(client, bob, user_id, public)


async def served_anonymised(client: aiohttp.ClientSession, bob: Caller, user_id: str, public: str) -> None:
    """What "the author anonymised" means for a kept public-room message (docs/privacy-erasure.md):
    the signed event keeps its sender ID, but no name or avatar is served for it anywhere; members who
    were in the room still read it, later joiners get it without content."""
    page = await bob.call("GET", f"/rooms/{q(public)}/messages", dir="b", limit=50)
    [kept] = [e for e in page["chunk"] if e["type"] == "m.room.message" and e["sender"] == user_id]
    assert kept["content"]["body"] == PUBLIC_BODY
    for event in page["chunk"] + (await bob.call("GET", f"/rooms/{q(public)}/members"))["chunk"]:
        if event["type"] == "m.room.member" and event["state_key"] == user_id:
            assert "displayname" not in event["content"] and "avatar_url" not in event["content"], event
    profile = await bob.call("GET", f"/profile/{q(user_id)}", expect=None)
    assert not profile.get("displayname") and not profile.get("avatar_url"), profile
    newcomer = await new_caller(client, "newcomer")
    await newcomer.call("POST", f"/join/{q(public)}", {})
    page = await newcomer.call("GET", f"/rooms/{q(public)}/messages", dir="b", limit=50)
    [seen] = [e for e in page["chunk"] if e["type"] == "m.room.message" and e["sender"] == user_id]
    assert "body" not in seen["content"]


def test_every_place_the_allow_list_keeps_is_explained_in_the_docs():
    docs = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "privacy-erasure.md")).read()
    for table, column, _ in ALLOWED:
        assert f"`{table}.{column}`" in docs, (table, column)
