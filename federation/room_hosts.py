"""Which servers take part in a room now: those with a member joined in its current state, and, in a
room joined with partial state (faster joins), the servers the join answer listed in
`servers_in_room` until the full state is in (its current state names only some members)."""

from __future__ import annotations

from federation.outbound import server_of
from storage.stores.events import EventStore
from storage.stores.partial_state import PartialStateStore


async def joined_hosts(events: EventStore, room_id: str, partial_state: PartialStateStore | None = None) -> set[str]:
    """The servers of the room's joined members (current state; ourselves included when joined),
    with `partial_state`: also the `servers_in_room` of a room whose state is partial."""
    hosts = {server_of(user_id) for user_id in await events.get_members(room_id, ("join",))}
    if partial_state is not None:
        room = await partial_state.get_room(room_id)
        if room is not None:
            hosts.update(room.servers_in_room)
    return hosts
