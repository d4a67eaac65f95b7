"""The pure parts of the sync engine: filters, room list decisions, state deltas, lazy members."""

from __future__ import annotations

import pytest

from homeserver.events.sync_filter import (
    DEFAULT_TIMELINE_LIMIT,
    EventFilter,
    filter_plain_events,
    only_fields,
    parse_sync_filter,
    split_field_path,
    type_matches,
)
from homeserver.sync import rendering
from homeserver.sync.room_list import incremental_entries, initial_entries, rooms_needing_prior_membership
from storage.stores.sync import MembershipRow


def row(room: str, membership: str, position: int) -> MembershipRow:
    return MembershipRow(room, membership, f"$m-{room}-{position}", position)


# --- filters ------------------------------------------------------------------------------

@pytest.mark.parametrize("event_type, patterns, expected", [
    ("m.room.message", ["m.room.message"], True),
    ("m.room.message", ["m.room.*"], True),
    ("m.call.invite", ["m.room.*"], False),
    ("m.room.message", ["*"], True),
    ("m.roomy", ["m.room"], False),
    ("m.room+x", ["m.room+*"], True),
])
def test_type_patterns_treat_only_the_star_as_a_wildcard(event_type, patterns, expected):
    assert type_matches(event_type, patterns) is expected


def test_not_types_win_over_types_and_senders_are_checked_both_ways():
    f = EventFilter(types=("m.room.*",), not_types=("m.room.member",), not_senders=frozenset({"@bad:hs"}))
    assert f.matches("m.room.message", "@good:hs")
    assert not f.matches("m.room.member", "@good:hs")
    assert not f.matches("m.room.message", "@bad:hs")
    assert not EventFilter(senders=frozenset({"@a:hs"})).matches("m.room.message", "@b:hs")


def test_contains_url_selects_events_by_their_url_field():
    with_url = EventFilter(contains_url=True)
    without_url = EventFilter(contains_url=False)
    assert with_url.matches("m.room.message", content={"url": "mxc://hs/x"})
    assert not with_url.matches("m.room.message", content={"body": "x"})
    assert without_url.matches("m.room.message", content={"body": "x"})


def test_a_parsed_filter_keeps_every_section_and_defaults_the_timeline_limit():
    parsed = parse_sync_filter({
        "event_fields": ["content.body", "type"],
        "room": {"rooms": ["!a:hs"], "not_rooms": ["!b:hs"], "include_leave": True,
                 "timeline": {"limit": 5, "types": ["m.room.message"]},
                 "state": {"lazy_load_members": True, "include_redundant_members": True},
                 "ephemeral": {"not_types": ["m.typing"]}},
        "account_data": {"types": []},
    })
    assert parsed.timeline_limit == 5 and parsed.lazy_load_members and parsed.include_leave
    assert parsed.state.include_redundant_members
    assert parsed.allows_room("!a:hs") and not parsed.allows_room("!b:hs") and not parsed.allows_room("!c:hs")
    assert parsed.account_data.is_empty_set
    assert parsed.event_fields == (("content", "body"), ("type",))
    assert parse_sync_filter(None).timeline_limit == DEFAULT_TIMELINE_LIMIT


def test_field_paths_honour_escaped_dots():
    assert split_field_path("content.m\\.relates_to.rel_type") == ("content", "m.relates_to", "rel_type")
    assert split_field_path("a\\\\b") == ("a\\b",)


def test_only_fields_copies_the_listed_paths_that_exist():
    event = {"type": "m.room.message", "content": {"body": "hi", "msgtype": "m.text"}, "sender": "@a:hs"}
    fields = (("type",), ("content", "body"), ("content", "missing"), ("unsigned", "age"))
    assert only_fields(event, fields) == {"type": "m.room.message", "content": {"body": "hi"}}


def test_plain_events_are_filtered_by_type_and_cut_at_the_limit():
    events = [{"type": "a.one"}, {"type": "b.two"}, {"type": "a.three"}]
    assert filter_plain_events(events, EventFilter(types=("a.*",), limit=1)) == [{"type": "a.one"}]


# --- room list ----------------------------------------------------------------------------

def test_an_initial_sync_lists_joins_invites_and_knocks_and_leaves_only_when_asked():
    memberships = {"!j": row("!j", "join", 5), "!i": row("!i", "invite", 6), "!k": row("!k", "knock", 7),
                   "!l": row("!l", "leave", 8), "!b": row("!b", "ban", 9), "!f": row("!f", "leave", 3)}
    without = initial_entries(memberships, 10, include_leave=False)
    assert {(e.room_id, e.section) for e in without} == {("!j", "join"), ("!i", "invite"), ("!k", "knock")}
    with_leave = initial_entries(memberships, 10, include_leave=True, forgotten={"!f"})
    leaves = {e.room_id: e for e in with_leave if e.section == "leave"}
    assert set(leaves) == {"!l", "!b"}
    assert leaves["!l"].upto == 8 and leaves["!l"].state_after is None
    join = next(e for e in with_leave if e.section == "join")
    assert (join.upto, join.timeline_after, join.state_after) == (10, None, None)


