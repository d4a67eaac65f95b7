"""The per-room stored form of a sliding sync connection's state (pure, no database)."""

from __future__ import annotations

import pytest

from homeserver.streams.client_tokens import STREAMS, SyncToken
from homeserver.sync.sliding_request import RoomConfig
from homeserver.sync.sliding_state import SentRoom, UnreadableState, decode_position, fold_rooms, room_changes
from storage.stores.sliding_sync import RoomRow

CONFIG = RoomConfig(1, frozenset({("m.room.name", ""), ("m.room.member", "$LAZY")}))
TOKEN = SyncToken(tuple(range(1, len(STREAMS) + 1)))


def sent(upto, membership="join", members=(), seen=None, config=CONFIG):
    return SentRoom(upto, membership, config, frozenset(members), seen)


@pytest.mark.parametrize(("before", "after", "changed"), [
    ({}, {"!a": sent(1)}, ["!a"]),
    ({"!a": sent(1)}, {"!a": sent(1)}, []),
    ({"!a": sent(1), "!b": sent(2)}, {"!a": sent(1), "!b": sent(3)}, ["!b"]),
    ({"!a": sent(1)}, {"!a": sent(1, members=["@u:x"])}, ["!a"]),
    ({"!a": sent(1)}, {"!a": sent(1, seen=TOKEN)}, ["!a"]),
    ({"!a": sent(1)}, {"!a": sent(1, config=RoomConfig(5, frozenset()))}, ["!a"]),
    ({"!a": sent(1), "!b": sent(2)}, {"!a": sent(1)}, ["!b"]),  # a tombstone
])
def test_only_rooms_that_differ_are_written(before, after, changed):
    rows = room_changes(before, TOKEN, after, TOKEN, 7)
    assert sorted(r.room_id for r in rows) == changed
    assert all(r.gen == 7 for r in rows)


def test_the_state_at_a_generation_folds_the_newest_row_of_each_room():
    gen1 = {"!a": sent(1), "!b": sent(2, members=["@m:x"], seen=TOKEN)}
    gen2 = {"!a": sent(5), "!b": gen1["!b"], "!c": sent(6, "invite")}
    gen3 = {"!a": sent(5), "!c": sent(6, "invite")}
    rows = [*room_changes({}, None, gen1, TOKEN, 1), *room_changes(gen1, TOKEN, gen2, TOKEN, 2),
            *room_changes(gen2, TOKEN, gen3, TOKEN, 3)]
    assert fold_rooms((r for r in rows if r.gen <= 1), TOKEN) == gen1
    assert fold_rooms((r for r in rows if r.gen <= 2), TOKEN) == gen2
    assert fold_rooms(rows, TOKEN) == gen3
    position = decode_position(str(TOKEN), '{"all":3}', 3, rows)
    assert position.rooms == gen3 and position.counts == {"all": 3} and position.gen == 3


@pytest.mark.parametrize("row", [
    RoomRow("!a", 1, 1, "join", "not json", "[]", None),
    RoomRow("!a", 1, 1, "join", "[1, []]", "[]", "not a token"),
])
def test_a_damaged_row_reads_as_unreadable(row):
    with pytest.raises(UnreadableState):
        fold_rooms([row], TOKEN)


def at(events: int) -> SyncToken:
    return TOKEN.replace(events=events)


def test_a_room_that_stays_in_view_without_news_is_not_written_again():
    # In view at each position and had up to it: stored once as `live`.
    one, two, three = at(10), at(11), at(12)
    p1 = {"!in": sent(10, seen=one), "!out": sent(10, seen=one)}
    p2 = {"!in": sent(11, seen=two), "!out": p1["!out"]}  # !out left the window
    p3 = {"!in": sent(12, seen=three), "!out": p1["!out"]}
    rows1 = room_changes({}, None, p1, one, 1)
    assert all(r.live and r.upto == 0 and r.seen is None for r in rows1)
    rows2 = room_changes(p1, one, p2, two, 2)
    assert [(r.room_id, r.live, r.upto, r.seen) for r in rows2] == [("!out", False, 10, str(one))]
    assert room_changes(p2, two, p3, three, 3) == []
    rows = [*rows1, *rows2]
    assert fold_rooms((r for r in rows if r.gen <= 1), one) == p1
    assert fold_rooms(rows, two) == p2
    assert fold_rooms(rows, three) == p3
