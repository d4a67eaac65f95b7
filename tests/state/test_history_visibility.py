"""History visibility: the client-server spec's "Server behaviour" rules as a table."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.event import Event
from homeserver.events.room_versions import get_room_version
from homeserver.state import StateAtEvent, filter_visible_events, is_event_visible, state_at_event_for

V10 = get_room_version("10")
USER = "@user:example.com"
OTHER = "@other:example.com"


def event(
    event_id: str, event_type: str = "m.room.message", state_key: str | None = None, **content: Any
) -> Event:
    pdu: dict[str, Any] = {
        "type": event_type,
        "sender": OTHER,
        "content": content,
        "room_id": "!r:example.com",
    }
    if state_key is not None:
        pdu["state_key"] = state_key
    return Event(pdu, V10, event_id=event_id)


MESSAGE = event("$message", body="hello")

# (history_visibility at the event, user's membership at the event, joined afterwards, visible)
MESSAGE_TABLE = [
    ("world_readable", None, False, True),
    ("world_readable", "leave", False, True),
    ("world_readable", "ban", False, True),
    ("shared", "join", False, True),
    ("shared", None, True, True),
    ("shared", None, False, False),
    ("shared", "leave", True, True),
    ("shared", "invite", False, False),
    ("invited", "invite", False, True),
    ("invited", "join", False, True),
    ("invited", None, True, False),
    ("invited", "leave", False, False),
    ("joined", "join", False, True),
    ("joined", "invite", False, False),
    ("joined", None, True, False),
    ("joined", "leave", True, False),
    ("joined", "knock", False, False),
    # Absent or not understood: treated as shared.
    (None, None, True, True),
    (None, None, False, False),
    ("something_new", None, True, True),
    ("something_new", "invite", False, False),
]


@pytest.mark.parametrize(("visibility", "membership", "joined_afterwards", "visible"), MESSAGE_TABLE)
def test_a_message_is_visible_according_to_the_table(
    visibility: str | None, membership: str | None, joined_afterwards: bool, visible: bool
) -> None:
    before = StateAtEvent(history_visibility=visibility, membership=membership)
    assert is_event_visible(USER, MESSAGE, before, joined_afterwards=joined_afterwards) is visible


@pytest.mark.parametrize(
    ("before_membership", "new_membership", "visible"),
    [
        (None, "join", True),  # one's own join, even with `joined`
        ("invite", "join", True),
        ("join", "leave", True),  # leaving: the membership before allowed it
        ("join", "ban", True),
        (None, "invite", False),  # an invite is not a join under `joined`
        ("leave", "ban", False),
    ],
)
def test_the_users_own_membership_event_counts_with_the_membership_before_or_after_it(
    before_membership: str | None, new_membership: str, visible: bool
) -> None:
    own = event("$own", "m.room.member", USER, membership=new_membership)
    before = StateAtEvent(history_visibility="joined", membership=before_membership)
    assert is_event_visible(USER, own, before) is visible


def test_someone_elses_join_does_not_count_as_the_users_own() -> None:
    theirs = event("$theirs", "m.room.member", OTHER, membership="join")
    assert not is_event_visible(USER, theirs, StateAtEvent("joined", None))


def test_an_invite_under_invited_visibility_shows_the_invite_itself() -> None:
    invite = event("$invite", "m.room.member", USER, membership="invite")
    assert is_event_visible(USER, invite, StateAtEvent("invited", None))


@pytest.mark.parametrize(
    ("before", "after", "visible"),
    [
        ("world_readable", "joined", True),
        ("joined", "world_readable", True),
        ("joined", "shared", False),
        ("invited", "joined", False),
    ],
)
def test_a_history_visibility_change_is_visible_if_either_side_of_it_allows(
    before: str, after: str, visible: bool
) -> None:
    change = event("$hv", "m.room.history_visibility", "", history_visibility=after)
    assert is_event_visible(OTHER + "x", change, StateAtEvent(before, None)) is visible


def test_a_history_visibility_event_with_a_state_key_is_an_ordinary_event() -> None:
    odd = event("$odd", "m.room.history_visibility", "x", history_visibility="world_readable")
    assert not is_event_visible(USER, odd, StateAtEvent("joined", None))


def test_state_at_event_is_read_from_a_state_map() -> None:
    hv = event("$hv", "m.room.history_visibility", "", history_visibility="invited")
    membership = event("$m", "m.room.member", USER, membership="invite")
    state = {("m.room.history_visibility", ""): hv, ("m.room.member", USER): membership}
    assert state_at_event_for(USER, state) == StateAtEvent("invited", "invite")
    assert state_at_event_for(OTHER, {}) == StateAtEvent(None, None)


def test_the_batch_filter_keeps_order_and_drops_what_the_user_may_not_see() -> None:
    early = event("$early", body="before the user joined")
    join = event("$join", "m.room.member", USER, membership="join")
    late = event("$late", body="after")
    secret = event("$unknown", body="no state known")
    states = {
        "$early": StateAtEvent("joined", None),
        "$join": StateAtEvent("joined", None),
        "$late": StateAtEvent("joined", "join"),
    }
    visible = filter_visible_events(USER, [early, join, late, secret], states)
    assert [e.event_id for e in visible] == ["$join", "$late"]


def test_the_batch_filter_takes_functions_for_state_and_later_joins() -> None:
    messages = [event(f"$m{i}", body=str(i)) for i in range(4)]
    visible = filter_visible_events(
        USER,
        messages,
        lambda e: StateAtEvent("shared", None),
        joined_afterwards=lambda e: e.event_id in {"$m1", "$m3"},
    )
    assert [e.event_id for e in visible] == ["$m1", "$m3"]
