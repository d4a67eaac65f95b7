"""State resolution (v1, v2, v2.1) and history visibility: pure logic over events."""

from homeserver.state.resolve import resolve_state
from homeserver.state.store import EventGraphStore, InMemoryStateResStore, StateResStore
from homeserver.state.visibility import (
    StateAtEvent,
    filter_visible_events,
    is_event_visible,
    state_at_event_for,
)

__all__ = [
    "EventGraphStore",
    "InMemoryStateResStore",
    "StateAtEvent",
    "StateResStore",
    "filter_visible_events",
    "is_event_visible",
    "resolve_state",
    "state_at_event_for",
]
