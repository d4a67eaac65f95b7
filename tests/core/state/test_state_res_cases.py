"""Hand-built forks with known outcomes, one classic conflict per test."""

from __future__ import annotations

import pytest

from homeserver.state import resolve_state
from tests.state.statedag import ALICE, BOB, CAROL, DAVE, Room

V2_VERSIONS = ["2", "10", "11", "12"]
TOPIC = ("m.room.topic", "")
POWER = ("m.room.power_levels", "")
JOIN_RULES = ("m.room.join_rules", "")


def member(user: str) -> tuple[str, str]:
    return ("m.room.member", user)


async def resolve(room: Room, *state_sets: dict) -> dict:
    return room.named(await resolve_state(room.room_version, list(state_sets), room.store))


def base_room(version: str, **levels: int) -> tuple[Room, dict]:
    """Alice created it; Bob is a moderator (50) and joined; topic needs 0 to set."""
    room = Room(version)
    state = room.create(ALICE, users={BOB: 50, **levels}, power_extra={"events": {"m.room.topic": 0}})
    state = room.join("jbob", state, BOB)
    return room, state


@pytest.mark.parametrize("version", V2_VERSIONS)
async def test_a_ban_beats_a_concurrent_join_and_what_the_banned_user_sent_after_it(version: str) -> None:
    room, state = base_room(version)
    banned = room.member("ban", state, ALICE, CAROL, "ban")
    joined = room.join("jcarol", state, CAROL)
    joined = room.topic("carol_topic", joined, CAROL, "carol was here")

    result = await resolve(room, banned, joined)

    assert result[member(CAROL)] == "ban"
    # Carol's topic is checked after the ban and fails: she is not in the room.
    assert TOPIC not in result


@pytest.mark.parametrize("version", V2_VERSIONS)
async def test_a_demotion_by_a_higher_user_undoes_the_demoted_moderators_concurrent_kick(
    version: str,
) -> None:
    room, state = base_room(version)
    state = room.join("jcarol", state, CAROL)
    users = {BOB: 0} if version == "12" else {ALICE: 100, BOB: 0}
    demoted = room.power("demote", state, ALICE, users, ts=1000)
    # Bob kicks Carol "before" (by clock) Alice's demotion arrives: power still wins.
    kicked = room.member("kick", state, BOB, CAROL, "leave", ts=10)

    result = await resolve(room, demoted, kicked)

    assert result[POWER] == "demote"
    assert result[member(CAROL)] == "jcarol"


@pytest.mark.parametrize("version", V2_VERSIONS)
async def test_closing_the_room_to_invites_rejects_a_concurrent_uninvited_join(version: str) -> None:
    room, state = base_room(version)
    closed = room.send("invite_only", state, "m.room.join_rules", ALICE, {"join_rule": "invite"})
    joined = room.join("jdave", state, DAVE)

    result = await resolve(room, closed, joined)

    assert result[JOIN_RULES] == "invite_only"
    assert member(DAVE) not in result


@pytest.mark.parametrize("version", V2_VERSIONS)
async def test_a_topic_based_on_the_newer_power_levels_wins_a_topic_fork_whatever_the_clock_says(
    version: str,
) -> None:
    room, state = base_room(version)
    users = {BOB: 50, CAROL: 10} if version == "12" else {ALICE: 100, BOB: 50, CAROL: 10}
    newer = room.power("p2", state, ALICE, users)
    newer = room.topic("topic_new", newer, ALICE, "new", ts=5)
    older = room.topic("topic_old", state, BOB, "old", ts=900)

    result = await resolve(room, newer, older)

    # Mainline of the resolved power levels is [p2, ipower]: topic_old sits on
    # ipower (further down), so it is applied first and topic_new overwrites it.
    assert result[POWER] == "p2"
    assert result[TOPIC] == "topic_new"


@pytest.mark.parametrize("version", V2_VERSIONS)
async def test_topics_on_the_same_mainline_position_are_ordered_by_timestamp_then_event_id(
    version: str,
) -> None:
    room, state = base_room(version)
    late = room.topic("b_late", state, BOB, "late", ts=500)
    early = room.topic("a_early", state, ALICE, "early", ts=100)
    assert (await resolve(room, late, early))[TOPIC] == "b_late"

    same_a = room.topic("c_same", state, BOB, "c", ts=700)
    same_b = room.topic("d_same", state, ALICE, "d", ts=700)
    # Same timestamp: the larger event ID is applied last and stays.
    expected = max(["c_same", "d_same"], key=lambda n: room.ids[n])
    assert (await resolve(room, same_a, same_b))[TOPIC] == expected
    assert (await resolve(room, same_b, same_a))[TOPIC] == expected


@pytest.mark.parametrize("version", V2_VERSIONS)
async def test_equal_power_events_are_ordered_by_timestamp_so_the_later_join_rule_wins(version: str) -> None:
    room, state = base_room(version)
    public = room.send("jr_public", state, "m.room.join_rules", ALICE, {"join_rule": "public"}, ts=300)
    invite = room.send("jr_invite", state, "m.room.join_rules", ALICE, {"join_rule": "invite"}, ts=200)
    assert (await resolve(room, public, invite))[JOIN_RULES] == "jr_public"


