"""The rooms' current state (`current_state_events`): the one module that writes it.

One row per (room, type, state_key) naming the event that holds that piece of state now, with
the membership of m.room.member rows. The event persister (storage/stores/events.py) keeps it in
step with every event, the partial-state completion adds what a partial join lacked, and a room
purge deletes it; each through the transaction functions below. Stores that need current state
inside their own transaction call the read functions here with their `Transaction`;
`EventStore` exposes the common reads as methods. Queries of other stores that join this table
into a larger query of their own concern are listed in docs/architecture.md ("Table owners").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from storage.database import Row, Transaction
from storage.sql import Dialect

StateKey = tuple[str, str]
StateMap = dict[StateKey, str]

# --- writing ---------------------------------------------------------------------------------


async def write_current_state(txn: Transaction, rows: Mapping[tuple[str, str, str], tuple[str, str | None]],
                              replaced_rooms: Sequence[str] = ()) -> None:
    """Set current state: (room_id, type, state_key) -> (event_id, membership). The whole current
    state of each room in `replaced_rooms` is dropped first (a join over federation replaces it)."""
    for room_id in sorted(replaced_rooms):
        await txn.execute("DELETE FROM current_state_events WHERE room_id = ?", (room_id,))
    await txn.executemany(
        "INSERT INTO current_state_events (room_id, type, state_key, event_id, membership)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id, type, state_key)"
        " DO UPDATE SET event_id = excluded.event_id, membership = excluded.membership",
        [(room, t, sk, eid, membership) for (room, t, sk), (eid, membership) in rows.items()])


async def add_missing_current_state(txn: Transaction, room_id: str, state: Mapping[StateKey, str],
                                    memberships: Mapping[str, str | None]) -> None:
    """Add the keys of `state` the room's current state lacks (`memberships`: event ID -> membership);
    keys it holds are left as they are."""
    current = await txn.fetch_all("SELECT type, state_key FROM current_state_events WHERE room_id = ?",
                                  (room_id,))
    have = {(t, sk) for t, sk in current}
    await txn.executemany(
        "INSERT INTO current_state_events (room_id, type, state_key, event_id, membership)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id, type, state_key) DO NOTHING",
        [(room_id, t, sk, eid, memberships.get(eid) if t == "m.room.member" else None)
         for (t, sk), eid in sorted(state.items()) if (t, sk) not in have])


async def delete_room_current_state(txn: Transaction, room_id: str) -> None:
    """Drop the room's current state (the room is being deleted)."""
    await txn.execute("DELETE FROM current_state_events WHERE room_id = ?", (room_id,))


# --- reading one room ------------------------------------------------------------------------


async def current_state_ids(txn: Transaction, room_id: str) -> StateMap:
    rows = await txn.fetch_all("SELECT type, state_key, event_id FROM current_state_events WHERE room_id = ?",
                               (room_id,))
    return {(r[0], r[1]): r[2] for r in rows}


async def current_state_event_id(txn: Transaction, room_id: str, event_type: str, state_key: str) -> str | None:
    return await txn.fetch_value(
        "SELECT event_id FROM current_state_events WHERE room_id = ? AND type = ? AND state_key = ?",
        (room_id, event_type, state_key))


async def membership(txn: Transaction, room_id: str, user_id: str) -> tuple[str | None, str | None]:
    """(membership, event_id) of the user's current member event in the room."""
    row = await txn.fetch_one(
        "SELECT membership, event_id FROM current_state_events"
        " WHERE room_id = ? AND type = 'm.room.member' AND state_key = ?", (room_id, user_id))
    return (row[0], row[1]) if row else (None, None)


async def members(txn: Transaction, room_id: str, memberships: Sequence[str]) -> list[str]:
    """The users whose current membership of the room is one of `memberships`."""
    clause, params = txn.dialect.in_list("membership", list(memberships))
    rows = await txn.fetch_all(
        f"SELECT state_key FROM current_state_events WHERE room_id = ? AND type = 'm.room.member' AND {clause}",
        (room_id, *params))
    return [r[0] for r in rows]


# --- reading many rooms ----------------------------------------------------------------------


async def rooms_for_user(txn: Transaction, user_id: str, memberships: Sequence[str]) -> dict[str, str]:
    """room_id -> membership for the user's current memberships among `memberships`."""
    clause, params = txn.dialect.in_list("membership", list(memberships))
    rows = await txn.fetch_all(
        f"SELECT room_id, membership FROM current_state_events WHERE type = 'm.room.member' AND state_key = ?"
        f" AND {clause}", (user_id, *params))
    return {r[0]: r[1] for r in rows}


# Reads of many rooms come as a statement and the function reading its rows, so that callers can
# batch several into one round trip (`Transaction.fetch_all_batch`).
Statement = tuple[str, tuple[Any, ...]]


def member_counts_statement(dialect: Dialect, room_ids: Sequence[str]) -> Statement:
    clause, params = dialect.in_list("room_id", list(room_ids))
    return (f"SELECT room_id, membership, COUNT(*) FROM current_state_events WHERE type = 'm.room.member'"
            f" AND {clause} GROUP BY room_id, membership", tuple(params))


