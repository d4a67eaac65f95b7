"""Deleting rooms and room history: what the admin API's purges remove, table by table.

Every table that refers to a room's events or to the room itself is emptied here, through its
owning store's transaction functions (docs/architecture.md, "Table owners"), so that a purge
leaves no row pointing at an event that is gone. What is kept on purpose:

- state events before the purge point stay, as outliers: later events' auth chains and the
  room's state need them, and they no longer show in timelines;
- the room's forward extremities are never purged, so new events still have prev_events;
- `event_edges` rows of kept events may name purged prev_events: those become backward
  extremities (`event_backward_extremities`), the DAG's record of history we do not hold;
- `events.redacted_by` keeps naming a purged redaction, because the event stays redacted.
"""

from __future__ import annotations

from collections.abc import Sequence

from storage.database import Database, Transaction
from storage.stores import (
    account_data,
    admin,
    aliases,
    e2ee,
    events,
    key_backup,
    notifications,
    receipts,
    relations,
    reports,
    room_state,
    search,
)

BATCH = 500


class PurgeStore:
    def __init__(self, db: Database):
        self.db = db

    # --- choosing what to purge -----------------------------------------------------------
    async def get_event_position(self, event_id: str) -> tuple[str, int, int] | None:
        """(room_id, depth, stream_ordering) of an event we hold."""
        row = await self.db.fetch_one(
            "purge_event_position", "SELECT room_id, depth, stream_ordering FROM events WHERE event_id = ?",
            (event_id,))
        return None if row is None else (row[0], int(row[1]), int(row[2]))

    async def depth_at_ts(self, room_id: str, ts: int) -> int | None:
        """The depth of the room's first event sent at or after `ts`; None when there is none."""
        return await self.db.fetch_value(
            "purge_depth_at_ts",
            "SELECT MIN(depth) FROM events WHERE room_id = ? AND origin_server_ts >= ? AND outlier = ?",
            (room_id, ts, False))

    async def max_depth(self, room_id: str) -> int | None:
        return await self.db.fetch_value("purge_max_depth", "SELECT MAX(depth) FROM events WHERE room_id = ?",
                                         (room_id,))

    async def events_to_purge(self, room_id: str, before_depth: int, *, local_server: str,
                              delete_local_events: bool) -> tuple[list[str], list[str]]:
        """(events to delete, state events to keep as outliers) before `before_depth`.

        Forward extremities are never chosen; local users' events only with `delete_local_events`.
        """
        rows = await self.db.fetch_all(
            "purge_candidates",
            "SELECT e.event_id, e.state_key, e.sender FROM events e WHERE e.room_id = ? AND e.depth < ?"
            " AND NOT EXISTS (SELECT 1 FROM event_forward_extremities f"
            " WHERE f.room_id = e.room_id AND f.event_id = e.event_id)",
            (room_id, before_depth))
        deleted, kept_state = [], []
        for event_id, state_key, sender in rows:
            if not delete_local_events and sender.endswith(":" + local_server):
                continue
            (kept_state if state_key is not None else deleted).append(event_id)
        return deleted, kept_state

    # --- purging history --------------------------------------------------------------------
    async def purge_events(self, room_id: str, event_ids: Sequence[str], keep_as_outliers: Sequence[str]) -> int:
        """Delete events (in batches, each its own transaction) and turn kept state into outliers.

        Returns how many events were deleted. Idempotent: rerunning after a crash finishes the job.
        """
        deleted = 0
        for start in range(0, len(event_ids), BATCH):
            batch = list(event_ids[start:start + BATCH])
            deleted += await self.db.run_interaction("purge_events", _purge_event_batch, room_id, batch)
        for start in range(0, len(keep_as_outliers), BATCH):
            batch = list(keep_as_outliers[start:start + BATCH])
            await self.db.run_interaction("purge_mark_outliers", _mark_outliers, batch)
        return deleted

    async def purge_unreferenced_state_groups(self, room_id: str) -> int:
        """Delete the room's state groups that no event and no other group depends on."""
        return await self.db.run_interaction("purge_state_groups", _purge_state_groups, room_id)

    # --- deleting a whole room ---------------------------------------------------------------
    async def delete_room(self, room_id: str) -> int:
        """Every row of the room, in one transaction; returns how many events it had."""
        return await self.db.run_interaction("purge_room", _delete_room, room_id)

    async def room_event_ids(self, room_id: str) -> list[str]:
        rows = await self.db.fetch_all("purge_room_event_ids", "SELECT event_id FROM events WHERE room_id = ?",
                                       (room_id,))
        return [r[0] for r in rows]

    async def room_exists(self, room_id: str) -> bool:
        return await self.db.fetch_value("purge_room_exists", "SELECT 1 FROM rooms WHERE room_id = ?",
                                         (room_id,)) is not None


async def _purge_event_batch(txn: Transaction, room_id: str, event_ids: list[str]) -> int:
    await events.delete_state_group_links_txn(txn, event_ids)
    await notifications.delete_event_push_actions_txn(txn, event_ids)
    await events.delete_txn_ids_txn(txn, event_ids)
    await relations.delete_event_relations_txn(txn, event_ids)
    await search.delete_events_search_txn(txn, event_ids)
    await receipts.delete_event_receipts_txn(txn, event_ids)
    await reports.delete_event_reports_txn(txn, event_ids)
    return await events.delete_events_txn(txn, room_id, event_ids)


async def _mark_outliers(txn: Transaction, event_ids: list[str]) -> None:
    await events.mark_outliers_txn(txn, event_ids)
    # Outliers are not in any timeline, so nothing may count or search them either.
    await notifications.delete_event_push_actions_txn(txn, event_ids)
    await search.delete_events_search_txn(txn, event_ids)


async def _purge_state_groups(txn: Transaction, room_id: str) -> int:
    removed = 0
    while True:
        rows = await txn.fetch_all(
            "SELECT g.id FROM state_groups g WHERE g.room_id = ?"
            " AND NOT EXISTS (SELECT 1 FROM event_to_state_groups m WHERE m.state_group = g.id)"
            " AND NOT EXISTS (SELECT 1 FROM state_group_edges c WHERE c.prev_state_group = g.id)",
            (room_id,))
        if not rows:
            return removed
        groups = [r[0] for r in rows]
        await events.delete_state_groups_txn(txn, groups)
        removed += len(groups)


async def _delete_room(txn: Transaction, room_id: str) -> int:
    # Every row of the room but its block list (blocked_rooms), which outlives the room.
    count = int(await txn.fetch_value("SELECT COUNT(*) FROM events WHERE room_id = ?", (room_id,)) or 0)
    await events.delete_room_state_group_links_txn(txn, room_id)
    await events.delete_room_state_groups_txn(txn, room_id)
    await room_state.delete_room_current_state(txn, room_id)
    await events.delete_room_txn_ids_txn(txn, room_id)
    await receipts.delete_room_receipts_txn(txn, room_id)
    await notifications.delete_room_notifications_txn(txn, room_id)
    await events.delete_room_events_txn(txn, room_id)
    await relations.delete_room_relations_txn(txn, room_id)
    await search.delete_room_search_txn(txn, room_id)
    await account_data.delete_room_account_data_txn(txn, room_id)
    await aliases.delete_room_aliases_txn(txn, room_id)
    await reports.delete_room_reports_txn(txn, room_id)
    await e2ee.delete_room_membership_changes_txn(txn, room_id)
    await key_backup.delete_room_key_backups_txn(txn, room_id)
    await admin.delete_room_server_notice_txn(txn, room_id)
    await events.delete_room_row_txn(txn, room_id)
    return count