def test_an_incremental_sync_reads_old_joins_as_deltas_and_new_joins_whole():
    memberships = {"!old": row("!old", "join", 2), "!new": row("!new", "join", 12)}
    changes = [row("!new", "join", 12)]
    before = {"!new": row("!new", "invite", 4)}
    entries = {e.room_id: e for e in incremental_entries(memberships, changes, before, 10, 20, full_state=False)}
    assert (entries["!old"].timeline_after, entries["!old"].state_after, entries["!old"].changed) == (10, 10, False)
    assert (entries["!new"].timeline_after, entries["!new"].state_after, entries["!new"].changed) == (None, None, True)


def test_full_state_keeps_the_timeline_range_but_drops_the_state_delta():
    memberships = {"!old": row("!old", "join", 2)}
    [entry] = incremental_entries(memberships, [], {}, 10, 20, full_state=True)
    assert (entry.timeline_after, entry.state_after) == (10, None)


def test_invites_and_leaves_appear_only_when_they_happened_in_the_range():
    memberships = {"!inv-old": row("!inv-old", "invite", 5), "!inv-new": row("!inv-new", "invite", 15),
                   "!left-old": row("!left-old", "leave", 5), "!left-new": row("!left-new", "leave", 15),
                   "!forgot": row("!forgot", "leave", 16)}
    changes = [row("!inv-new", "invite", 15), row("!left-new", "leave", 15), row("!forgot", "leave", 16)]
    before = {"!left-new": row("!left-new", "join", 3), "!forgot": row("!forgot", "join", 3)}
    entries = {e.room_id: e for e in incremental_entries(memberships, changes, before, 10, 20, full_state=False,
                                                         forgotten={"!forgot"})}
    assert set(entries) == {"!inv-new", "!left-new"}
    left = entries["!left-new"]
    assert (left.section, left.upto, left.timeline_after, left.state_after) == ("leave", 15, 10, 10)


def test_a_rejected_invite_is_a_leave_the_user_never_saw_from_inside():
    memberships = {"!r": row("!r", "leave", 15)}
    changes = [row("!r", "leave", 15)]
    before = {"!r": row("!r", "invite", 5)}
    [entry] = incremental_entries(memberships, changes, before, 10, 20, full_state=False)
    assert entry.never_joined and entry.section == "leave"


def test_a_room_joined_and_left_within_the_range_comes_whole_up_to_the_leave():
    memberships = {"!x": row("!x", "leave", 16)}
    changes = [row("!x", "join", 12), row("!x", "leave", 16)]
    [entry] = incremental_entries(memberships, changes, {}, 10, 20, full_state=False)
    assert (entry.timeline_after, entry.state_after, entry.upto, entry.never_joined) == (None, None, 16, False)


def test_only_rooms_with_membership_changes_need_their_earlier_membership():
    memberships = {"!a": row("!a", "join", 1), "!b": row("!b", "join", 15)}
    assert rooms_needing_prior_membership(memberships, [row("!b", "join", 15)]) == ["!b"]


# --- rendering ----------------------------------------------------------------------------

def test_a_state_delta_holds_only_new_or_changed_entries():
    before = {("m.room.name", ""): "$n1", ("m.room.topic", ""): "$t1"}
    after = {("m.room.name", ""): "$n2", ("m.room.topic", ""): "$t1", ("m.room.avatar", ""): "$a1"}
    assert rendering.state_delta(before, after) == {("m.room.name", ""): "$n2", ("m.room.avatar", ""): "$a1"}
    assert rendering.state_delta(after, after) == {}


def test_lazy_members_skip_what_the_client_already_has():
    state = {("m.room.member", "@a"): "$a", ("m.room.member", "@b"): "$b", ("m.room.member", "@me"): "$me"}
    wanted = rendering.members_to_load(state, timeline_senders=["@a", "@b", "@gone"], always=["@me"],
                                       already_sent={"@a": "$a", "@b": "$old-b"})
    assert wanted == {("m.room.member", "@b"): "$b", ("m.room.member", "@me"): "$me"}


def test_lazy_selection_keeps_non_member_state_and_gap_members_on_deltas():
    delta = {("m.room.name", ""): "$n", ("m.room.member", "@left"): "$l"}
    lazy = {("m.room.member", "@a"): "$a"}
    full = rendering.select_state(delta, lazy_load=True, lazy_members=lazy, gap_members_kept=False)
    assert full == {("m.room.name", ""): "$n", ("m.room.member", "@a"): "$a"}
    gap = rendering.select_state(delta, lazy_load=True, lazy_members=lazy, gap_members_kept=True)
    assert gap == {**delta, **lazy}
    assert rendering.select_state(delta, lazy_load=False, lazy_members=lazy, gap_members_kept=False) == delta


def test_heroes_are_other_present_members_or_else_those_who_left():
    assert rendering.pick_heroes("@me", ["@me", "@a", "@b"], ["@x"]) == ["@a", "@b"]
    assert rendering.pick_heroes("@me", ["@me"], ["@x", "@me"]) == ["@x"]
    assert len(rendering.pick_heroes("@me", [f"@u{i}" for i in range(9)], [])) == rendering.MAX_HEROES


def test_summaries_count_joined_and_invited_members():
    assert rendering.summary({"join": 3, "invite": 1, "leave": 4}, None) == {
        "m.joined_member_count": 3, "m.invited_member_count": 1}
    assert rendering.summary({}, ["@a"])["m.heroes"] == ["@a"]