def member_counts_from(rows: Sequence[Row]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for room_id, kind, count in rows:
        out.setdefault(room_id, {})[kind] = int(count)
    return out


async def member_counts(txn: Transaction, room_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """room_id -> membership -> number of users with it (rooms without members are left out)."""
    return member_counts_from(await txn.fetch_all(*member_counts_statement(txn.dialect, room_ids)))


def state_event_ids_of_types_statement(dialect: Dialect, room_ids: Sequence[str], types: Sequence[str],
                                       state_key: str | None = None) -> Statement:
    room_clause, room_params = dialect.in_list("room_id", list(room_ids))
    type_clause, type_params = dialect.in_list("type", list(types))
    key_clause, key_params = (" AND state_key = ?", (state_key,)) if state_key is not None else ("", ())
    return (f"SELECT room_id, type, state_key, event_id FROM current_state_events WHERE {room_clause}"
            f" AND {type_clause}{key_clause}", (*room_params, *type_params, *key_params))


def state_event_ids_from(rows: Sequence[Row]) -> dict[str, StateMap]:
    out: dict[str, StateMap] = {}
    for room_id, event_type, key, event_id in rows:
        out.setdefault(room_id, {})[(event_type, key)] = event_id
    return out


async def state_event_ids_of_types(txn: Transaction, room_ids: Sequence[str], types: Sequence[str], *,
                                   state_key: str | None = None) -> dict[str, StateMap]:
    """room_id -> (type, state_key) -> event_id of the rooms' current state of the given types
    (only the given `state_key` when one is given; rooms without such state are left out)."""
    return state_event_ids_from(
        await txn.fetch_all(*state_event_ids_of_types_statement(txn.dialect, room_ids, types, state_key)))


async def joined_members(txn: Transaction, room_ids: Sequence[str]) -> set[str]:
    """Everyone joined to any of these rooms now."""
    clause, params = txn.dialect.in_list("room_id", list(room_ids))
    rows = await txn.fetch_all(
        f"SELECT DISTINCT state_key FROM current_state_events WHERE type = 'm.room.member' AND membership = 'join'"
        f" AND {clause}", params)
    return {r[0] for r in rows}


async def joined_members_matching(txn: Transaction, user_id_pattern: str) -> list[tuple[str, str]]:
    """(room_id, user_id) of every joined member whose user ID matches a LIKE pattern (escaped with \\)."""
    rows = await txn.fetch_all(
        "SELECT DISTINCT room_id, state_key FROM current_state_events WHERE type = 'm.room.member'"
        " AND membership = 'join' AND state_key LIKE ? ESCAPE '\\'", (user_id_pattern,))
    return [(r[0], r[1]) for r in rows]


async def users_sharing_a_room(txn: Transaction, user_id: str, candidates: Sequence[str] | None = None) -> set[str]:
    """Users joined to a room the user is joined to (the user included when joined anywhere); with
    `candidates`, only those among them."""
    sql = ("SELECT DISTINCT o.state_key FROM current_state_events o"
           " JOIN current_state_events m ON m.room_id = o.room_id"
           " WHERE m.type = 'm.room.member' AND m.state_key = ? AND m.membership = 'join'"
           " AND o.type = 'm.room.member' AND o.membership = 'join'")
    params: tuple[object, ...] = (user_id,)
    if candidates is not None:
        if not candidates:
            return set()
        clause, extra = txn.dialect.in_list("state_key", list(candidates))
        sql += " AND o." + clause
        params += extra
    return {r[0] for r in await txn.fetch_all(sql, params)}


async def users_sharing_a_room_joined_before(txn: Transaction, user_id: str, room_id: str,
                                             stream_ordering: int) -> set[str]:
    """Users joined to a room other than `room_id` whose current membership of the user is a join
    older than `stream_ordering` (who shared a room with the user before that join); joins `events`
    for the join's position."""
    rows = await txn.fetch_all(
        "SELECT DISTINCT o.state_key FROM current_state_events m"
        " JOIN events e ON e.event_id = m.event_id"
        " JOIN current_state_events o ON o.room_id = m.room_id"
        " WHERE m.type = 'm.room.member' AND m.state_key = ? AND m.membership = 'join' AND m.room_id <> ?"
        " AND e.stream_ordering < ? AND o.type = 'm.room.member' AND o.membership = 'join'",
        (user_id, room_id, stream_ordering))
    return {r[0] for r in rows}


async def users_share_a_room(txn: Transaction, user_a: str, user_b: str) -> bool:
    row = await txn.fetch_one(
        "SELECT 1 FROM current_state_events a JOIN current_state_events b ON b.room_id = a.room_id"
        " WHERE a.type = 'm.room.member' AND a.state_key = ? AND a.membership = 'join'"
        " AND b.type = 'm.room.member' AND b.state_key = ? AND b.membership = 'join' LIMIT 1",
        (user_a, user_b))
    return row is not None
