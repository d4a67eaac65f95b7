"""Pure parts of the directories: user ranking, public room entries, filtering and pages."""

from __future__ import annotations

import pytest

from homeserver.directory.public_rooms import (
    PublicRoomsQuery,
    matches,
    page,
    parse_public_rooms_body,
    room_entry,
)
from homeserver.directory.user_directory import match_score, rank_users
from homeserver.errors import MatrixError


@pytest.mark.parametrize(("words", "user_id", "name", "found"), [
    (["ann"], "@ann:hs", None, True),
    (["ann"], "@joanne:hs", None, False),  # inside a word is not a match
    (["ann"], "@x:hs", "Joanne Ann-Marie", True),
    (["bob", "build"], "@b:hs", "Bob the Builder", True),
    (["bob", "digger"], "@b:hs", "Bob the Builder", False),
])
def test_a_user_matches_when_every_word_starts_part_of_their_id_or_name(words, user_id, name, found):
    assert (match_score(words, user_id, name) is not None) is found


def test_exact_names_rank_above_whole_words_above_prefixes():
    candidates = [("@annabel:hs", "Annabel", None), ("@x:hs", "Ann Other", None), ("@ann:hs", "Ann", None)]
    assert [c[0] for c in rank_users(["ann"], candidates)] == ["@ann:hs", "@x:hs", "@annabel:hs"]


def test_a_room_entry_reads_its_state_and_defaults_the_join_rule():
    entry = room_entry("!r:hs", 3, {
        "m.room.name": {"name": "Lobby"}, "m.room.create": {"type": "m.space"},
        "m.room.history_visibility": {"history_visibility": "world_readable"},
        "m.room.guest_access": {"guest_access": "can_join"}, "m.room.topic": {"topic": ""},
    })
    assert entry == {"room_id": "!r:hs", "num_joined_members": 3, "world_readable": True, "guest_can_join": True,
                     "join_rule": "public", "name": "Lobby", "room_type": "m.space"}


@pytest.mark.parametrize(("query", "expected"), [
    (PublicRoomsQuery(search_term="LOB"), True),
    (PublicRoomsQuery(search_term="#lob"), True),
    (PublicRoomsQuery(search_term="nothing"), False),
    (PublicRoomsQuery(room_types=frozenset({None})), True),
    (PublicRoomsQuery(room_types=frozenset({"m.space"})), False),
])
def test_public_room_filters_match_name_topic_alias_and_room_type(query, expected):
    entry = {"room_id": "!r:hs", "name": "Lobby", "canonical_alias": "#lobby:hs", "num_joined_members": 1}
    assert matches(entry, query) is expected


def test_pages_put_larger_rooms_first_and_link_both_ways():
    entries = [{"room_id": f"!{i}:hs", "num_joined_members": i} for i in range(5)]
    first = page(entries, PublicRoomsQuery(limit=2))
    assert [e["room_id"] for e in first["chunk"]] == ["!4:hs", "!3:hs"]
    assert first["next_batch"] == "p2" and "prev_batch" not in first and first["total_room_count_estimate"] == 5
    last = page(entries, PublicRoomsQuery(limit=2, offset=4))
    assert [e["room_id"] for e in last["chunk"]] == ["!0:hs"] and "next_batch" not in last
    assert last["prev_batch"] == "p2"


@pytest.mark.parametrize("body", [{"since": "x1"}, {"limit": -1}, {"filter": {"room_types": [1]}},
                                  {"filter": {"generic_search_term": 5}}, {"filter": []}])
def test_malformed_public_rooms_bodies_are_rejected(body):
    with pytest.raises(MatrixError) as raised:
        parse_public_rooms_body(body)
    assert raised.value.http_status == 400
