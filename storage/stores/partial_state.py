"""Rooms joined with partial state (`partial_state_rooms`, `partial_state_rooms_completed`).

A room joined through send_join with `omit_members` starts with the resident's state minus most
membership events. Its row here says so until the full state is in: then `complete` fills the
missing state in, in one transaction, and records the events stream position of that change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction
from storage.stores import room_state
from storage.stores.events import add_missing_group_state, add_state_membership_rows
from storage.streams import EVENTS, allocate_stream_positions

StateMap = dict[tuple[str, str], str]


@dataclass(frozen=True)
class PartialStateRoom:
    room_id: str
    join_event_id: str
    joined_via: str
    servers_in_room: tuple[str, ...]


class PartialStateStore:
    """The one writer of these tables, so it keeps the (few) partial rooms' IDs in memory: the
    federation hand-off asks for every event sent, and a room that is not partial costs no query."""

    def __init__(self, db: Database):
        self.db = db
        self._partial: set[str] | None = None  # loaded on first use

    async def _partial_rooms(self) -> set[str]:
        if self._partial is None:
            rows = await self.db.fetch_all("partial_state_room_ids", "SELECT room_id FROM partial_state_rooms")
            self._partial = {row[0] for row in rows}
        return self._partial

    async def mark_partial(self, room_id: str, join_event_id: str, joined_via: str, servers_in_room: Sequence[str],
                           now_ms: int) -> None:
        """Record that the room's state is partial (before the join that makes it so is persisted)."""
        await self.db.execute(
            "mark_partial_state",
            "INSERT INTO partial_state_rooms (room_id, join_event_id, joined_via, servers_in_room, joined_ts)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id) DO UPDATE SET join_event_id = excluded.join_event_id,"
            " joined_via = excluded.joined_via, servers_in_room = excluded.servers_in_room,"
            " joined_ts = excluded.joined_ts",
            (room_id, join_event_id, joined_via, encode_str(list(servers_in_room)), now_ms))
        (await self._partial_rooms()).add(room_id)

    async def forget(self, room_id: str, join_event_id: str) -> None:
        """Drop the mark of a join that was never persisted (its room's state is what it was)."""
        await self.db.execute("forget_partial_state",
                              "DELETE FROM partial_state_rooms WHERE room_id = ? AND join_event_id = ?",
                              (room_id, join_event_id))
        self._partial = None  # the mark may have named another join: read the set again

    async def get_room(self, room_id: str) -> PartialStateRoom | None:
        if room_id not in await self._partial_rooms():
            return None
        row = await self.db.fetch_one(
            "get_partial_state_room",
            "SELECT room_id, join_event_id, joined_via, servers_in_room FROM partial_state_rooms WHERE room_id = ?",
            (room_id,))
        return _room(row) if row is not None else None

    async def is_partial(self, room_id: str) -> bool:
        if room_id not in await self._partial_rooms():
            return False
        return await self.db.fetch_value("is_partial_state_room",
                                         "SELECT 1 FROM partial_state_rooms WHERE room_id = ?", (room_id,)) is not None

    async def room_ids(self) -> set[str]:
        """The rooms whose state is partial now (from memory)."""
        return set(await self._partial_rooms())

    async def get_rooms(self) -> list[PartialStateRoom]:
        rows = await self.db.fetch_all(
            "get_partial_state_rooms",
            "SELECT room_id, join_event_id, joined_via, servers_in_room FROM partial_state_rooms ORDER BY joined_ts")
        return [_room(row) for row in rows]

    async def rooms_completed_between(self, room_ids: Sequence[str], after: int, upto: int) -> set[str]:
        """The rooms among `room_ids` whose full state arrived at a position in (after, upto]."""
        if not room_ids or after >= upto:
            return set()

        async def txn_fn(txn: Transaction) -> set[str]:
            clause, params = txn.dialect.in_list("room_id", list(room_ids))
            rows = await txn.fetch_all(
                f"SELECT DISTINCT room_id FROM partial_state_rooms_completed WHERE {clause}"
                " AND stream_ordering > ? AND stream_ordering <= ?", (*params, after, upto))
            return {r[0] for r in rows}

        return await self.db.run_interaction("rooms_completed_between", txn_fn, write=False)

    async def complete(self, room_id: str, join_event_id: str, full_state: Mapping[tuple[str, str], str],
                       memberships: Mapping[str, str | None]) -> int | None:
        """Fill the full state in and clear the room's mark; the events stream position of the change.

        Every state key of `full_state` (the state before our join) that the room's state groups
        since the join lack is added to the groups the others derive from (those without a parent),
        so the state at every event since the join gains it, unless a later event changed it; keys
        missing from current state are added to it (`memberships`: event ID -> membership). None
        when the mark is gone or names another join (nothing is changed then).
        """

        async def txn_fn(txn: Transaction) -> int | None:
            marked = await txn.fetch_value("SELECT join_event_id FROM partial_state_rooms WHERE room_id = ?",
                                           (room_id,))
            if marked != join_event_id:
                return None
            base = await txn.fetch_value(
                "SELECT e.prev_state_group FROM event_to_state_groups s"
                " JOIN state_group_edges e ON e.state_group = s.state_group WHERE s.event_id = ?", (join_event_id,))
            if base is not None:
                roots = await txn.fetch_all(
                    "SELECT g.id FROM state_groups g LEFT JOIN state_group_edges e ON e.state_group = g.id"
                    " WHERE g.room_id = ? AND g.id >= ? AND e.state_group IS NULL", (room_id, base))
                for (group,) in roots:
                    await add_missing_group_state(txn, group, room_id, full_state)
            await room_state.add_missing_current_state(txn, room_id, full_state, memberships)
            await add_state_membership_rows(txn, room_id, [eid for (t, _), eid in full_state.items()
                                                           if t == "m.room.member"])
            await txn.execute("DELETE FROM partial_state_rooms WHERE room_id = ?", (room_id,))
            (position,) = await allocate_stream_positions(txn, EVENTS, 1)
            await txn.execute("INSERT INTO partial_state_rooms_completed (room_id, stream_ordering) VALUES (?, ?)",
                              (room_id, position))
            return position

        position = await self.db.run_interaction("complete_partial_state", txn_fn, isolation="read_committed")
        if position is not None:
            (await self._partial_rooms()).discard(room_id)
        return position


def _room(row: Sequence) -> PartialStateRoom:
    servers = decode(row[3]) if row[3] else []
    return PartialStateRoom(row[0], row[1], row[2], tuple(s for s in servers if isinstance(s, str)))
