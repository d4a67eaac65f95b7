"""Which servers take part in a room now: those with a member joined in its current state."""

from __future__ import annotations

from federation.outbound import server_of
from storage.stores.events import EventStore


async def joined_hosts(events: EventStore, room_id: str) -> set[str]:
    """The servers of the room's joined members (current state; ourselves included when joined)."""
    return {server_of(user_id) for user_id in await events.get_members(room_id, ("join",))}
