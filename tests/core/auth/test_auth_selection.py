"""Auth events selection and the state-independent checks on an event's auth_events."""

from __future__ import annotations

import pytest

from homeserver.event_auth import AuthError, auth_types_for_event, check_auth, check_auth_events_selection
from homeserver.events.event import Event
from tests.event_auth.authroom import ALICE, BOB, CAROL, CREATOR, AuthRoom, versions

CREATE = ("m.room.create", "")
PL = ("m.room.power_levels", "")
JR = ("m.room.join_rules", "")


def _member(user: str) -> tuple[str, str]:
    return ("m.room.member", user)


def _with_create(room: AuthRoom, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return keys if room.rv.room_id_from_create_event else keys | {CREATE}


# --- auth_types_for_event ------------------------------------------------------------


@pytest.mark.parametrize("v", versions())
def test_a_create_event_depends_on_no_state(v):
    room = AuthRoom(v)
    assert auth_types_for_event(room.create, room.rv) == set()


@pytest.mark.parametrize("v", versions())
def test_a_message_depends_on_power_levels_the_sender_and_the_create_event_before_v12(v):
    room = AuthRoom(v)
    assert auth_types_for_event(room.message(ALICE), room.rv) == _with_create(room, {PL, _member(ALICE)})


@pytest.mark.parametrize("v", versions())
def test_a_join_also_depends_on_the_join_rules(v):
    room = AuthRoom(v)
    expected = _with_create(room, {PL, _member(BOB), JR})
    assert auth_types_for_event(room.member(BOB, "join"), room.rv) == expected


@pytest.mark.parametrize("v", versions())
def test_an_invite_depends_on_the_sender_the_target_and_the_join_rules(v):
    room = AuthRoom(v)
    expected = _with_create(room, {PL, _member(ALICE), _member(BOB), JR})
    assert auth_types_for_event(room.member(BOB, "invite", sender=ALICE), room.rv) == expected


@pytest.mark.parametrize("v", versions())
def test_a_knock_depends_on_the_join_rules(v):
    room = AuthRoom(v)
    assert JR in auth_types_for_event(room.member(BOB, "knock"), room.rv)


@pytest.mark.parametrize("v", versions())
def test_a_leave_or_ban_does_not_depend_on_the_join_rules(v):
    room = AuthRoom(v)
    for membership in ("leave", "ban"):
        event = room.member(BOB, membership, sender=ALICE)
        assert auth_types_for_event(event, room.rv) == _with_create(room, {PL, _member(ALICE), _member(BOB)})


@pytest.mark.parametrize("v", versions())
def test_a_third_party_invite_depends_on_the_invite_token(v):
    room = AuthRoom(v)
    content = {"membership": "invite", "third_party_invite": {"signed": {"mxid": BOB, "token": "abc"}}}
    event = room.event("m.room.member", ALICE, content, state_key=BOB)
    assert ("m.room.third_party_invite", "abc") in auth_types_for_event(event, room.rv)


@pytest.mark.parametrize("third_party_invite", [None, "x", {"signed": "x"}, {"signed": {"token": 5}}, {}])
def test_a_malformed_third_party_invite_selects_no_token_and_does_not_crash(third_party_invite):
    room = AuthRoom("10")
    content = {"membership": "invite", "third_party_invite": third_party_invite}
    event = room.event("m.room.member", ALICE, content, state_key=BOB)
    assert not any(t == "m.room.third_party_invite" for t, _ in auth_types_for_event(event, room.rv))


@pytest.mark.parametrize("v", versions())
def test_a_restricted_join_depends_on_the_authorising_user_from_v8(v):
    room = AuthRoom(v)
    event = room.member(BOB, "join", join_authorised_via_users_server=CAROL)
    assert (_member(CAROL) in auth_types_for_event(event, room.rv)) is room.rv.restricted_join_rule


@pytest.mark.parametrize("v", versions())
def test_the_authorising_user_is_not_selected_for_non_joins(v):
    room = AuthRoom(v)
    event = room.member(BOB, "leave", join_authorised_via_users_server=CAROL)
    assert _member(CAROL) not in auth_types_for_event(event, room.rv)


# --- check_auth_events_selection -------------------------------------------------------


def _cite(room: AuthRoom, event: Event, *keys: tuple[str, str]) -> dict[str, Event]:
    """Point `event.auth_events` at the room's current events for `keys`; return the id map."""
    auth = [room.state[k] for k in keys]
    event.pdu["auth_events"] = [e.event_id for e in auth]  # type: ignore[index]
    return {e.event_id: e for e in auth}


def _proper_keys(room: AuthRoom, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    keys = (PL, _member(ALICE), *extra)
    return keys if room.rv.room_id_from_create_event else (CREATE, *keys)


@pytest.mark.parametrize("v", versions())
def test_properly_selected_auth_events_pass_and_are_returned_by_key(v):
    room = AuthRoom(v).join(ALICE)
    event = room.message(ALICE)
    auth_events = _cite(room, event, *_proper_keys(room))
    by_key = check_auth_events_selection(event, auth_events, room.rv, create_event=room.create)
    assert by_key == {k: room.state[k] for k in _proper_keys(room)}


@pytest.mark.parametrize("v", versions())
def test_the_returned_map_authorises_the_event_once_the_create_event_is_added(v):
    room = AuthRoom(v).join(ALICE)
    event = room.message(ALICE)
    by_key = check_auth_events_selection(event, _cite(room, event, *_proper_keys(room)), room.rv)
    check_auth(event, {**by_key, CREATE: room.create}, room.rv)


@pytest.mark.parametrize("v", versions())
def test_two_auth_events_for_the_same_key_are_rejected(v):
    room = AuthRoom(v).join(ALICE)
    older_pl = room.state[PL]
    room.set_power_levels(ban=60)
    event = room.message(ALICE)
    auth_events = _cite(room, event, *_proper_keys(room))
    event.pdu["auth_events"].append(older_pl.event_id)  # type: ignore[attr-defined]
    auth_events[older_pl.event_id] = older_pl
    with pytest.raises(AuthError, match="two entries"):
        check_auth_events_selection(event, auth_events, room.rv)


@pytest.mark.parametrize("v", versions())
def test_an_auth_event_of_an_unexpected_type_is_rejected(v):
    room = AuthRoom(v).join(ALICE)
    room.put(room.event("m.room.name", CREATOR, {"name": "n"}, state_key=""))
    event = room.message(ALICE)
    auth_events = _cite(room, event, *_proper_keys(room, ("m.room.name", "")))
    with pytest.raises(AuthError, match="unexpected"):
        check_auth_events_selection(event, auth_events, room.rv)


@pytest.mark.parametrize("v", versions())
def test_another_users_member_event_is_unexpected_for_a_message(v):
    room = AuthRoom(v).join(ALICE, BOB)
    event = room.message(ALICE)
    auth_events = _cite(room, event, *_proper_keys(room, _member(BOB)))
    with pytest.raises(AuthError, match="unexpected"):
        check_auth_events_selection(event, auth_events, room.rv)


@pytest.mark.parametrize("v", versions())
def test_the_join_rules_are_unexpected_for_a_message(v):
    room = AuthRoom(v).join(ALICE)
    event = room.message(ALICE)
    auth_events = _cite(room, event, *_proper_keys(room, JR))
    with pytest.raises(AuthError, match="unexpected"):
        check_auth_events_selection(event, auth_events, room.rv)


@pytest.mark.parametrize("v", versions())
def test_a_rejected_auth_event_is_rejected(v):
    room = AuthRoom(v).join(ALICE)
    event = room.message(ALICE)
    auth_events = _cite(room, event, *_proper_keys(room))
    room.state[PL].rejected_reason = "auth"
    with pytest.raises(AuthError, match="was rejected"):
        check_auth_events_selection(event, auth_events, room.rv)


@pytest.mark.parametrize("v", versions())
def test_an_auth_event_from_another_room_is_rejected(v):
    room = AuthRoom(v).join(ALICE)
    other = AuthRoom(v)
    event = room.message(ALICE)
    auth_events = _cite(room, event, *_proper_keys(room))
    foreign_pl = other.state[PL]
    event.pdu["auth_events"] = [  # type: ignore[index]
        foreign_pl.event_id if e == room.state[PL].event_id else e for e in event.auth_event_ids
    ]
    auth_events[foreign_pl.event_id] = Event(
        {**foreign_pl.pdu, "room_id": "!elsewhere"}, room.rv, event_id=foreign_pl.event_id
    )
    with pytest.raises(AuthError, match="another room"):
        check_auth_events_selection(event, auth_events, room.rv)


@pytest.mark.parametrize("v", versions(1, 11))
def test_auth_events_without_the_create_event_are_rejected_before_v12(v):
    room = AuthRoom(v).join(ALICE)
    event = room.message(ALICE)
    auth_events = _cite(room, event, PL, _member(ALICE))
    with pytest.raises(AuthError, match="no m.room.create"):
        check_auth_events_selection(event, auth_events, room.rv)


def test_auth_events_citing_the_create_event_are_rejected_in_v12():
    room = AuthRoom("12").join(ALICE)
    event = room.message(ALICE)
    auth_events = _cite(room, event, CREATE, PL, _member(ALICE))
    with pytest.raises(AuthError, match="unexpected"):
        check_auth_events_selection(event, auth_events, room.rv)


def test_a_v12_event_whose_room_id_is_not_the_create_event_id_is_rejected():
    room = AuthRoom("12").join(ALICE)
    event = room.message(ALICE, room_id="!someotherhash")
    with pytest.raises(AuthError, match="room_id"):
        check_auth_events_selection(event, {}, room.rv, create_event=room.create)


def test_a_v12_event_of_a_rejected_create_event_is_rejected():
    room = AuthRoom("12").join(ALICE)
    room.create.rejected_reason = "bad signature"
    event = room.message(ALICE)
    with pytest.raises(AuthError, match="rejected"):
        check_auth_events_selection(event, {}, room.rv, create_event=room.create)


@pytest.mark.parametrize("v", versions())
def test_an_unknown_auth_event_id_is_rejected(v):
    room = AuthRoom(v).join(ALICE)
    event = room.message(ALICE)
    auth_events = _cite(room, event, *_proper_keys(room))
    event.pdu["auth_events"].append("$missing")  # type: ignore[attr-defined]
    with pytest.raises(AuthError, match="unknown"):
        check_auth_events_selection(event, auth_events, room.rv)


@pytest.mark.parametrize("v", versions())
def test_a_message_event_among_the_auth_events_is_rejected(v):
    room = AuthRoom(v).join(ALICE)
    earlier = room.message(ALICE)
    event = room.message(ALICE)
    auth_events = _cite(room, event, *_proper_keys(room))
    event.pdu["auth_events"].append(earlier.event_id)  # type: ignore[attr-defined]
    auth_events[earlier.event_id] = earlier
    with pytest.raises(AuthError, match="not a state event"):
        check_auth_events_selection(event, auth_events, room.rv)


@pytest.mark.parametrize("v", versions())
def test_a_create_event_passes_selection_with_no_auth_events(v):
    room = AuthRoom(v)
    assert check_auth_events_selection(room.create, {}, room.rv) == {}


@pytest.mark.parametrize("v", versions())
def test_a_join_may_cite_the_target_and_the_join_rules(v):
    room = AuthRoom(v).set_member(BOB, "invite", sender=CREATOR)
    event = room.member(BOB, "join")
    keys = (PL, JR, _member(BOB)) if v == "12" else (CREATE, PL, JR, _member(BOB))
    by_key = check_auth_events_selection(event, _cite(room, event, *keys), room.rv)
    assert set(by_key) == set(keys)
