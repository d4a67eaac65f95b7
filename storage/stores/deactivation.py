"""What deactivating and erasing an account removes, across the tables that hold a user's data.

Deactivation is the one operation that must reach into every area at once. Each step runs as one
transaction, and every table is changed through its owning module's transaction functions
(docs/architecture.md, "Table owners"); this module only reads.
"""

from __future__ import annotations

from collections.abc import Iterable

from homeserver.events.redaction import redact
from homeserver.events.room_versions import get_room_version
from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction
from storage.stores import (
    account_data,
    client_ips,
    events,
    filters,
    key_backup,
    notifications,
    presence,
    profiles,
    push_rules,
    receipts,
    search,
    uia_sessions,
)


class DeactivationStore:
    def __init__(self, db: Database):
        self.db = db

    async def purge_settings(self, user_id: str) -> None:
        """Account data (global and per room), push rules and server-side key backups (as Synapse)."""

        async def txn_fn(txn: Transaction) -> None:
            await account_data.delete_user_account_data_txn(txn, user_id)
            await push_rules.delete_user_push_rules_txn(txn, user_id)
            await key_backup.delete_user_key_backups_txn(txn, user_id)

        await self.db.run_interaction("purge_user_settings", txn_fn)

    async def erase_personal_data(self, user_id: str) -> list[str]:
        """Erase what identifies the user: profile, status message, IP/user-agent log, their own
        member events' display name and avatar (stored in redacted form), the search index of
        their events, and traces of their activity (read receipts, notifications, filters,
        transaction IDs, interactive-auth sessions). Returns the IDs of the rewritten events, for
        caches to drop."""

        async def txn_fn(txn: Transaction) -> list[str]:
            await profiles.erase_profile_txn(txn, user_id)
            await presence.clear_status_msg_txn(txn, user_id)
            await client_ips.delete_user_ips_txn(txn, user_id)
            await events.erase_member_profiles_txn(txn, user_id)
            await search.delete_sender_search_txn(txn, user_id)
            await _erase_activity(txn, user_id)
            rows = await txn.fetch_all(
                "SELECT j.event_id, j.json, r.room_version FROM events e JOIN event_json j USING (event_id)"
                " JOIN rooms r ON r.room_id = e.room_id WHERE e.type = 'm.room.member' AND e.state_key = ?",
                (user_id,))
            rewritten = []
            for event_id, raw, version in rows:
                pdu = decode(raw)
                content = pdu.get("content")
                if not isinstance(content, dict) or not ({"displayname", "avatar_url"} & content.keys()):
                    continue
                # The redacted form keeps the membership and keeps the signatures valid.
                pruned = redact(pdu, get_room_version(version))
                await events.set_event_json_txn(txn, event_id, encode_str(pruned))
                rewritten.append(event_id)
            return rewritten

        return await self.db.run_interaction("erase_personal_data", txn_fn)

    async def get_erased_users(self, user_ids: Iterable[str]) -> set[str]:
        """Which of these users asked for erasure when they deactivated."""
        wanted = sorted(set(user_ids))
        if not wanted:
            return set()

        async def txn_fn(txn: Transaction) -> set[str]:
            clause, params = txn.dialect.in_list("user_id", wanted)
            rows = await txn.fetch_all(f"SELECT user_id FROM users WHERE erased = ? AND {clause}", (True, *params))
            return {r[0] for r in rows}

        return await self.db.run_interaction("get_erased_users", txn_fn, write=False)


async def _erase_activity(txn: Transaction, user_id: str) -> None:
    """What the user did rather than said: receipts, notifications, filters, transaction IDs, UIA sessions."""
    await receipts.delete_user_receipts_txn(txn, user_id)
    await notifications.delete_user_notifications_txn(txn, user_id)
    await filters.delete_user_filters_txn(txn, user_id)
    await events.delete_user_txn_ids_txn(txn, user_id)
    await uia_sessions.delete_user_uia_sessions_txn(txn, user_id)
