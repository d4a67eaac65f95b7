"""The room admin API: listing and inspecting rooms, blocking, joining, deleting and purging history."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.admin.helpers import Caller, assert_admin_only, new_admin, new_caller, q

# Columns that name an event, wherever they appear.
EVENT_COLUMNS = ("event_id", "prev_event_id", "auth_id", "relates_to_id", "redacts", "redacted_by")
# Rows that may keep naming a purged event, and why (see storage/stores/purge.py).
ALLOWED_DANGLING = {
    ("event_edges", "prev_event_id"),  # kept events' prev_events: recorded as backward extremities
    ("event_backward_extremities", "event_id"),  # that record itself
    ("events", "redacted_by"),  # a kept event stays redacted after its redaction is purged
}


async def _tables_and_columns(txn: Any) -> list[tuple[str, list[str]]]:
    if txn.dialect.is_postgres:
        rows = await txn.fetch_all(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()")
        tables: dict[str, list[str]] = {}
        for table, column in rows:
            tables.setdefault(table, []).append(column)
        return sorted(tables.items())
    names = [r[0] for r in await txn.fetch_all("SELECT name FROM sqlite_master WHERE type = 'table'")]
    result = []
    for name in sorted(names):
        if name.startswith("event_search_") or name.startswith("sqlite_"):
            continue  # the full-text index's shadow tables, read through event_search itself
        columns = [r[1] for r in await txn.fetch_all(f"PRAGMA table_info({name})")]
        result.append((name, columns))
    return result


async def rows_pointing_at(hs: Any, event_ids: set[str], room_id: str | None = None) -> list[tuple[str, str, Any]]:
    """(table, column, value) of every row in every table naming one of the events (or the room)."""

    async def scan(txn: Any) -> list[tuple[str, str, Any]]:
        found = []
        for table, columns in await _tables_and_columns(txn):
            for column in columns:
                if column in EVENT_COLUMNS and (table, column) not in ALLOWED_DANGLING and event_ids:
                    clause, params = txn.dialect.in_list(column, sorted(event_ids))
                    for (value,) in await txn.fetch_all(f"SELECT {column} FROM {table} WHERE {clause}", params):
                        found.append((table, column, value))
                if room_id is not None and column == "room_id" and table not in ("blocked_rooms",):
                    for (value,) in await txn.fetch_all(f"SELECT {column} FROM {table} WHERE room_id = ?",
                                                        (room_id,)):
                        found.append((table, column, value))
        return found

    return await hs.db.run_interaction("test_scan", scan, write=False)


async def room_event_ids(hs: Any, room_id: str) -> set[str]:
    rows = await hs.db.fetch_all("test_room_events", "SELECT event_id FROM events WHERE room_id = ?", (room_id,))
    return {r[0] for r in rows}


async def wait_for_status(admin: Caller, path: str, key: str = "status") -> dict[str, Any]:
    for _ in range(500):
        body = await admin.admin("GET", path)
        if body[key] in ("complete", "failed"):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never finished")


ROOM_ENDPOINTS = [
    ("GET", "/v1/rooms", None), ("GET", "/v1/rooms/{r}", None), ("GET", "/v1/rooms/{r}/members", None),
    ("GET", "/v1/rooms/{r}/state", None), ("GET", "/v1/rooms/{r}/messages", None),
    ("GET", "/v1/rooms/{r}/context/$e", None), ("GET", "/v1/rooms/{r}/forward_extremities", None),
    ("DELETE", "/v1/rooms/{r}/forward_extremities", None),
    ("GET", "/v1/rooms/{r}/block", None), ("PUT", "/v1/rooms/{r}/block", {"block": True}),
    ("POST", "/v1/rooms/{r}/make_room_admin", {}), ("POST", "/v1/join/{r}", {"user_id": "@a:b"}),
    ("DELETE", "/v2/rooms/{r}", {}), ("GET", "/v2/rooms/{r}/delete_status", None),
    ("GET", "/v2/rooms/delete_status/xyz", None), ("POST", "/v1/purge_history/{r}", {"purge_up_to_ts": 1}),
    ("GET", "/v1/purge_history_status/xyz", None),
]


async def test_every_room_endpoint_refuses_a_non_admin_with_forbidden(client):
    await new_admin(client)
    mallory = await new_caller(client, "mallory")
    room_id = await mallory.create_room()
    for method, path, body in ROOM_ENDPOINTS:
        await assert_admin_only(mallory, method, path.format(r=q(room_id)), body)


async def test_rooms_are_listed_searched_ordered_and_paged(client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    bob = await new_caller(client, "bob")
    big = await alice.create_room(name="Big Lounge", preset="public_chat")
    await bob.join(big)
    small = await alice.create_room(name="attic")
    listed = await admin.admin("GET", "/v1/rooms")
    assert listed["total_rooms"] == 2 and listed["offset"] == 0
    assert [r["room_id"] for r in listed["rooms"]] == [small, big] or [r["name"] for r in listed["rooms"]] == \
        sorted([r["name"] for r in listed["rooms"]])
    room = next(r for r in listed["rooms"] if r["room_id"] == big)
    assert room["joined_members"] == 2 and room["joined_local_members"] == 2 and room["creator"] == alice.user_id
    assert room["join_rules"] == "public" and room["federatable"] is True and room["public"] is False
    assert set(room) == {"room_id", "name", "canonical_alias", "joined_members", "joined_local_members", "version",
                         "creator", "encryption", "federatable", "public", "join_rules", "guest_access",
                         "history_visibility", "state_events", "room_type"}
    by_size = await admin.admin("GET", "/v1/rooms", order_by="joined_members")
    assert [r["room_id"] for r in by_size["rooms"]] == [big, small]
    first = await admin.admin("GET", "/v1/rooms", limit=1, order_by="joined_members")
    assert first["next_batch"] == 1 and [r["room_id"] for r in first["rooms"]] == [big]
    second = await admin.admin("GET", "/v1/rooms", limit=1, order_by="joined_members", **{"from": 1})
    assert second["prev_batch"] == 0 and "next_batch" not in second
    await admin.call("PUT", f"/_matrix/client/v3/directory/list/room/{q(big)}", {"visibility": "public"})
    assert [r["room_id"] for r in (await admin.admin("GET", "/v1/rooms", public_rooms="true"))["rooms"]] == [big]
    assert [r["room_id"] for r in (await admin.admin("GET", "/v1/rooms", public_rooms="false"))["rooms"]] == [small]
    assert (await admin.admin("GET", "/v1/rooms", empty_rooms="true"))["total_rooms"] == 0
    found = await admin.admin("GET", "/v1/rooms", search_term="lounge")
    assert [r["room_id"] for r in found["rooms"]] == [big]
    assert (await admin.admin("GET", "/v1/rooms", search_term=big))["total_rooms"] == 1
    for params, name in (({"order_by": "colour"}, "order_by"), ({"dir": "x"}, "dir"), ({"limit": "-2"}, "limit"),
                         ({"search_term": ""}, "search_term")):
        data = await admin.admin("GET", "/v1/rooms", expect=400, **params)
        assert data["errcode"] == "M_INVALID_PARAM" and name in data["error"], data


async def test_room_details_members_state_messages_and_context_are_shown(client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    room_id = await alice.create_room(name="Lounge", topic="Chat")
    first = await alice.send(room_id, "one")
    await alice.send(room_id, "two")
    details = await admin.admin("GET", f"/v1/rooms/{q(room_id)}")
    assert details["name"] == "Lounge" and details["topic"] == "Chat" and details["joined_local_devices"] == 1
    assert details["tombstoned"] is False and details["forgotten"] is False
    assert await admin.admin("GET", f"/v1/rooms/{q(room_id)}/members") == {"members": [alice.user_id], "total": 1}
    state = await admin.admin("GET", f"/v1/rooms/{q(room_id)}/state")
    assert {e["type"] for e in state["state"]} >= {"m.room.create", "m.room.member", "m.room.name"}
    names = await admin.admin("GET", f"/v1/rooms/{q(room_id)}/state", type="m.room.name")
    assert [e["content"]["name"] for e in names["state"]] == ["Lounge"]
    messages = await admin.admin("GET", f"/v1/rooms/{q(room_id)}/messages", dir="b", limit=2)
    assert [e["content"].get("body") for e in messages["chunk"]] == ["two", "one"] and "end" in messages
    context = await admin.admin("GET", f"/v1/rooms/{q(room_id)}/context/{q(first)}", limit=4)
    assert context["event"]["event_id"] == first
    assert [e["content"].get("body") for e in context["events_after"]] == ["two"]
    extremities = await admin.admin("GET", f"/v1/rooms/{q(room_id)}/forward_extremities")
    assert extremities["count"] == 1
    unknown = q("!nowhere:" + admin.user_id.split(":", 1)[1])
    for path in ("/v1/rooms/{r}", "/v1/rooms/{r}/members", "/v1/rooms/{r}/state", "/v1/rooms/{r}/messages",
                 "/v1/rooms/{r}/context/$nothing", "/v1/rooms/{r}/forward_extremities"):
        assert (await admin.admin("GET", path.format(r=unknown), expect=404))["errcode"] == "M_NOT_FOUND"
    assert (await admin.admin("GET", f"/v1/rooms/{q(room_id)}/context/{q('$nothing')}", expect=404))["errcode"] \
        == "M_NOT_FOUND"
    bad = await admin.admin("GET", f"/v1/rooms/{q(room_id)}/messages", dir="sideways", expect=400)
    assert "dir" in bad["error"]


async def test_deleting_forward_extremities_keeps_the_newest_and_the_room_builds_on_it(client, hs):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    room_id = await alice.create_room(name="Vork")
    old = await alice.send(room_id, "old")
    newest = await alice.send(room_id, "newest")
    assert (await admin.admin("DELETE", f"/v1/rooms/{q(room_id)}/forward_extremities")) == {"deleted": 0}
    # A stale extremity, as a room gathers them from other servers' forks.
    await hs.db.execute("stale_extremity", "INSERT INTO event_forward_extremities (room_id, event_id) VALUES (?, ?)",
                        (room_id, old))
    listed = await admin.admin("GET", f"/v1/rooms/{q(room_id)}/forward_extremities")
    assert sorted(e["event_id"] for e in listed["results"]) == sorted([old, newest])
    assert (await admin.admin("DELETE", f"/v1/rooms/{q(room_id)}/forward_extremities")) == {"deleted": 1}
    listed = await admin.admin("GET", f"/v1/rooms/{q(room_id)}/forward_extremities")
    assert [e["event_id"] for e in listed["results"]] == [newest]
    after = await alice.send(room_id, "after")
    assert (await hs.event_store.get_event(after)).prev_event_ids == [newest]
    assert [e["event_id"] for e in (await admin.admin("GET", f"/v1/rooms/{q(room_id)}/forward_extremities"))["results"]] \
        == [after]
    unknown = q("!nowhere:" + admin.user_id.split(":", 1)[1])
    await admin.admin("DELETE", f"/v1/rooms/{unknown}/forward_extremities", expect=404)


async def test_admin_messages_and_context_apply_the_filter(client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    room_id = await alice.create_room()
    first = await alice.send(room_id, "one")
    await alice.send(room_id, "note", event_type="org.example.note")
    await alice.send(room_id, "two")
    only_messages = '{"types": ["m.room.message"]}'
    messages = await admin.admin("GET", f"/v1/rooms/{q(room_id)}/messages", dir="b", limit=10, filter=only_messages)
    assert [e["content"].get("body") for e in messages["chunk"]] == ["two", "one"]
    context = await admin.admin("GET", f"/v1/rooms/{q(room_id)}/context/{q(first)}", limit=4,
                                filter='{"not_types": ["m.room.message"]}')
    assert [e["type"] for e in context["events_after"]] == ["org.example.note"]
    for path in (f"/v1/rooms/{q(room_id)}/messages", f"/v1/rooms/{q(room_id)}/context/{q(first)}"):
        bad = await admin.admin("GET", path, filter="{not json", expect=400)
        assert bad["errcode"] == "M_NOT_JSON" and "filter" in bad["error"]
        bad = await admin.admin("GET", path, filter='{"types": "m.room.message"}', expect=400)
        assert "filter" in bad["error"] or "types" in bad["error"]


async def test_a_blocked_room_cannot_be_joined_until_unblocked(client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    bob = await new_caller(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    path = f"/v1/rooms/{q(room_id)}/block"
    assert await admin.admin("GET", path) == {"block": False}
    assert await admin.admin("PUT", path, {"block": True}) == {"block": True}
    assert await admin.admin("GET", path) == {"block": True, "user_id": admin.user_id}
    refused = await bob.call("POST", f"/join/{q(room_id)}", {}, expect=403)
    assert refused["errcode"] == "M_FORBIDDEN"
    await admin.admin("PUT", path, {"block": False})
    await bob.join(room_id)
    assert (await admin.admin("PUT", path, {"block": "yes"}, expect=400))["errcode"] == "M_BAD_JSON"
    assert (await admin.admin("PUT", path, {}, expect=400))["errcode"] == "M_MISSING_PARAM"
    assert (await admin.admin("GET", "/v1/rooms/not-a-room/block", expect=400))["errcode"] == "M_INVALID_PARAM"


async def test_an_admin_joins_a_user_to_a_room_and_makes_a_user_room_admin(client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    bob = await new_caller(client, "bob")
    public = await alice.create_room(preset="public_chat", room_alias_name="hall")
    alias = "#hall:" + admin.user_id.split(":", 1)[1]
    assert await admin.admin("POST", f"/v1/join/{q(alias)}", {"user_id": bob.user_id}) == {"room_id": public}
    assert bob.user_id in (await admin.admin("GET", f"/v1/rooms/{q(public)}/members"))["members"]
    private = await alice.create_room()
    await admin.admin("POST", f"/v1/rooms/{q(private)}/make_room_admin", {"user_id": bob.user_id})
    power = await bob.call("GET", f"/rooms/{q(private)}/state/m.room.power_levels/")
    assert power["users"][bob.user_id] == 100
    assert (await admin.admin("POST", f"/v1/join/{q(public)}", {}, expect=400))["errcode"] == "M_MISSING_PARAM"
    ghost = "@ghost:" + admin.user_id.split(":", 1)[1]
    assert (await admin.admin("POST", f"/v1/join/{q(public)}", {"user_id": ghost}, expect=404))["errcode"] == \
        "M_NOT_FOUND"
    unknown = q("!nowhere:" + admin.user_id.split(":", 1)[1])
    assert (await admin.admin("POST", f"/v1/rooms/{unknown}/make_room_admin", {}, expect=404))["errcode"] == \
        "M_NOT_FOUND"


async def test_deleting_a_room_removes_its_members_moves_them_and_purges_every_row(hs, client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    bob = await new_caller(client, "bob")
    room_id = await alice.create_room(preset="public_chat", room_alias_name="doomed")
    await bob.join(room_id)
    first = await alice.send(room_id, "bad content")
    await bob.call("POST", f"/rooms/{q(room_id)}/receipt/m.read/{q(first)}", {})
    await bob.call("POST", f"/rooms/{q(room_id)}/report/{q(first)}", {"reason": "bad"})
    event_ids = await room_event_ids(hs, room_id)
    started = await admin.admin("DELETE", f"/v2/rooms/{q(room_id)}", {
        "block": True, "new_room_user_id": admin.user_id, "room_name": "Moved", "message": "Moved on"})
    status = await wait_for_status(admin, f"/v2/rooms/delete_status/{started['delete_id']}")
    assert status["status"] == "complete" and status["room_id"] == room_id
    result = status["shutdown_room"]
    assert sorted(result["kicked_users"]) == sorted([alice.user_id, bob.user_id])
    assert result["local_aliases"] == ["#doomed:" + hs.config.server_name]
    new_room = result["new_room_id"]
    assert bob.user_id in (await admin.admin("GET", f"/v1/rooms/{q(new_room)}/members"))["members"]
    by_room = await admin.admin("GET", f"/v2/rooms/{q(room_id)}/delete_status")
    assert [r["delete_id"] for r in by_room["results"]] == [started["delete_id"]]
    assert await rows_pointing_at(hs, event_ids, room_id) == []
    assert (await admin.admin("GET", f"/v1/rooms/{q(room_id)}", expect=404))["errcode"] == "M_NOT_FOUND"
    assert room_id not in (await bob.call("GET", "/joined_rooms"))["joined_rooms"]
    assert (await bob.call("POST", f"/join/{q(room_id)}", {}, expect=None))["errcode"] in ("M_FORBIDDEN",
                                                                                         "M_NOT_FOUND")
    assert (await admin.admin("GET", f"/v1/rooms/{q(room_id)}/block"))["block"] is True
    await bob.call("GET", "/sync")


async def test_room_deletion_requests_are_checked_before_starting(client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    room_id = await alice.create_room()
    for body, field in (({"block": "yes"}, "block"), ({"purge": 1}, "purge"), ({"message": 5}, "message"),
                        ({"new_room_user_id": "nobody"}, "new_room_user_id")):
        data = await admin.admin("DELETE", f"/v2/rooms/{q(room_id)}", body, expect=400)
        assert field in data["error"], data
    unknown = q("!nowhere:" + admin.user_id.split(":", 1)[1])
    assert (await admin.admin("DELETE", f"/v2/rooms/{unknown}", {}, expect=404))["errcode"] == "M_NOT_FOUND"
    assert (await admin.admin("GET", f"/v2/rooms/{unknown}/delete_status", expect=404))["errcode"] == "M_NOT_FOUND"
    assert (await admin.admin("GET", "/v2/rooms/delete_status/nope", expect=404))["errcode"] == "M_NOT_FOUND"
    assert (await admin.admin("DELETE", "/v2/rooms/not-a-room", {}, expect=400))["errcode"] == "M_INVALID_PARAM"


async def test_purging_history_deletes_old_events_and_the_room_still_works(hs, client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    bob = await new_caller(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    old = [await alice.send(room_id, f"old {i}") for i in range(4)]
    await bob.call("POST", f"/rooms/{q(room_id)}/receipt/m.read/{q(old[1])}", {})
    await alice.call("PUT", f"/rooms/{q(room_id)}/redact/{q(old[2])}/r1", {"reason": "oops"})
    boundary = await alice.send(room_id, "boundary")
    reaction = await bob.send(room_id, event_type="m.reaction", body="",
                              **{"m.relates_to": {"rel_type": "m.annotation", "event_id": old[0], "key": "+1"}})
    await alice.send(room_id, "new")
    before = await room_event_ids(hs, room_id)
    started = await admin.admin("POST", f"/v1/purge_history/{q(room_id)}/{q(boundary)}",
                                {"delete_local_events": True})
    status = await wait_for_status(admin, f"/v1/purge_history_status/{started['purge_id']}")
    assert status == {"status": "complete"}
    after = await room_event_ids(hs, room_id)
    purged = before - after
    assert set(old) <= purged and boundary in after and reaction in after
    assert await rows_pointing_at(hs, purged) == []
    # The room still sends, syncs and paginates.
    since = (await bob.call("GET", "/sync"))["next_batch"]
    fresh = await alice.send(room_id, "after the purge")
    synced = await bob.call("GET", "/sync", since=since)
    assert fresh in [e["event_id"] for e in synced["rooms"]["join"][room_id]["timeline"]["events"]]
    seen, token = [], None
    for _ in range(20):
        params = {"dir": "b", "limit": 3, **({"from": token} if token else {})}
        page = await bob.call("GET", f"/rooms/{q(room_id)}/messages", **params)
        seen += [e["event_id"] for e in page["chunk"]]
        if "end" not in page:
            break
        token = page["end"]
    assert fresh in seen and boundary in seen and not set(old) & set(seen)
    members = await bob.call("GET", f"/rooms/{q(room_id)}/joined_members")
    assert set(members["joined"]) == {alice.user_id, bob.user_id}


async def test_purging_by_timestamp_keeps_local_events_unless_asked(hs, client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    room_id = await alice.create_room()
    await alice.send(room_id, "local and old")
    before = await room_event_ids(hs, room_id)
    started = await admin.admin("POST", f"/v1/purge_history/{q(room_id)}", {"purge_up_to_ts": 2 ** 50})
    assert (await wait_for_status(admin, f"/v1/purge_history_status/{started['purge_id']}"))["status"] == \
        "complete"
    assert await room_event_ids(hs, room_id) == before
    for body, field, code in (({}, "purge_up_to_ts", "M_MISSING_PARAM"),
                              ({"purge_up_to_ts": "soon"}, "purge_up_to_ts", "M_INVALID_PARAM"),
                              ({"purge_up_to_ts": 1, "delete_local_events": "yes"}, "delete_local_events",
                               "M_BAD_JSON")):
        data = await admin.admin("POST", f"/v1/purge_history/{q(room_id)}", body, expect=400)
        assert data["errcode"] == code and field in data["error"], data
    unknown = q("!nowhere:" + hs.config.server_name)
    assert (await admin.admin("POST", f"/v1/purge_history/{unknown}", {"purge_up_to_ts": 1}, expect=404))[
        "errcode"] == "M_NOT_FOUND"
    assert (await admin.admin("POST", f"/v1/purge_history/{q(room_id)}/{q('$missing')}", {}, expect=404))[
        "errcode"] == "M_NOT_FOUND"
    assert (await admin.admin("GET", "/v1/purge_history_status/nope", expect=404))["errcode"] == "M_NOT_FOUND"


async def test_any_event_is_fetched_and_found_by_timestamp_by_an_admin(client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    room_id = await alice.create_room()
    event_id = await alice.send(room_id, "hello")
    fetched = await admin.admin("GET", f"/v1/fetch_event/{q(event_id)}")
    assert fetched["event"]["event_id"] == event_id and fetched["event"]["content"]["body"] == "hello"
    assert (await admin.admin("GET", f"/v1/fetch_event/{q('$missing')}", expect=404))["errcode"] == "M_NOT_FOUND"
    found = await admin.admin("GET", f"/v1/rooms/{q(room_id)}/timestamp_to_event", ts=2 ** 50, dir="b")
    assert found["event_id"] == event_id
    assert (await admin.admin("GET", f"/v1/rooms/{q(room_id)}/timestamp_to_event", ts=2 ** 50, dir="f",
                              expect=404))["errcode"] == "M_NOT_FOUND"
    assert (await admin.admin("GET", f"/v1/rooms/{q(room_id)}/timestamp_to_event", expect=400))["errcode"] == \
        "M_MISSING_PARAM"
    mallory = await new_caller(client, "mallory")
    await assert_admin_only(mallory, "GET", f"/v1/fetch_event/{q(event_id)}")


async def test_a_purge_makes_sync_and_sliding_sync_read_memberships_again(hs, client):
    """/sync and sliding sync remember each user's memberships between requests, trusting the
    persister to tell them of every move; a purge deletes memberships outside it, so it says so."""
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    bob = await new_caller(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    sliding = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
    everything = {"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 1, "required_state": []}}}
    started = await admin.admin("DELETE", f"/v2/rooms/{q(room_id)}", {"purge": False})
    await wait_for_status(admin, f"/v2/rooms/delete_status/{started['delete_id']}")
    # Both read, and remember, Bob's memberships after he was made to leave.
    await bob.call("POST", sliding, {"conn_id": "before", **everything})
    position = (await bob.call("GET", "/sync"))["next_batch"]
    upto = hs.recent_events.upto
    assert hs.recent_events.membership_unmoved(bob.user_id, upto, upto)
    assert bob.user_id in hs.sliding_sync._membership_memo
    started = await admin.admin("DELETE", f"/v2/rooms/{q(room_id)}", {"purge": True})
    await wait_for_status(admin, f"/v2/rooms/delete_status/{started['delete_id']}")
    assert not hs.recent_events.membership_unmoved(bob.user_id, upto, hs.recent_events.upto)
    assert bob.user_id not in hs.sliding_sync._membership_memo
    # And what they answer next comes from the database.
    assert (await bob.call("POST", sliding, {"conn_id": "after", **everything}))["lists"]["all"]["count"] == 0
    rooms = (await bob.call("GET", "/sync", since=position, timeout=0))["rooms"]
    assert all(room_id not in rooms.get(section, {}) for section in ("join", "leave", "invite")), rooms
