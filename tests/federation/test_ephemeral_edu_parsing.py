"""The pure parsers of typing, receipt and presence EDUs and the pure remote-presence rules: each
field checked as the spec's schema says, users of other servers refused, bad entries left out
while good ones are kept."""

from __future__ import annotations

import pytest

from federation.ephemeral_edus import (
    InvalidEdu,
    PresencePush,
    RemoteReceipt,
    TypingUpdate,
    parse_presence,
    parse_receipts,
    parse_typing,
)
from federation.ephemeral_outbound import presence_edus, presence_push
from homeserver.ephemeral.presence import REMOTE_TIMEOUT_MS, apply_remote, apply_remote_timeout, initial_row

ORIGIN = "remote.example:8448"
BOB = f"@bob:{ORIGIN}"
ROOM = "!room:remote.example"
EVENT = "$event"


def test_a_well_formed_typing_edu_is_parsed():
    assert parse_typing(ORIGIN, {"room_id": ROOM, "user_id": BOB, "typing": False}) == TypingUpdate(ROOM, BOB, False)


@pytest.mark.parametrize(("content", "field"), [
    ({"user_id": BOB, "typing": True}, "room_id"),
    ({"room_id": "room", "user_id": BOB, "typing": True}, "room_id"),
    ({"room_id": ROOM, "typing": True}, "user_id"),
    ({"room_id": ROOM, "user_id": "bob", "typing": True}, "user_id"),
    ({"room_id": ROOM, "user_id": "@bob:elsewhere.example", "typing": True}, "user_id"),
    ({"room_id": ROOM, "user_id": BOB}, "typing"),
    ({"room_id": ROOM, "user_id": BOB, "typing": 1}, "typing"),
])
def test_a_malformed_or_foreign_typing_edu_is_refused_naming_the_field(content, field):
    with pytest.raises(InvalidEdu, match=field):
        parse_typing(ORIGIN, content)


def test_receipts_are_parsed_per_room_and_bad_ones_left_out_beside_good_ones():
    content = {
        ROOM: {"m.read": {
            BOB: {"event_ids": [EVENT], "data": {"ts": 5, "thread_id": "main"}},
            "@eve:elsewhere.example": {"event_ids": [EVENT], "data": {"ts": 5}},
        }, "m.read.private": {BOB: {"event_ids": [EVENT], "data": {"ts": 5}}}},
        "!other:remote.example": {"m.read": {BOB: {"event_ids": ["$a", "$b"], "data": {"ts": 7, "thread_id": 3}}}},
        "!bad:remote.example": {"m.read": {BOB: {"event_ids": [], "data": {"ts": 1}}}},
        "!nots:remote.example": {"m.read": {BOB: {"event_ids": [EVENT], "data": {}}}},
        "!thread:remote.example": {"m.read": {BOB: {"event_ids": [EVENT], "data": {"ts": 1, "thread_id": "x"}}}},
        "not a room": {"m.read": {}},
        "!list:remote.example": [],
    }
    rooms, problems = parse_receipts(ORIGIN, content)
    assert rooms == {
        ROOM: [RemoteReceipt(ROOM, BOB, EVENT, "main", 5)],
        "!other:remote.example": [RemoteReceipt("!other:remote.example", BOB, "$a", None, 7)],
    }
    assert len(problems) == 7
    assert any("elsewhere.example" in p for p in problems)
    assert any("m.read.private" in p for p in problems)
    assert any("event_ids" in p for p in problems)
    assert any("data.ts" in p for p in problems)
    assert any("thread_id" in p for p in problems)


def test_presence_pushes_are_parsed_and_bad_entries_left_out():
    updates, problems = parse_presence(ORIGIN, {"push": [
        {"user_id": BOB, "presence": "online", "last_active_ago": 10, "status_msg": "hoi", "currently_active": True},
        {"user_id": "@eve:elsewhere.example", "presence": "online", "last_active_ago": 1},
        {"user_id": BOB, "presence": "busy", "last_active_ago": 1},
        {"user_id": BOB, "presence": "online", "last_active_ago": True},
        {"user_id": BOB, "presence": "online", "last_active_ago": 1, "status_msg": "x" * 2000},
        "nope",
        {"user_id": BOB, "presence": "offline"},
    ]})
    assert updates == [PresencePush(BOB, "online", "hoi", 10), PresencePush(BOB, "offline", None, None)]
    assert len(problems) == 5


def test_a_presence_edu_without_a_push_list_is_refused():
    with pytest.raises(InvalidEdu, match="push"):
        parse_presence(ORIGIN, {"push": {"user_id": BOB}})


def test_remote_presence_counts_last_active_back_from_now_and_times_out_without_news():
    row = apply_remote(initial_row(BOB, 0), "online", "weg", 1_000, now=50_000)
    assert (row.state, row.status_msg, row.last_active_ts, row.last_user_sync_ts) == ("online", "weg", 49_000, 50_000)
    assert apply_remote_timeout(row, 50_000 + REMOTE_TIMEOUT_MS) == row
    assert apply_remote_timeout(row, 50_001 + REMOTE_TIMEOUT_MS).state == "offline"


def test_outbound_presence_has_the_schemas_required_fields_and_is_split_into_edus_of_50():
    assert presence_push(BOB, {"presence": "unavailable"}) == {
        "user_id": BOB, "presence": "unavailable", "last_active_ago": 0, "currently_active": False}
    edus = presence_edus([presence_push(f"@u{i}:{ORIGIN}", {"presence": "online"}) for i in range(120)])
    assert [len(e["content"]["push"]) for e in edus] == [50, 50, 20]
    assert {e["edu_type"] for e in edus} == {"m.presence"}
