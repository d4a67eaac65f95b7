"""Space hierarchy: child ordering and visibility rules, and the walk over HTTP on both backends."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.directory.hierarchy import child_sort_key, may_preview, ordered_children, valid_order
from homeserver.events.event import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from tests.support.rooms import new_user

HIERARCHY = "/_matrix/client/v1/rooms/{}/hierarchy"
SPACE = {"type": "m.space"}


def child(room_id: str, ts: int, **content: Any) -> Event:
    pdu = {"type": "m.space.child", "state_key": room_id, "content": {"via": ["example.org"], **content},
           "sender": "@a:example.org", "origin_server_ts": ts, "room_id": "!space:example.org",
           "depth": 1, "prev_events": [], "auth_events": [], "hashes": {}, "signatures": {}}
    return Event(pdu, KNOWN_ROOM_VERSIONS["10"], event_id=f"${room_id}")


def test_children_are_ordered_by_order_then_timestamp_then_room_id_as_in_the_spec_example():
    events = [child("!b:example.org", 1640341000000, order=" "),
              child("!a:example.org", 1640141000000, order="aaaa"),
              child("!c:example.org", 1640841000000, order="first"),
              child("!e:example.org", 1640641000000),
              child("!d:example.org", 1640741000000)]
    ordered = [e.state_key for e in ordered_children(events, suggested_only=False)]
    assert ordered == ["!b:example.org", "!a:example.org", "!c:example.org", "!e:example.org", "!d:example.org"]


def test_equal_order_and_timestamp_fall_back_to_room_id():
    assert child_sort_key(child("!a:x", 5, order="m")) < child_sort_key(child("!b:x", 5, order="m"))
    assert child_sort_key(child("!z:x", 4, order="m")) < child_sort_key(child("!a:x", 5, order="m"))


@pytest.mark.parametrize("order, valid", [
    ("abc", True), (" ", True), ("~" * 50, True), ("~" * 51, False), ("", False),
    ("caf\u00e9", False), ("tab\t", False), (3, False), (None, False),
])
def test_only_short_printable_ascii_order_values_count(order, valid):
    assert (valid_order(order) is not None) is valid


def test_links_without_a_via_list_or_with_a_bad_state_key_are_not_children():
    events = [child("!ok:x", 1), child("!novia:x", 2, via=[]), child("!badvia:x", 3, via="x"), child("nope", 4)]
    assert [e.state_key for e in ordered_children(events, suggested_only=False)] == ["!ok:x"]


def test_suggested_only_keeps_children_marked_suggested():
    events = [child("!a:x", 1, suggested=True), child("!b:x", 2), child("!c:x", 3, suggested="yes")]
    assert [e.state_key for e in ordered_children(events, suggested_only=True)] == ["!a:x"]


@pytest.mark.parametrize("join_rules, history, membership, user_rooms, visible", [
    ({"join_rule": "public"}, "shared", None, set(), True),
    ({"join_rule": "invite"}, "shared", None, set(), False),
    ({"join_rule": "invite"}, "world_readable", None, set(), True),
    ({"join_rule": "invite"}, "shared", "join", set(), True),
    ({"join_rule": "invite"}, "shared", "invite", set(), True),
    ({"join_rule": "invite"}, "shared", "leave", set(), False),
    ({"join_rule": "public"}, "shared", "ban", set(), False),
    ({"join_rule": "knock"}, "shared", None, set(), True),
    ({"join_rule": "knock_restricted", "allow": []}, "shared", None, set(), True),
    ({"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": "!s:x"}]},
     "shared", None, {"!s:x"}, True),
    ({"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": "!s:x"}]},
     "shared", None, {"!other:x"}, False),
    ({"join_rule": "restricted", "allow": "bad"}, "shared", None, {"!s:x"}, False),
])
def test_who_may_preview_a_room(join_rules, history, membership, user_rooms, visible):
    assert may_preview(join_rules=join_rules, history_visibility=history, membership=membership,
                       room_version=KNOWN_ROOM_VERSIONS["10"], user_rooms=lambda: user_rooms) is visible


def test_knock_rules_do_not_count_in_room_versions_without_knocking():
    assert not may_preview(join_rules={"join_rule": "knock"}, history_visibility=None, membership=None,
                           room_version=KNOWN_ROOM_VERSIONS["6"], user_rooms=set)


# --- over HTTP ---------------------------------------------------------------------------------------


async def add_child(user, space: str, room_id: str, **content: Any) -> None:
    body = {"via": ["localhost"], **content}
    await user.call("PUT", f"/rooms/{space}/state/m.space.child/{room_id}", body)


async def walk(user, space: str, expect: int = 200, **query: Any) -> Any:
    return await user.call("GET", HIERARCHY.format(space), expect=expect, **query)


async def test_the_hierarchy_walks_spaces_depth_first_with_children_state(client):
    alice = await new_user(client, "alice")
    space = await alice.create_room(name="Top", creation_content=SPACE, preset="public_chat")
    sub = await alice.create_room(name="Sub", creation_content=SPACE, preset="public_chat")
    first = await alice.create_room(name="First", preset="public_chat")
    nested = await alice.create_room(name="Nested", preset="public_chat")
    last = await alice.create_room(name="Last", preset="public_chat")
    await add_child(alice, space, last, order="z")
    await add_child(alice, space, sub, order="m")
    await add_child(alice, space, first, order="a")
    await add_child(alice, sub, nested)
    result = await walk(alice, space)
    assert [r["room_id"] for r in result["rooms"]] == [space, first, sub, nested, last]
    top = result["rooms"][0]
    assert top["room_type"] == "m.space" and top["name"] == "Top" and top["num_joined_members"] == 1
    assert [c["state_key"] for c in top["children_state"]] == [first, sub, last]
    assert all("origin_server_ts" in c and c["type"] == "m.space.child" for c in top["children_state"])
    assert result["rooms"][1]["children_state"] == [] and "next_batch" not in result


async def test_max_depth_and_suggested_only_limit_the_walk(client):
    alice = await new_user(client, "alice")
    space = await alice.create_room(creation_content=SPACE)
    sub = await alice.create_room(creation_content=SPACE)
    nested, plain = await alice.create_room(), await alice.create_room()
    await add_child(alice, space, sub, suggested=True)
    await add_child(alice, space, plain)
    await add_child(alice, sub, nested, suggested=True)
    assert [r["room_id"] for r in (await walk(alice, space, max_depth=0))["rooms"]] == [space]
    assert {r["room_id"] for r in (await walk(alice, space, max_depth=1))["rooms"]} == {space, sub, plain}
    suggested = await walk(alice, space, suggested_only="true")
    assert [r["room_id"] for r in suggested["rooms"]] == [space, sub, nested]
    assert [c["state_key"] for c in suggested["rooms"][0]["children_state"]] == [sub]


async def test_pagination_returns_every_room_once_and_rejects_changed_parameters(client):
    alice = await new_user(client, "alice")
    space = await alice.create_room(creation_content=SPACE)
    rooms = [await alice.create_room() for _ in range(5)]
    for room_id in rooms:
        await add_child(alice, space, room_id)
    first = await walk(alice, space, limit=2)
    assert len(first["rooms"]) == 2 and "next_batch" in first
    await walk(alice, space, expect=400, limit=2, max_depth=1, **{"from": first["next_batch"]})
    await walk(alice, space, expect=400, limit=2, suggested_only="true", **{"from": first["next_batch"]})
    await walk(alice, space, expect=400, **{"from": "made-up"})
    seen = [r["room_id"] for r in first["rooms"]]
    token = first["next_batch"]
    while token:
        page = await walk(alice, space, limit=2, **{"from": token})
        seen += [r["room_id"] for r in page["rooms"]]
        token = page.get("next_batch")
    assert seen == [space, *rooms]


async def test_rooms_the_requester_may_not_see_are_left_out_and_a_hidden_root_is_forbidden(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    space = await alice.create_room(creation_content=SPACE, preset="public_chat")
    private = await alice.create_room(preset="private_chat", name="Secret")
    public = await alice.create_room(preset="public_chat")
    restricted = await alice.create_room(room_version="10", initial_state=[{
        "type": "m.room.join_rules", "state_key": "",
        "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}}])
    for room_id in (private, public, restricted):
        await add_child(alice, space, room_id)
    assert {r["room_id"] for r in (await walk(bob, space))["rooms"]} == {space, public}
    await bob.join(space)
    visible = (await walk(bob, space))["rooms"]
    assert {r["room_id"] for r in visible} == {space, public, restricted}
    assert next(r for r in visible if r["room_id"] == restricted)["allowed_room_ids"] == [space]
    error = await walk(bob, private, expect=403)
    assert error["errcode"] == "M_FORBIDDEN"
    await walk(bob, "!unknown:localhost", expect=403)


async def test_a_loop_of_spaces_is_walked_once(client):
    alice = await new_user(client, "alice")
    a = await alice.create_room(creation_content=SPACE)
    b = await alice.create_room(creation_content=SPACE)
    await add_child(alice, a, b)
    await add_child(alice, b, a)
    assert [r["room_id"] for r in (await walk(alice, a))["rooms"]] == [a, b]