@pytest.mark.parametrize("version", V2_VERSIONS)
async def test_a_higher_senders_power_event_goes_first_and_the_lower_ones_applies_on_top(
    version: str,
) -> None:
    room, state = base_room(version)
    state = room.join("jcarol", state, CAROL)
    # Both change the same key; Alice (100 or creator) outranks Bob (50), so Alice's
    # event is applied first and Bob's, still allowed, lands on top of it.
    by_alice = room.member("alice_kicks", state, ALICE, CAROL, "leave", ts=900)
    by_bob = room.member("bob_bans", state, BOB, CAROL, "ban", ts=100)
    assert (await resolve(room, by_alice, by_bob))[member(CAROL)] == "bob_bans"


@pytest.mark.parametrize("version", V2_VERSIONS)
async def test_an_event_from_the_auth_difference_can_come_back_into_the_state(version: str) -> None:
    room, state = base_room(version)
    users_p2 = {BOB: 50, CAROL: 50} if version == "12" else {ALICE: 100, BOB: 50, CAROL: 50}
    fork_a = room.power("p2", state, ALICE, users_p2)
    fork_a = room.join("jcarol", fork_a, CAROL)
    fork_a = room.topic("carol_topic", fork_a, CAROL, "hi")
    fork_b = room.topic("bob_topic", state, BOB, "bob")

    result = await resolve(room, fork_a, fork_b)

    assert result[POWER] == "p2"
    assert result[member(CAROL)] == "jcarol"
    assert result[TOPIC] == "carol_topic"


@pytest.mark.parametrize("version", ["10", "12"])
async def test_a_rejected_event_never_enters_the_resolved_state(version: str) -> None:
    room, state = base_room(version)
    fork_a = room.topic("rejected_topic", state, ALICE, "x", ts=900, rejected="soft-failed auth at its state")
    fork_b = room.topic("ok_topic", state, BOB, "y", ts=100)
    assert (await resolve(room, fork_a, fork_b))[TOPIC] == "ok_topic"


async def test_v2_checks_conflicted_events_against_the_unconflicted_state() -> None:
    room, state, fork_a, fork_b = _reset_scenario("10")
    assert (await resolve(room, fork_a, fork_b))[TOPIC] == "alice_topic"


async def test_v2_1_checks_conflicted_events_against_their_own_auth_events_not_the_unconflicted_state() -> (
    None
):
    room, state, fork_a, fork_b = _reset_scenario("12")
    # Room version 12 starts the iterative auth checks from an empty map: Bob's
    # topic is judged by the power levels it cites, where he was still a moderator.
    assert (await resolve(room, fork_a, fork_b))[TOPIC] == "bob_topic"


def _reset_scenario(version: str) -> tuple[Room, dict, dict, dict]:
    room = Room(version)
    state = room.create(ALICE, users={BOB: 50}, power_extra={"events": {"m.room.topic": 50}})
    state = room.join("jbob", state, BOB)
    fork_a = room.topic("bob_topic", state, BOB, "bob", ts=500)
    demote = {BOB: 0} if version == "12" else {ALICE: 100, BOB: 0}
    fork_a = room.power("demote_bob", fork_a, ALICE, demote, ts=600, prev=[room.ids["bob_topic"]])
    # Fork B branches after the demotion (so it is unconflicted) and changes the
    # topic with a clock that runs behind.
    fork_b = room.topic("alice_topic", fork_a, ALICE, "alice", ts=50)
    return room, state, fork_a, fork_b


async def test_v2_keeps_a_key_only_one_state_set_has_when_it_passes_auth() -> None:
    room, state = base_room("10")
    named = room.send("name", state, "m.room.name", ALICE, {"name": "Huiskamer"})
    result = await resolve(room, named, state)
    assert result[("m.room.name", "")] == "name"


# --- room version 1 ---------------------------------------------------------------------


async def test_v1_takes_the_deepest_conflicting_topic_that_passes_auth() -> None:
    room, state = base_room("1")
    shallow = room.topic("shallow", state, ALICE, "a", ts=999)
    deep = room.topic("deep1", state, BOB, "b")
    deep = room.topic("deep2", deep, BOB, "c", depth=50)
    assert (await resolve(room, shallow, deep))[TOPIC] == "deep2"


async def test_v1_applies_power_levels_from_the_oldest_on_while_each_next_one_is_allowed() -> None:
    room, state = base_room("1")
    first = room.power("pl_first", state, ALICE, {ALICE: 100, BOB: 0}, depth=10)
    # Bob was 50 in the state he sent this in, but after pl_first he is 0, so his
    # (deeper) change is refused and pl_first stays.
    second = room.power("pl_second", state, BOB, {ALICE: 100, BOB: 50, CAROL: 50}, depth=11)
    assert (await resolve(room, first, second))[POWER] == "pl_first"


async def test_v1_keeps_a_key_that_only_one_state_set_has() -> None:
    room, state = base_room("1")
    with_topic = room.topic("topic", state, BOB, "t")
    assert (await resolve(room, with_topic, state))[TOPIC] == "topic"


async def test_v1_resolves_a_ban_against_a_join_by_depth_and_auth() -> None:
    room, state = base_room("1")
    banned = room.member("ban", state, ALICE, CAROL, "ban", depth=20)
    joined = room.join("jcarol", state, CAROL, depth=10)
    # Oldest first (the join), then the ban is allowed on top of it.
    assert (await resolve(room, banned, joined))[member(CAROL)] == "ban"
