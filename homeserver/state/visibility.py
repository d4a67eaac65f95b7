"""History visibility: may a user see an event, given the room state at that event.

The client-server spec, "Room History Visibility" (Server behaviour): the rules are
applied with the `m.room.history_visibility` and the user's membership *at the
event*, i.e. in the state before it. Two kinds of event are judged both before and
after themselves: `m.room.history_visibility` events, and the user's own
`m.room.member` events (so a user sees their own join, and their own leave).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

from homeserver.events.event import Event

WORLD_READABLE = "world_readable"
SHARED = "shared"
INVITED = "invited"
JOINED = "joined"
VISIBILITIES = frozenset((WORLD_READABLE, SHARED, INVITED, JOINED))

HISTORY_VISIBILITY_KEY = ("m.room.history_visibility", "")


@dataclasses.dataclass(frozen=True, slots=True)
class StateAtEvent:
    """What the rules read from the state before an event, for one user."""

    history_visibility: str | None
    membership: str | None


def effective_visibility(value: object) -> str:
    """The setting in force: absent or not understood means `shared`."""
    return value if isinstance(value, str) and value in VISIBILITIES else SHARED


def state_at_event_for(user_id: str, state: Mapping[tuple[str, str], Event]) -> StateAtEvent:
    """Read the history visibility and the user's membership out of a state map."""
    visibility_event = state.get(HISTORY_VISIBILITY_KEY)
    member_event = state.get(("m.room.member", user_id))
    return StateAtEvent(
        history_visibility=visibility_event.content.get("history_visibility") if visibility_event else None,
        membership=member_event.membership if member_event else None,
    )


def visible_whatever_the_event(state_before: StateAtEvent, *, joined_afterwards: bool = False) -> bool:
    """Whether the state alone lets the user see an event: then `is_event_visible` says yes for
    every event with this state before it, and a caller may decide a run of them at once."""
    return _allowed(effective_visibility(state_before.history_visibility), state_before.membership,
                    joined_afterwards)


def _allowed(visibility: str, membership: str | None, joined_afterwards: bool) -> bool:
    # Rules 1-5 of "Server behaviour", in order.
    if visibility == WORLD_READABLE:
        return True
    if membership == "join":
        return True
    if visibility == SHARED and joined_afterwards:
        return True
    return visibility == INVITED and membership == "invite"


def is_event_visible(
    user_id: str, event: Event, state_before: StateAtEvent, *, joined_afterwards: bool = False
) -> bool:
    """Whether `user_id` may see `event`.

    `state_before` holds the history visibility and the user's membership in the
    state before the event. `joined_afterwards` says whether the user joined the
    room at any point after the event was sent (rule 3, `shared`); callers
    usually pass whether the user is joined now or joined later in the DAG.
    """
    visibility = effective_visibility(state_before.history_visibility)
    membership = state_before.membership
    if _allowed(visibility, membership, joined_afterwards):
        return True

    # The event's own effect counts too for the two kinds of event that change
    # what the rules read.
    if event.type == "m.room.history_visibility" and event.state_key == "":
        after = effective_visibility(event.content.get("history_visibility"))
        return _allowed(after, membership, joined_afterwards)
    if event.type == "m.room.member" and event.state_key == user_id:
        return _allowed(visibility, event.membership, joined_afterwards)
    return False


def filter_visible_events(
    user_id: str,
    events: Iterable[Event],
    state_before: Mapping[str, StateAtEvent] | Callable[[Event], StateAtEvent],
    *,
    joined_afterwards: bool | Callable[[Event], bool] = False,
) -> list[Event]:
    """The events `user_id` may see, in their original order.

    `state_before` maps each event ID (or a function maps each event) to the
    StateAtEvent before it; an event without an entry is not shown. The same goes
    for `joined_afterwards`, a flag for all events or a function of the event.
    """
    visible: list[Event] = []
    for event in events:
        if callable(state_before):
            before = state_before(event)
        else:
            before = state_before.get(event.event_id)
            if before is None:
                continue
        joined = joined_afterwards(event) if callable(joined_afterwards) else joined_afterwards
        if is_event_visible(user_id, event, before, joined_afterwards=joined):
            visible.append(event)
    return visible
