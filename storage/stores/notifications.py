"""Push actions (who is notified of which event) and the unread counts derived from them.

Counts live in `event_push_counts`, one row per (user, room, thread) with something unread. They
are incremented as events are evaluated and recomputed from `event_push_actions` when a read
receipt moves or a counted event is redacted. The caller serialises these writes (the push
evaluation stage holds one lock around batch writes and recounts), so an increment and a
recomputation of the same row never interleave.

A user's read-up-to point in a thread is the later of their unthreaded receipt and their receipt
in that thread, over both `m.read` and `m.read.private`; without an unthreaded receipt, the
unthreaded point is their membership event in the room (so an invite stops counting once joined).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction
from storage.stores.stages import save_stage_position_txn

MAIN_THREAD = "main"
UNTHREADED = ""
READ_RECEIPT_TYPES = ("m.read", "m.read.private")
IGNORED_USER_LIST = "m.ignored_user_list"
# Below every stream ordering, including backfilled (negative) ones.
BEFORE_EVERYTHING = -(2**62)


@dataclass(frozen=True, slots=True)
class PushActionRow:
    user_id: str
    actions: list[Any]
    highlight: bool


@dataclass(frozen=True, slots=True)
class StoredNotification:
    event_id: str
    room_id: str
    thread_id: str
    stream_ordering: int
    received_ts: int
    actions: list[Any]
    highlight: bool
    user_id: str = ""


@dataclass(frozen=True, slots=True)
class EventPushActions:
    """Who is notified of one event."""

    room_id: str
    event_id: str
    thread_id: str
    stream_ordering: int
    received_ts: int
    rows: Sequence[PushActionRow]


@dataclass(frozen=True, slots=True)
class UnreadCounts:
    notifications: int
    highlights: int


class NotificationStore:
    def __init__(self, db: Database):
        self.db = db

    # --- writes --------------------------------------------------------------------------
    async def add_push_actions(self, notified: Sequence[EventPushActions], *, stage: str, upto: int) -> None:
        """Record who is notified of each event, count them unread, and move the stage to `upto`.

        One transaction for a whole batch of events, so a crash either keeps all of it with the
        stage's new position or none of it.
        """
        # Recipients share a handful of action lists: encode each once.
        encoded: dict[int, str] = {}
        action_rows, count_rows = [], []
        for entry in notified:
            for r in entry.rows:
                if id(r.actions) not in encoded:
                    encoded[id(r.actions)] = encode_str(r.actions)
                action_rows.append((r.user_id, entry.event_id, entry.room_id, entry.thread_id, entry.stream_ordering,
                                    entry.received_ts, encoded[id(r.actions)], r.highlight))
                count_rows.append((r.user_id, entry.room_id, entry.thread_id, 1 if r.highlight else 0))

        async def txn_fn(txn: Transaction) -> None:
            await txn.executemany(
                "INSERT INTO event_push_actions (user_id, event_id, room_id, thread_id, stream_ordering,"
                " received_ts, actions, highlight) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, event_id) DO NOTHING", action_rows)
            await txn.executemany(
                "INSERT INTO event_push_counts (user_id, room_id, thread_id, notification_count, highlight_count)"
                " VALUES (?, ?, ?, 1, ?) ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET"
                " notification_count = event_push_counts.notification_count + 1,"
                " highlight_count = event_push_counts.highlight_count + excluded.highlight_count", count_rows)
            await save_stage_position_txn(txn, stage, upto)

        # Counts and actions are redone from the events after a crash that loses them (the stage
        # position is in the same transaction), so this commit need not wait for the disk.
        await self.db.run_interaction("add_push_actions", txn_fn, durable=False)

    async def get_push_actions_for_events(self, event_ids: Sequence[str], user_ids: Sequence[str]
                                          ) -> list[StoredNotification]:
        """The stored notifications of these users for these events, in stream order."""
        if not event_ids or not user_ids:
            return []

        async def txn_fn(txn: Transaction) -> list[StoredNotification]:
            events_clause, event_params = txn.dialect.in_list("event_id", list(event_ids))
            users_clause, user_params = txn.dialect.in_list("user_id", list(user_ids))
            rows = await txn.fetch_all(
                "SELECT event_id, room_id, thread_id, stream_ordering, received_ts, actions, highlight, user_id"
                f" FROM event_push_actions WHERE {events_clause} AND {users_clause}"
                " ORDER BY stream_ordering, user_id", (*event_params, *user_params))
            return [StoredNotification(r[0], r[1], r[2], int(r[3]), int(r[4]), decode(r[5]), bool(r[6]),
                                       user_id=r[7]) for r in rows]

        return await self.db.run_interaction("get_push_actions_for_events", txn_fn, write=False)

    async def recount(self, room_id: str, user_ids: Iterable[str]) -> dict[str, dict[str, UnreadCounts]]:
        """Recompute the users' counts in the room from their receipts; returns {user: {thread: counts}}."""
        users = sorted(set(user_ids))

        async def txn_fn(txn: Transaction) -> dict[str, dict[str, UnreadCounts]]:
            out = {}
            for user_id in users:
                counts = await _count_unread(txn, user_id, room_id)
                await txn.execute("DELETE FROM event_push_counts WHERE user_id = ? AND room_id = ?",
                                  (user_id, room_id))
                await txn.executemany(
                    "INSERT INTO event_push_counts (user_id, room_id, thread_id, notification_count,"
                    " highlight_count) VALUES (?, ?, ?, ?, ?)",
                    [(user_id, room_id, thread, c.notifications, c.highlights) for thread, c in counts.items()],
                )
                out[user_id] = counts
            return out

        return await self.db.run_interaction("recount_unread", txn_fn)

    async def remove_push_actions_for_event(self, event_id: str) -> list[str]:
        """Forget who was notified of an event (it was redacted); returns those users."""

        async def txn_fn(txn: Transaction) -> list[str]:
            rows = await txn.fetch_all("SELECT user_id FROM event_push_actions WHERE event_id = ?", (event_id,))
            await txn.execute("DELETE FROM event_push_actions WHERE event_id = ?", (event_id,))
            return [row[0] for row in rows]

        return await self.db.run_interaction("remove_push_actions_for_event", txn_fn)

    # --- reads ---------------------------------------------------------------------------
    async def get_counts(self, user_id: str, room_ids: Sequence[str]) -> dict[str, dict[str, UnreadCounts]]:
        """{room_id: {thread_id: counts}} for the rooms with anything unread."""
        if not room_ids:
            return {}

        async def txn_fn(txn: Transaction) -> dict[str, dict[str, UnreadCounts]]:
            out: dict[str, dict[str, UnreadCounts]] = {}
            # Bounded IN lists keep SQLite's statements small in rooms-heavy accounts; PostgreSQL
            # takes one array parameter, so one statement whatever the number.
            size = len(room_ids) if txn.dialect.is_postgres else 500
            for start in range(0, len(room_ids), size):
                chunk = list(room_ids[start:start + size])
                # On PostgreSQL one array parameter: the same statement text for any number of rooms.
                clause, params = txn.dialect.in_list("room_id", chunk)
                rows = await txn.fetch_all(
                    "SELECT room_id, thread_id, notification_count, highlight_count FROM event_push_counts"
                    f" WHERE user_id = ? AND {clause}", (user_id, *params))
                for room_id, thread_id, notifications, highlights in rows:
                    out.setdefault(room_id, {})[thread_id] = UnreadCounts(int(notifications), int(highlights))
            return out

        return await self.db.run_interaction("get_unread_counts", txn_fn, write=False, single_statement=True)

    async def get_total_unread(self, user_id: str) -> int:
        """The user's unread notifications across all rooms (the push badge)."""
        total = await self.db.fetch_value(
            "get_total_unread", "SELECT SUM(notification_count) FROM event_push_counts WHERE user_id = ?",
            (user_id,))
        return int(total or 0)

    async def get_notifications(self, user_id: str, *, before: int | None, limit: int,
                                only_highlight: bool) -> list[StoredNotification]:
        """The user's notifications, newest first, below stream ordering `before`."""
        sql = ("SELECT event_id, room_id, thread_id, stream_ordering, received_ts, actions, highlight"
               " FROM event_push_actions WHERE user_id = ?")
        params: list[Any] = [user_id]
        if before is not None:
            sql += " AND stream_ordering < ?"
            params.append(before)
        if only_highlight:
            sql += " AND highlight = ?"
            params.append(True)
        sql += " ORDER BY stream_ordering DESC LIMIT ?"
        params.append(limit)
        rows = await self.db.fetch_all("get_notifications", sql, params)
        return [StoredNotification(r[0], r[1], r[2], int(r[3]), int(r[4]), decode(r[5]), bool(r[6]))
                for r in rows]

    async def get_ignored_users(self, user_ids: Sequence[str]) -> dict[str, frozenset[str]]:
        """{user: the users they ignore} from `m.ignored_user_list` account data (all given users)."""
        out: dict[str, frozenset[str]] = {user_id: frozenset() for user_id in user_ids}

        async def txn_fn(txn: Transaction) -> None:
            for start in range(0, len(user_ids), 500):
                chunk = list(user_ids[start:start + 500])
                marks = ", ".join("?" for _ in chunk)
                rows = await txn.fetch_all(
                    "SELECT user_id, content FROM account_data WHERE account_data_type = ?"
                    f" AND user_id IN ({marks})", (IGNORED_USER_LIST, *chunk))
                for user_id, content in rows:
                    ignored = decode(content).get("ignored_users")
                    if isinstance(ignored, dict):
                        out[user_id] = frozenset(k for k in ignored if isinstance(k, str))

        if user_ids:
            await self.db.run_interaction("get_ignored_users", txn_fn, write=False)
        return out

    async def get_read_positions(self, user_id: str, room_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """{room_id: {thread_id or '' for unthreaded: stream ordering read up to}}."""
        if not room_ids:
            return {}

        async def txn_fn(txn: Transaction) -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            for start in range(0, len(room_ids), 500):
                chunk = list(room_ids[start:start + 500])
                marks = ", ".join("?" for _ in chunk)
                rows = await txn.fetch_all(
                    "SELECT r.room_id, r.thread_id, MAX(e.stream_ordering) FROM receipts AS r"
                    " JOIN events AS e ON e.event_id = r.event_id"
                    f" WHERE r.user_id = ? AND r.receipt_type IN (?, ?) AND r.room_id IN ({marks})"
                    " GROUP BY r.room_id, r.thread_id", (user_id, *READ_RECEIPT_TYPES, *chunk))
                for room_id, thread_id, position in rows:
                    out.setdefault(room_id, {})[thread_id] = int(position)
            return out

        return await self.db.run_interaction("get_read_positions", txn_fn, write=False)


# --- for other stores' transactions (purge, erasure) -----------------------------------------


async def delete_user_notifications_txn(txn: Transaction, user_id: str) -> None:
    """Drop the user's push actions and unread counts (erasure)."""
    await txn.execute("DELETE FROM event_push_actions WHERE user_id = ?", (user_id,))
    await txn.execute("DELETE FROM event_push_counts WHERE user_id = ?", (user_id,))


async def delete_room_notifications_txn(txn: Transaction, room_id: str) -> None:
    """Drop the room's push actions and unread counts (the room is being deleted)."""
    await txn.execute("DELETE FROM event_push_actions WHERE room_id = ?", (room_id,))
    await txn.execute("DELETE FROM event_push_counts WHERE room_id = ?", (room_id,))


async def delete_event_push_actions_txn(txn: Transaction, event_ids: Sequence[str]) -> None:
    """Drop the push actions of these events (purged, or kept only as outliers that nothing counts)."""
    clause, params = txn.dialect.in_list("event_id", list(event_ids))
    await txn.execute(f"DELETE FROM event_push_actions WHERE {clause}", params)


def read_up_to(positions: dict[str, int], thread_id: str) -> int:
    """The stream ordering a user has read up to in a thread, given their receipt positions in the room."""
    return max(positions.get(UNTHREADED, BEFORE_EVERYTHING), positions.get(thread_id, BEFORE_EVERYTHING))


async def _count_unread(txn: Transaction, user_id: str, room_id: str) -> dict[str, UnreadCounts]:
    rows = await txn.fetch_all(
        "SELECT r.thread_id, MAX(e.stream_ordering) FROM receipts AS r JOIN events AS e ON e.event_id = r.event_id"
        " WHERE r.user_id = ? AND r.room_id = ? AND r.receipt_type IN (?, ?) GROUP BY r.thread_id",
        (user_id, room_id, *READ_RECEIPT_TYPES))
    positions = {thread_id: int(position) for thread_id, position in rows}
    if UNTHREADED in positions:
        unthreaded = positions[UNTHREADED]
    else:
        # Without an unthreaded receipt the user has read up to their membership event (their
        # join), as Synapse counts: the invite that brought them in is not unread once joined.
        joined_at = await txn.fetch_value(
            "SELECT e.stream_ordering FROM current_state_events AS c JOIN events AS e ON e.event_id = c.event_id"
            " WHERE c.room_id = ? AND c.type = 'm.room.member' AND c.state_key = ?", (room_id, user_id))
        unthreaded = BEFORE_EVERYTHING if joined_at is None else int(joined_at)
    counted = await txn.fetch_all(
        "SELECT thread_id, COUNT(*), SUM(CASE WHEN highlight THEN 1 ELSE 0 END) FROM event_push_actions"
        " WHERE user_id = ? AND room_id = ? AND stream_ordering > ? GROUP BY thread_id",
        (user_id, room_id, unthreaded))
    counts = {thread: UnreadCounts(int(n), int(h or 0)) for thread, n, h in counted}
    # A thread receipt ahead of the unthreaded one narrows that thread further.
    for thread_id, position in positions.items():
        if thread_id == UNTHREADED or position <= unthreaded or thread_id not in counts:
            continue
        row = await txn.fetch_one(
            "SELECT COUNT(*), SUM(CASE WHEN highlight THEN 1 ELSE 0 END) FROM event_push_actions"
            " WHERE user_id = ? AND room_id = ? AND thread_id = ? AND stream_ordering > ?",
            (user_id, room_id, thread_id, position))
        counts[thread_id] = UnreadCounts(int(row[0]), int(row[1] or 0)) if row else UnreadCounts(0, 0)
    return {thread: c for thread, c in counts.items() if c.notifications or c.highlights}
