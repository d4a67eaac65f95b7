"""Pure pieces of rendering one room of a sync: state deltas, lazy-loaded members, stripped state,
summaries. No storage here; the engine loads what these functions need and passes it in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from homeserver.events.event import Event
from homeserver.events.sync_filter import EventFilter

StateKey = tuple[str, str]
StateMap = Mapping[StateKey, str]

# Stripped state shown with invites and knocks (spec, "Stripped state": the recommended set).
STRIPPED_STATE_TYPES = (
    "m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.canonical_alias",
    "m.room.encryption", "m.room.topic",
)
MAX_HEROES = 5


def state_delta(before: StateMap, after: StateMap) -> dict[StateKey, str]:
    """The entries of `after` that `before` lacks or holds differently."""
    if before is after:
        return {}
    return {key: event_id for key, event_id in after.items() if before.get(key) != event_id}


def members_to_load(state: StateMap, *, timeline_senders: Iterable[str], always: Iterable[str] = (),
                    already_sent: Mapping[str, str] | None = None) -> dict[StateKey, str]:
    """The member events a lazy-loading client needs from `state`.

    Those of the timeline's senders and of `always` (the user themselves on a full sync, the
    heroes), minus the ones `already_sent` says this client has (user -> member event ID), unless
    redundant members were asked for (the caller then passes None).
    """
    wanted: dict[StateKey, str] = {}
    for user_id in (*timeline_senders, *always):
        key = ("m.room.member", user_id)
        event_id = state.get(key)
        if event_id is None:
            continue
        if already_sent is not None and already_sent.get(user_id) == event_id:
            continue
        wanted[key] = event_id
    return wanted


def select_state(state: StateMap, *, lazy_load: bool, lazy_members: Mapping[StateKey, str],
                 gap_members_kept: bool) -> dict[StateKey, str]:
    """The state section's entries: everything, or with lazy loading non-member state, the members
    a client needs, and (for deltas) every membership change in the gap, as the spec requires."""
    if not lazy_load:
        return dict(state)
    chosen = {key: event_id for key, event_id in state.items()
              if key[0] != "m.room.member" or gap_members_kept}
    chosen.update(lazy_members)
    return chosen


def filter_state_events(events: Sequence[Event], state_filter: EventFilter, room_id: str) -> list[Event]:
    return [e for e in events if state_filter.matches(e.type, e.sender, e.content, room_id=room_id)]


def stripped_event(event: Event) -> dict[str, Any]:
    return {"type": event.type, "state_key": event.state_key, "content": dict(event.content),
            "sender": event.sender}


def stripped_state_keys(state: StateMap) -> list[str]:
    """Event IDs of the stripped-state subset of a room's state, in a stable order."""
    return [state[(t, "")] for t in STRIPPED_STATE_TYPES if (t, "") in state]


def has_display_name(name_event: Event | None, alias_event: Event | None) -> bool:
    """Whether clients can name the room without heroes: a non-empty name or canonical alias."""
    name = name_event.content.get("name") if name_event is not None else None
    alias = alias_event.content.get("alias") if alias_event is not None else None
    return bool(isinstance(name, str) and name) or bool(isinstance(alias, str) and alias)


def pick_heroes(user_id: str, present: Sequence[str], departed: Sequence[str]) -> list[str]:
    """Up to five other users: joined or invited ones first, else those who left or were banned."""
    others = [u for u in present if u != user_id]
    if not others:
        others = [u for u in departed if u != user_id]
    return others[:MAX_HEROES]


def summary(counts: Mapping[str, int], heroes: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"m.joined_member_count": counts.get("join", 0),
                           "m.invited_member_count": counts.get("invite", 0)}
    if heroes is not None:
        out["m.heroes"] = heroes
    return out
