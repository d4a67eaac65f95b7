"""The one entry point: resolve state sets with the algorithm of the room version."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from homeserver.events.room_versions import RoomVersion, StateResAlgorithm
from homeserver.state.store import StateResStore
from homeserver.state.v1 import resolve_v1
from homeserver.state.v2 import resolve_v2


async def resolve_state(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[tuple[str, str], str]],
    store: StateResStore,
) -> dict[tuple[str, str], str]:
    """The resolved state of several state maps ((type, state_key) -> event ID)."""
    state_sets = list(state_sets)
    if room_version.state_res is StateResAlgorithm.V1:
        return await resolve_v1(room_version, state_sets, store)
    return await resolve_v2(room_version, state_sets, store)
