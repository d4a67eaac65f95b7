"""Queries behind the room directory (/publicRooms, /directory/list/room) and the user directory."""

from __future__ import annotations

from collections.abc import Sequence

from storage.database import Database, Transaction
from storage.stores import events, room_state

# The state that a public room list entry is built from; all have an empty state key.
DIRECTORY_STATE_TYPES = (
    "m.room.create", "m.room.name", "m.room.topic", "m.room.canonical_alias", "m.room.avatar",
    "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access",
)
# Enough rows for ranking in Python to find the best matches of any realistic search term.
USER_CANDIDATE_LIMIT = 1000


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class DirectoryStore:
    def __init__(self, db: Database):
        self.db = db

    # --- room directory ----------------------------------------------------------------
    async def get_room_visibility(self, room_id: str) -> bool | None:
        """Whether the room is published in the directory; None for an unknown room."""
        row = await self.db.fetch_one("room_visibility", "SELECT is_public FROM rooms WHERE room_id = ?", (room_id,))
        return None if row is None else bool(row[0])

    async def set_room_visibility(self, room_id: str, public: bool) -> None:
        await self.db.run_interaction("update_rooms", events.set_room_public_txn, room_id, public)

    async def get_public_rooms(self, network: tuple[str, str] | None = None, *,
                               all_networks: bool = False) -> list[tuple[str, int]]:
        """(room_id, joined member count) of published rooms that still have members.

        The server's own list by default; one application service network's list when `network`
        is (appservice_id, network_id); both kinds together with `all_networks`.
        """
        main = "SELECT room_id FROM rooms WHERE is_public = ?"
        networks = "SELECT room_id FROM appservice_room_list"
        params: tuple[object, ...]
        if all_networks:
            published, params = f"{main} UNION {networks}", (True,)
        elif network is not None:
            published, params = f"{networks} WHERE appservice_id = ? AND network_id = ?", network
        else:
            published, params = main, (True,)
        rows = await self.db.fetch_all(
            "public_rooms",
            "SELECT c.room_id, COUNT(c.state_key) FROM current_state_events c"
            f" WHERE c.room_id IN ({published}) AND c.type = 'm.room.member' AND c.membership = 'join'"
            " GROUP BY c.room_id",
            params,
        )
        return [(row[0], int(row[1])) for row in rows]

    async def set_network_room_visibility(self, appservice_id: str, network_id: str, room_id: str,
                                          public: bool) -> None:
        """Publish or unpublish a room in an application service network's directory."""
        keys = {"appservice_id": appservice_id, "network_id": network_id, "room_id": room_id}
        if public:
            await self.db.simple_upsert("appservice_room_list", keys, {})
        else:
            await self.db.simple_delete("appservice_room_list", keys)

    async def get_directory_state(self, room_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """room_id -> event type -> event ID of the DIRECTORY_STATE_TYPES state of the rooms."""

        if not room_ids:
            return {}
        state = await self.db.run_interaction("directory_state", room_state.state_event_ids_of_types, room_ids,
                                              DIRECTORY_STATE_TYPES, state_key="", write=False)
        return {room_id: {event_type: event_id for (event_type, _), event_id in by_key.items()}
                for room_id, by_key in state.items()}

    # --- user directory ----------------------------------------------------------------
    async def search_users(self, searcher: str, words: Sequence[str], *, all_users: bool
                           ) -> list[tuple[str, str | None, str | None]]:
        """(user_id, displayname, avatar_url) of users the searcher may find whose ID or display
        name contains every word; a superset of the final matches, which the caller ranks.

        Findable are users who share a joined room with the searcher or are joined to a public room
        (other servers' users too, named as in their member event), and with `all_users` every
        active local user as well. A room is public when anyone may join it or
        read it (join rule `public`, or history visibility `world_readable`), as Synapse judges it;
        publication in the room directory does not make an invite-only room's members findable.
        """

        async def txn_fn(txn: Transaction) -> list[tuple[str, str | None, str | None]]:
            params: list[object] = []
            match = member_match = ""
            for word in words:
                pattern = f"%{_like_escape(word)}%"
                match += (" AND (lower(u.user_id) LIKE ? ESCAPE '\\'"
                          " OR lower(COALESCE(p.displayname, '')) LIKE ? ESCAPE '\\')")
                member_match += (" AND (lower(c.state_key) LIKE ? ESCAPE '\\'"
                                 " OR lower(COALESCE(p.displayname, m.display_name, '')) LIKE ? ESCAPE '\\')")
                params += [pattern, pattern]
            out: dict[str, tuple[str, str | None, str | None]] = {}
            if all_users:
                rows = await txn.fetch_all(
                    "SELECT u.user_id, p.displayname, p.avatar_url FROM users u"
                    " LEFT JOIN profiles p ON p.user_id = u.user_id"
                    f" WHERE u.deactivated = ? AND u.is_guest = ?{match}"
                    f" ORDER BY u.user_id LIMIT {USER_CANDIDATE_LIMIT}",
                    (False, False, *params))
                out = {r[0]: (r[0], r[1], r[2]) for r in rows}
            if txn.dialect.is_postgres:
                join_rule = "(j.json::jsonb -> 'content' ->> 'join_rule')"
                visibility = "(j.json::jsonb -> 'content' ->> 'history_visibility')"
            else:
                join_rule = "json_extract(j.json, '$.content.join_rule')"
                visibility = "json_extract(j.json, '$.content.history_visibility')"
            # Local users by their profile; other servers' users by their member event in the room.
            rows = await txn.fetch_all(
                "WITH findable_rooms AS ("
                " SELECT room_id FROM current_state_events WHERE type = 'm.room.member' AND state_key = ?"
                " AND membership = 'join'"
                " UNION SELECT c.room_id FROM current_state_events c JOIN event_json j ON j.event_id = c.event_id"
                f" WHERE c.state_key = '' AND ((c.type = 'm.room.join_rules' AND {join_rule} = 'public')"
                f" OR (c.type = 'm.room.history_visibility' AND {visibility} = 'world_readable')))"
                " SELECT DISTINCT c.state_key, COALESCE(p.displayname, m.display_name),"
                " COALESCE(p.avatar_url, m.avatar_url) FROM current_state_events c"
                " JOIN findable_rooms f ON f.room_id = c.room_id"
                " LEFT JOIN users u ON u.user_id = c.state_key"
                " LEFT JOIN profiles p ON p.user_id = c.state_key"
                " LEFT JOIN room_memberships m ON m.event_id = c.event_id"
                " WHERE c.type = 'm.room.member' AND c.membership = 'join'"
                " AND ((u.user_id IS NOT NULL AND u.deactivated = ?) OR (u.user_id IS NULL AND m.event_id IS NOT NULL))"
                f"{member_match} ORDER BY c.state_key LIMIT {USER_CANDIDATE_LIMIT}",
                (searcher, False, *params))
            for user_id, displayname, avatar_url in rows:
                out.setdefault(user_id, (user_id, displayname, avatar_url))
            return sorted(out.values())[:USER_CANDIDATE_LIMIT]

        return await self.db.run_interaction("search_user_directory", txn_fn, write=False)
