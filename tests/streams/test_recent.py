"""RecentEvents: answers from memory only for ranges it holds whole; otherwise it says so."""

from __future__ import annotations

import pytest

from homeserver.streams.recent import RecentEvents


def recent_with(*commits: tuple[str, int], per_room: int = 64, max_rooms: int = 100) -> RecentEvents:
    recent = RecentEvents(per_room=per_room, max_rooms=max_rooms)
    recent.record((room, position, True, ()) for room, position in commits)
    return recent


def test_nothing_is_covered_before_the_first_commit():
    recent = RecentEvents()
    assert recent.rooms_with_new_events(["!a"], 0, 0) is None
    assert recent.first_overflowing(["!a"], 0, 10, 1) == (False, None)


def test_rooms_with_events_in_the_range_are_named_with_their_newest_position():
    recent = recent_with(("!a", 11), ("!b", 12), ("!a", 13))
    assert recent.rooms_with_new_events(["!a", "!b", "!c"], 10, 13) == {"!a": 13, "!b": 12}
    assert recent.rooms_with_new_events(["!a", "!b", "!c"], 12, 13) == {"!a": 13}
    assert recent.rooms_with_new_events(["!a", "!b"], 11, 12) == {"!b": 12}


@pytest.mark.parametrize(("after", "upto"), [
    (9, 13),   # starts before the first commit recorded: an older event may be in it
    (12, 14),  # ends past the newest position recorded: not committed yet, or not handed over yet
])
def test_a_range_memory_does_not_hold_whole_is_left_to_the_database(after, upto):
    recent = recent_with(("!a", 11), ("!b", 12), ("!a", 13))
    assert recent.rooms_with_new_events(["!a"], after, upto) is None
    assert recent.first_overflowing(["!a"], after, upto, 1) == (False, None)


def test_a_room_that_dropped_old_positions_is_only_answered_after_them():
    recent = recent_with(*(("!a", p) for p in range(11, 21)), per_room=4)
    # 11..16 were dropped: a range from 15 may hide 16.
    assert recent.rooms_with_new_events(["!a"], 15, 20) is None
    assert recent.rooms_with_new_events(["!a"], 16, 20) == {"!a": 20}
    # Another room is untouched by it.
    assert recent.rooms_with_new_events(["!b"], 10, 20) == {}


def test_rooms_no_longer_kept_are_only_answered_after_their_newest_event():
    recent = recent_with(("!a", 11), ("!b", 12), ("!c", 13), max_rooms=2)
    assert recent.rooms_with_new_events(["!a"], 10, 13) is None  # !a was dropped
    assert recent.rooms_with_new_events(["!a"], 11, 13) == {}
    assert recent.rooms_with_new_events(["!b", "!c"], 10, 13) == {"!b": 12, "!c": 13}
    assert recent.rooms_with_new_events(["!z"], 10, 13) is None  # unknown: perhaps a dropped room


def test_events_off_the_timeline_move_the_stream_but_not_the_room():
    recent = RecentEvents()
    recent.record([("!a", 11, True, ()), ("!a", 12, False, ()), ("!b", 13, False, ()), ("!b", -5, True, ())])
    assert recent.upto == 13
    assert recent.rooms_with_new_events(["!a", "!b"], 11, 13) == {}


@pytest.mark.parametrize(("per_room", "expected"), [
    (1, 13),     # !a's second event of the range
    (2, 15),     # !a's third (before !b's third)
    (3, None),   # no room holds four
])
def test_the_first_overflowing_position_is_the_lowest_over_the_rooms(per_room, expected):
    recent = recent_with(("!a", 11), ("!b", 12), ("!a", 13), ("!b", 14), ("!a", 15), ("!b", 16))
    assert recent.first_overflowing(["!a", "!b"], 10, 16, per_room) == (True, expected)
    # A room not asked about does not count.
    assert recent.first_overflowing(["!b"], 10, 16, per_room) == (True, {1: 14, 2: 16, 3: None}[per_room])


def test_a_membership_is_unmoved_only_over_ranges_memory_holds_without_a_move_of_it():
    recent = RecentEvents(max_users=2)
    recent.record([("!a", 11, True, ["@alice"]), ("!a", 12, True, []), ("!b", 13, True, ["@bob", "@carol"])])
    assert recent.membership_unmoved("@alice", 11, 13)
    assert not recent.membership_unmoved("@alice", 10, 13)  # moved at 11
    # Only a user's newest move is kept: a range before it is not vouched for (the database is asked).
    assert not recent.membership_unmoved("@bob", 10, 12)
    assert recent.membership_unmoved("@bob", 13, 13)
    assert not recent.membership_unmoved("@bob", 12, 13)
    assert not recent.membership_unmoved("@alice", 11, 14)  # past what memory holds
    assert not recent.membership_unmoved("@dave", 9, 13)  # before the first commit recorded
    # @alice was dropped to keep two users: known unmoved only past her move.
    assert recent.membership_unmoved("@alice", 11, 13) and not recent.membership_unmoved("@dave", 10, 13)


def test_a_whole_current_state_change_or_a_completed_partial_state_room_moves_everyone():
    recent = RecentEvents()
    recent.record([("!a", 11, True, []), ("!a", 12, True, None)])
    assert not recent.membership_unmoved("@alice", 11, 12)
    assert recent.membership_unmoved("@alice", 12, 12)
    recent.memberships_moved_everywhere()
    assert not recent.membership_unmoved("@alice", 12, 12)
    recent.record([("!a", 13, True, [])])
    assert recent.membership_unmoved("@alice", 13, 13)
