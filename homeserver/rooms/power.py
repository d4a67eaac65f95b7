"""Power levels of users in a room, read from a state map: the checks services make before sending."""

from __future__ import annotations

from collections.abc import Mapping

from homeserver.event_auth import get_named_level, get_required_level, get_user_power_level
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion
from storage.stores.events import EventStore

POWER_LEVELS_KEY = ("m.room.power_levels", "")
CREATE_KEY = ("m.room.create", "")


class RoomPower:
    """A user-level view of one room's power levels at some state."""

    def __init__(self, auth_state: Mapping[tuple[str, str], Event], room_version: RoomVersion):
        self._auth_state = auth_state
        self._room_version = room_version
        pl_event = auth_state.get(POWER_LEVELS_KEY)
        self._content = pl_event.content if pl_event is not None else None

    @classmethod
    async def load(cls, events: EventStore, state: Mapping[tuple[str, str], str],
                   room_version: RoomVersion) -> RoomPower:
        """From a state map (type, state_key) -> event ID."""
        wanted = [state[k] for k in (POWER_LEVELS_KEY, CREATE_KEY) if k in state]
        loaded = await events.get_events(wanted)
        auth_state = {k: loaded[state[k]] for k in (POWER_LEVELS_KEY, CREATE_KEY)
                      if k in state and state[k] in loaded}
        return cls(auth_state, room_version)

    @property
    def auth_state(self) -> Mapping[tuple[str, str], Event]:
        return self._auth_state

    def user_level(self, user_id: str) -> float:
        return get_user_power_level(user_id, self._auth_state, self._room_version)

    def may_send_state(self, user_id: str, event_type: str) -> bool:
        return self.user_level(user_id) >= get_required_level(event_type, True, self._content)

    def has_named_level(self, user_id: str, name: str) -> bool:
        """Whether the user reaches a named level such as `redact`, `kick` or `invite`."""
        return self.user_level(user_id) >= get_named_level(self._content, name)
