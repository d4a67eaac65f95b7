"""What the admin API reads and writes beyond the other stores: the admin views of `users`,
third-party and external identifiers, rate-limit overrides, room blocks, the server-notice
rooms and the durable state of long admin jobs (room deletion, history purges).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction
from storage.stores import users


class ExternalIdInUseError(Exception):
    """The (auth_provider, external_id) pair already belongs to another user."""


class ThreepidInUseError(Exception):
    """The (medium, address) pair already belongs to another user."""


# Sort keys of the admin user list, as Synapse names them, to the SQL expression they sort by.
USER_ORDER_COLUMNS = {
    "name": "u.user_id",
    "displayname": "p.displayname",
    "is_guest": "u.is_guest",
    "admin": "u.admin",
    "deactivated": "u.deactivated",
    "user_type": "u.user_type",
    "avatar_url": "p.avatar_url",
    "shadow_banned": "u.shadow_banned",
    "creation_ts": "u.created_ts",
    "last_seen_ts": "last_seen_ts",
    "locked": "u.locked",
}


@dataclass(frozen=True, slots=True)
class UserFilter:
    user_id: str | None = None
    name: str | None = None
    guests: bool = True
    deactivated: bool | None = False
    admins: bool | None = None
    locked: bool = False
    not_user_types: tuple[str, ...] = ()


# The state the room list shows: name, alias, encryption, join rules and the like.
_SUMMARY_TYPES = ("m.room.name", "m.room.canonical_alias", "m.room.topic", "m.room.avatar", "m.room.encryption",
                  "m.room.join_rules", "m.room.guest_access", "m.room.history_visibility", "m.room.create")

_ADMIN_USER_COLUMNS = (
    "u.user_id, u.user_type, u.is_guest, u.admin, u.deactivated, u.shadow_banned, p.displayname, p.avatar_url,"
    " u.created_ts, u.erased, (SELECT MAX(last_seen) FROM user_ips i WHERE i.user_id = u.user_id) AS last_seen_ts,"
    " u.locked, u.suspended, u.appservice_id"
)


@dataclass(frozen=True, slots=True)
class AdminUserRow:
    """A user as the admin API sees it: account flags, profile and the last sighting of any device."""
    user_id: str
    user_type: str | None
    is_guest: bool
    admin: bool
    deactivated: bool
    shadow_banned: bool
    displayname: str | None
    avatar_url: str | None
    creation_ts: int
    erased: bool
    last_seen_ts: int | None
    locked: bool
    suspended: bool
    appservice_id: str | None


def _admin_user(row: tuple[Any, ...]) -> AdminUserRow:
    (user_id, user_type, is_guest, admin, deactivated, shadow_banned, displayname, avatar_url, creation_ts, erased,
     last_seen_ts, locked, suspended, appservice_id) = row
    return AdminUserRow(user_id, user_type, bool(is_guest), bool(admin), bool(deactivated), bool(shadow_banned),
                        displayname, avatar_url, creation_ts, bool(erased), last_seen_ts, bool(locked),
                        bool(suspended), appservice_id)


@dataclass(frozen=True, slots=True)
class ThreepidRow:
    """A third-party identifier bound to a user (`user_threepids`)."""
    medium: str
    address: str
    validated_at: int
    added_at: int


@dataclass(frozen=True, slots=True)
class ExternalIdRow:
    """An identity at an external auth provider (SSO) linked to a user."""
    auth_provider: str
    external_id: str


def _collect_mxc(value: Any, found: set[str]) -> None:
    if isinstance(value, str):
        if value.startswith("mxc://"):
            found.add(value)
    elif isinstance(value, dict):
        for item in value.values():
            _collect_mxc(item, found)
    elif isinstance(value, list):
        for item in value:
            _collect_mxc(item, found)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# `order_by` of the users' media statistics, as Synapse names them.
MEDIA_STATISTICS_ORDER_COLUMNS = {"user_id": "m.user_id", "displayname": "p.displayname",
                                  "media_length": "COALESCE(SUM(m.media_length), 0)", "media_count": "COUNT(*)"}


@dataclass(frozen=True, slots=True)
class RoomSummaryRow:
    """A room with its member and state counts; `state` maps each summary state type (name, alias,
    topic, avatar, encryption, join rules, guest access, history visibility, create) to its content."""
    room_id: str
    version: str
    creator: str | None
    public: bool
    joined_members: int
    joined_local_members: int
    state_events: int
    state: dict[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class AdminTaskRow:
    """The durable state of a long admin job; `params` and `result` are the job's own JSON documents."""
    task_id: str
    action: str
    resource_id: str
    status: str
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    created_ts: int
    updated_ts: int


@dataclass(frozen=True, slots=True)
class UserMediaStatistics:
    """How many local media items a user uploaded, and their total size in bytes."""
    user_id: str
    displayname: str | None
    media_count: int
    media_length: int


class AdminStore:
    def __init__(self, db: Database):
        self.db = db

    # --- users ---------------------------------------------------------------------------
    async def get_user_admin_view(self, user_id: str) -> AdminUserRow | None:
        """One user with profile, flags and last sighting, as the admin API shows users."""
        row = await self.db.fetch_one(
            "admin_get_user",
            f"SELECT {_ADMIN_USER_COLUMNS} FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id"
            " WHERE u.user_id = ?",
            (user_id,),
        )
        return None if row is None else _admin_user(row)

    async def list_users(self, user_filter: UserFilter, *, order_by: str, backwards: bool, offset: int,
                         limit: int) -> tuple[list[AdminUserRow], int]:
        """A page of users matching the filter, and how many match in all."""
        clauses: list[str] = []
        params: list[Any] = []
        if user_filter.name:
            pattern = _like_escape(user_filter.name.lower())
            clauses.append("(lower(u.user_id) LIKE ? ESCAPE '\\' OR lower(p.displayname) LIKE ? ESCAPE '\\')")
            params += [f"@%{pattern}%:%", f"%{pattern}%"]
        elif user_filter.user_id:
            clauses.append("lower(u.user_id) LIKE ? ESCAPE '\\'")
            params.append(f"%{_like_escape(user_filter.user_id.lower())}%")
        if not user_filter.guests:
            clauses.append("u.is_guest = ?")
            params.append(False)
        if user_filter.deactivated is not None:
            clauses.append("u.deactivated = ?")
            params.append(user_filter.deactivated)
        if not user_filter.locked:
            clauses.append("u.locked = ?")
            params.append(False)
        if user_filter.admins is not None:
            clauses.append("u.admin = ?")
            params.append(user_filter.admins)
        if user_filter.not_user_types:
            named = [t for t in user_filter.not_user_types if t]
            if named:
                marks = ", ".join("?" for _ in named)
                clauses.append(f"(u.user_type IS NULL OR u.user_type NOT IN ({marks}))")
                params += named
            if "" in user_filter.not_user_types:
                clauses.append("u.user_type IS NOT NULL")
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        direction = "DESC" if backwards else "ASC"
        column = USER_ORDER_COLUMNS[order_by]
        # NULLs sort as the smallest value on both engines, so pages are stable and alike.
        nulls = "NULLS FIRST" if not backwards else "NULLS LAST"
        sql = (
            f"SELECT {_ADMIN_USER_COLUMNS} FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id{where}"
            f" ORDER BY {column} {direction} {nulls}, u.user_id ASC LIMIT ? OFFSET ?"
        )
        count_sql = f"SELECT COUNT(*) FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id{where}"

        async def txn_fn(txn: Transaction) -> tuple[list[AdminUserRow], int]:
            total = int(await txn.fetch_value(count_sql, tuple(params)))
            rows = await txn.fetch_all(sql, (*params, limit, offset))
            return [_admin_user(r) for r in rows], total

        return await self.db.run_interaction("admin_list_users", txn_fn, write=False)

    async def set_user_flag(self, user_id: str, flag: str, value: bool) -> None:
        """Set one of the admin-managed flags of a user: locked, suspended, shadow_banned."""
        if flag not in users.ADMIN_FLAGS:
            raise ValueError(flag)
        await self.db.run_interaction("update_users", users.set_user_flag_txn, user_id, flag, value)

    async def get_suspended_users(self) -> set[str]:
        rows = await self.db.fetch_all("suspended_users", "SELECT user_id FROM users WHERE suspended = ?", (True,))
        return {r[0] for r in rows}

    async def get_shadow_banned_users(self) -> set[str]:
        rows = await self.db.fetch_all("shadow_banned_users", "SELECT user_id FROM users WHERE shadow_banned = ?",
                                       (True,))
        return {r[0] for r in rows}

    async def reactivate_user(self, user_id: str) -> None:
        await self.db.run_interaction("update_users", users.reactivate_user_txn, user_id)

    async def set_user_type(self, user_id: str, user_type: str | None) -> None:
        await self.db.run_interaction("update_users", users.set_user_type_txn, user_id, user_type)

    # --- third-party and external identifiers ---------------------------------------------
    async def get_threepids(self, user_id: str) -> list[ThreepidRow]:
        rows = await self.db.fetch_all(
            "get_threepids", "SELECT medium, address, validated_at, added_at FROM user_threepids WHERE user_id = ?"
            " ORDER BY medium, address", (user_id,))
        return [ThreepidRow(*row) for row in rows]

    async def replace_threepids(self, user_id: str, threepids: set[tuple[str, str]], now_ms: int) -> None:
        """Make the user's 3PIDs exactly `threepids`, keeping the timestamps of those that stay."""

        async def txn_fn(txn: Transaction) -> None:
            current = {(r[0], r[1]) for r in await txn.fetch_all(
                "SELECT medium, address FROM user_threepids WHERE user_id = ?", (user_id,))}
            for medium, address in current - threepids:
                await txn.execute("DELETE FROM user_threepids WHERE medium = ? AND address = ?", (medium, address))
            for medium, address in sorted(threepids - current):
                owner = await txn.fetch_value(
                    "SELECT user_id FROM user_threepids WHERE medium = ? AND address = ?", (medium, address))
                if owner is not None:
                    raise ThreepidInUseError(f"{medium}:{address}")
                await txn.execute(
                    "INSERT INTO user_threepids (medium, address, user_id, validated_at, added_at)"
                    " VALUES (?, ?, ?, ?, ?)", (medium, address, user_id, now_ms, now_ms))

        await self.db.run_interaction("replace_threepids", txn_fn)

    async def add_threepid(self, user_id: str, medium: str, address: str, validated_at: int, now_ms: int) -> None:
        """Bind a validated 3PID to the user; `ThreepidInUseError` if another user holds it."""

        async def txn_fn(txn: Transaction) -> None:
            owner = await txn.fetch_value(
                "SELECT user_id FROM user_threepids WHERE medium = ? AND address = ?", (medium, address))
            if owner == user_id:
                return
            if owner is not None:
                raise ThreepidInUseError(f"{medium}:{address}")
            await txn.execute(
                "INSERT INTO user_threepids (medium, address, user_id, validated_at, added_at) VALUES (?, ?, ?, ?, ?)",
                (medium, address, user_id, validated_at, now_ms))

        await self.db.run_interaction("add_threepid", txn_fn)

    async def remove_threepid(self, user_id: str, medium: str, address: str) -> bool:
        return bool(await self.db.execute(
            "remove_threepid", "DELETE FROM user_threepids WHERE user_id = ? AND medium = ? AND address = ?",
            (user_id, medium, address)))

    async def get_external_ids(self, user_id: str) -> list[ExternalIdRow]:
        rows = await self.db.fetch_all(
            "get_external_ids", "SELECT auth_provider, external_id FROM user_external_ids WHERE user_id = ?"
            " ORDER BY auth_provider, external_id", (user_id,))
        return [ExternalIdRow(*row) for row in rows]

    async def replace_external_ids(self, user_id: str, external_ids: list[tuple[str, str]]) -> None:
        """Make the user's external IDs exactly `external_ids`; one taken by another user refuses all."""

        async def txn_fn(txn: Transaction) -> None:
            await txn.execute("DELETE FROM user_external_ids WHERE user_id = ?", (user_id,))
            for provider, external_id in dict.fromkeys(external_ids):
                owner = await txn.fetch_value(
                    "SELECT user_id FROM user_external_ids WHERE auth_provider = ? AND external_id = ?",
                    (provider, external_id))
                if owner is not None:
                    raise ExternalIdInUseError(f"{provider}:{external_id}")
                await txn.execute(
                    "INSERT INTO user_external_ids (auth_provider, external_id, user_id) VALUES (?, ?, ?)",
                    (provider, external_id, user_id))

        await self.db.run_interaction("replace_external_ids", txn_fn)

    async def get_user_by_external_id(self, provider: str, external_id: str) -> str | None:
        return await self.db.fetch_value(
            "user_by_external_id",
            "SELECT user_id FROM user_external_ids WHERE auth_provider = ? AND external_id = ?",
            (provider, external_id))

    async def get_user_by_threepid(self, medium: str, address: str) -> str | None:
        return await self.db.fetch_value(
            "user_by_threepid", "SELECT user_id FROM user_threepids WHERE medium = ? AND address = ?",
            (medium, address))

    # --- rate-limit overrides ---------------------------------------------------------------
    async def get_ratelimit_override(self, user_id: str) -> tuple[int, int] | None:
        row = await self.db.fetch_one(
            "get_ratelimit_override",
            "SELECT messages_per_second, burst_count FROM ratelimit_overrides WHERE user_id = ?", (user_id,))
        return None if row is None else (int(row[0]), int(row[1]))

    async def get_all_ratelimit_overrides(self) -> dict[str, tuple[int, int]]:
        rows = await self.db.fetch_all(
            "all_ratelimit_overrides", "SELECT user_id, messages_per_second, burst_count FROM ratelimit_overrides")
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    async def set_ratelimit_override(self, user_id: str, messages_per_second: int, burst_count: int) -> None:
        await self.db.simple_upsert("ratelimit_overrides", {"user_id": user_id},
                                    {"messages_per_second": messages_per_second, "burst_count": burst_count})

    async def delete_ratelimit_override(self, user_id: str) -> None:
        await self.db.simple_delete("ratelimit_overrides", {"user_id": user_id})

    # --- rooms ---------------------------------------------------------------------------
    async def room_summaries(self, local_server: str, room_id: str | None = None) -> list[RoomSummaryRow]:
        """Every room (or one) with member counts, state count and the contents of its summary state."""
        where, params = ("WHERE r.room_id = ?", (room_id,)) if room_id is not None else ("", ())
        local_pattern = "%:" + _like_escape(local_server)

        async def txn_fn(txn: Transaction) -> list[RoomSummaryRow]:
            rows = await txn.fetch_all(
                "SELECT r.room_id, r.room_version, r.creator, r.is_public,"
                " (SELECT COUNT(*) FROM current_state_events c WHERE c.room_id = r.room_id"
                "  AND c.type = 'm.room.member' AND c.membership = 'join'),"
                " (SELECT COUNT(*) FROM current_state_events c WHERE c.room_id = r.room_id"
                "  AND c.type = 'm.room.member' AND c.membership = 'join' AND c.state_key LIKE ? ESCAPE '\\'),"
                " (SELECT COUNT(*) FROM current_state_events c WHERE c.room_id = r.room_id)"
                f" FROM rooms r {where}", (local_pattern, *params))
            states: dict[str, dict[str, dict[str, Any]]] = {r[0]: {} for r in rows}
            types_clause, type_params = txn.dialect.in_list("type", list(_SUMMARY_TYPES))
            state_rows = await txn.fetch_all(
                "SELECT c.room_id, c.type, j.json FROM current_state_events c"
                " JOIN event_json j ON j.event_id = c.event_id"
                f" WHERE c.state_key = '' AND {types_clause}" + (" AND c.room_id = ?" if room_id else ""),
                (*type_params, *params))
            for rid, event_type, raw in state_rows:
                if rid in states:
                    content = decode(raw).get("content")
                    states[rid][event_type] = content if isinstance(content, dict) else {}
            return [RoomSummaryRow(r[0], r[1], r[2], bool(r[3]), int(r[4]), int(r[5]), int(r[6]), states[r[0]])
                    for r in rows]

        return await self.db.run_interaction("admin_room_summaries", txn_fn, write=False)

    async def room_media_uris(self, room_id: str) -> set[str]:
        """Every mxc:// URI that the room's events name, as Synapse's room media list finds them."""
        rows = await self.db.fetch_all(
            "room_media_uris", "SELECT json FROM event_json WHERE room_id = ? AND json LIKE '%mxc://%'",
            (room_id,))
        found: set[str] = set()
        for (raw,) in rows:
            _collect_mxc(decode(raw).get("content"), found)
        return found

    async def user_media_statistics(self, *, order_by: str, backwards: bool, offset: int, limit: int,
                                    from_ts: int | None, until_ts: int | None,
                                    search_term: str | None) -> tuple[list[UserMediaStatistics], int]:
        """Per local user: how many media items they uploaded and their total size; a page and the total."""
        clauses, params = ["m.user_id IS NOT NULL"], []
        if from_ts is not None:
            clauses.append("m.created_ts >= ?")
            params.append(from_ts)
        if until_ts is not None:
            clauses.append("m.created_ts <= ?")
            params.append(until_ts)
        if search_term:
            pattern = f"%{_like_escape(search_term.lower())}%"
            clauses.append("(lower(m.user_id) LIKE ? ESCAPE '\\' OR lower(p.displayname) LIKE ? ESCAPE '\\')")
            params += [pattern, pattern]
        base = f"FROM local_media m LEFT JOIN profiles p ON p.user_id = m.user_id WHERE {' AND '.join(clauses)}"
        column = MEDIA_STATISTICS_ORDER_COLUMNS[order_by]
        direction, nulls = ("DESC", "NULLS LAST") if backwards else ("ASC", "NULLS FIRST")
        sql = (f"SELECT m.user_id, p.displayname, COUNT(*), COALESCE(SUM(m.media_length), 0) {base}"
               f" GROUP BY m.user_id, p.displayname ORDER BY {column} {direction} {nulls}, m.user_id ASC"
               " LIMIT ? OFFSET ?")

        async def txn_fn(txn: Transaction) -> tuple[list[UserMediaStatistics], int]:
            total = int(await txn.fetch_value(f"SELECT COUNT(DISTINCT m.user_id) {base}", tuple(params)) or 0)
            rows = await txn.fetch_all(sql, (*params, limit, offset))
            return [UserMediaStatistics(r[0], r[1], int(r[2]), int(r[3])) for r in rows], total

        return await self.db.run_interaction("admin_user_media_statistics", txn_fn, write=False)

    async def event_media_uris(self, event_ids: list[str]) -> set[str]:
        """Every mxc:// URI that the content of these events names."""
        async def txn_fn(txn: Transaction) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(event_ids), 500):
                clause, params = txn.dialect.in_list("event_id", event_ids[start:start + 500])
                for (raw,) in await txn.fetch_all(
                        f"SELECT json FROM event_json WHERE {clause} AND json LIKE '%mxc://%'", params):
                    _collect_mxc(decode(raw).get("content"), found)
            return found

        return await self.db.run_interaction("event_media_uris", txn_fn, write=False)

    async def media_uri_in_events(self, uri: str) -> bool:
        """Whether any stored event names this mxc:// URI (as a whole JSON string)."""
        pattern = "%" + _like_escape(encode_str(uri)) + "%"
        return await self.db.fetch_value(
            "media_uri_in_events", "SELECT 1 FROM event_json WHERE json LIKE ? ESCAPE '\\' LIMIT 1",
            (pattern,)) is not None

    async def avatar_media_uris(self) -> set[str]:
        """The mxc:// URIs in use as user avatars (kept by media clean-up)."""
        rows = await self.db.fetch_all("avatar_media_uris",
                                       "SELECT avatar_url FROM profiles WHERE avatar_url LIKE 'mxc://%'")
        return {r[0] for r in rows}

    async def events_sent_by(self, user_id: str, room_id: str, types: tuple[str, ...], limit: int,
                             before_ts: int | None = None, after_ts: int | None = None) -> list[str]:
        """The user's unredacted events of `types` in a room, newest first, at most `limit`."""

        async def txn_fn(txn: Transaction) -> list[str]:
            clause, params = txn.dialect.in_list("type", list(types))
            extra, extra_params = "", []
            if before_ts is not None:
                extra += " AND origin_server_ts < ?"
                extra_params.append(before_ts)
            if after_ts is not None:
                extra += " AND origin_server_ts > ?"
                extra_params.append(after_ts)
            rows = await txn.fetch_all(
                f"SELECT event_id FROM events WHERE room_id = ? AND sender = ? AND {clause}"
                f" AND redacted_by IS NULL AND outlier = ? AND rejected_reason IS NULL{extra}"
                " ORDER BY stream_ordering DESC LIMIT ?",
                (room_id, user_id, *params, False, *extra_params, limit))
            return [r[0] for r in rows]

        return await self.db.run_interaction("events_sent_by", txn_fn, write=False)

    async def rooms_of_user_ever(self, user_id: str) -> list[str]:
        """Every room the user has had any membership in."""
        rows = await self.db.fetch_all(
            "rooms_of_user_ever", "SELECT DISTINCT room_id FROM room_memberships WHERE user_id = ? ORDER BY room_id",
            (user_id,))
        return [r[0] for r in rows]

    async def count_sent_invites(self, user_id: str, from_ts: int) -> int:
        return int(await self.db.fetch_value(
            "count_sent_invites",
            "SELECT COUNT(*) FROM room_memberships m JOIN events e ON e.event_id = m.event_id"
            " WHERE m.sender = ? AND m.user_id <> ? AND m.membership = 'invite' AND e.origin_server_ts >= ?",
            (user_id, user_id, from_ts)) or 0)

    async def count_rooms_joined_since(self, user_id: str, from_ts: int) -> int:
        return int(await self.db.fetch_value(
            "count_rooms_joined_since",
            "SELECT COUNT(DISTINCT m.room_id) FROM room_memberships m JOIN events e ON e.event_id = m.event_id"
            " WHERE m.user_id = ? AND m.membership = 'join' AND e.origin_server_ts >= ?", (user_id, from_ts)) or 0)

    async def count_devices(self, user_ids: list[str]) -> int:
        async def txn_fn(txn: Transaction) -> int:
            clause, params = txn.dialect.in_list("user_id", user_ids)
            return int(await txn.fetch_value(f"SELECT COUNT(*) FROM devices WHERE {clause}", params) or 0)

        return await self.db.run_interaction("admin_count_devices", txn_fn, write=False)

    async def user_counts(self, seen_since_day_ms: int, seen_since_month_ms: int) -> dict[str, int]:
        """Registered accounts (not deactivated, not guests) and distinct users seen since each time."""
        async def txn_fn(txn: Transaction) -> dict[str, int]:
            registered = await txn.fetch_value(
                "SELECT COUNT(*) FROM users WHERE deactivated = ? AND is_guest = ?", (False, False))
            seen = "SELECT COUNT(DISTINCT user_id) FROM user_ips WHERE last_seen >= ?"
            return {"registered": int(registered or 0),
                    "daily_active": int(await txn.fetch_value(seen, (seen_since_day_ms,)) or 0),
                    "monthly_active": int(await txn.fetch_value(seen, (seen_since_month_ms,)) or 0)}

        return await self.db.run_interaction("admin_user_counts", txn_fn, write=False)

    # --- room blocks ----------------------------------------------------------------------
    async def get_room_block(self, room_id: str) -> str | None:
        """The admin who blocked the room, or None when it is not blocked."""
        return await self.db.fetch_value(
            "get_room_block", "SELECT user_id FROM blocked_rooms WHERE room_id = ?", (room_id,))

    async def block_room(self, room_id: str, user_id: str) -> None:
        await self.db.run_interaction(
            "block_room", _execute,
            "INSERT INTO blocked_rooms (room_id, user_id) VALUES (?, ?) ON CONFLICT (room_id) DO NOTHING",
            (room_id, user_id))

    async def unblock_room(self, room_id: str) -> None:
        await self.db.simple_delete("blocked_rooms", {"room_id": room_id})

    # --- server notices ---------------------------------------------------------------------
    async def get_server_notice_room(self, user_id: str) -> str | None:
        return await self.db.fetch_value(
            "get_server_notice_room", "SELECT room_id FROM server_notice_rooms WHERE user_id = ?", (user_id,))

    async def set_server_notice_room(self, user_id: str, room_id: str) -> None:
        await self.db.simple_upsert("server_notice_rooms", {"user_id": user_id}, {"room_id": room_id})

    # --- admin tasks ------------------------------------------------------------------------
    async def create_task(self, task_id: str, action: str, resource_id: str, params: dict[str, Any],
                          now_ms: int) -> None:
        await self.db.simple_insert("admin_tasks", {
            "task_id": task_id, "action": action, "resource_id": resource_id, "status": "scheduled",
            "params": encode_str(params), "result": None, "error": None, "created_ts": now_ms, "updated_ts": now_ms,
        })

    async def update_task(self, task_id: str, *, status: str, now_ms: int, result: dict[str, Any] | None = None,
                          error: str | None = None) -> None:
        values: dict[str, Any] = {"status": status, "updated_ts": now_ms, "error": error}
        if result is not None:
            values["result"] = encode_str(result)
        await self.db.simple_update("admin_tasks", {"task_id": task_id}, values)

    async def get_task(self, task_id: str) -> AdminTaskRow | None:
        row = await self.db.fetch_one(
            "get_admin_task", f"SELECT {', '.join(_TASK_COLUMNS)} FROM admin_tasks WHERE task_id = ?", (task_id,))
        return None if row is None else _task(row)

    async def get_tasks(self, action: str, resource_id: str) -> list[AdminTaskRow]:
        rows = await self.db.fetch_all(
            "get_admin_tasks", f"SELECT {', '.join(_TASK_COLUMNS)} FROM admin_tasks WHERE action = ?"
            " AND resource_id = ? ORDER BY created_ts", (action, resource_id))
        return [_task(r) for r in rows]

    async def list_tasks(self, *, action: str | None, resource_id: str | None, status: str | None,
                         max_timestamp: int | None) -> list[AdminTaskRow]:
        """Tasks matching every filter given, oldest first; a task's timestamp is its last update."""
        clauses, params = [], []
        for column, value in (("action", action), ("resource_id", resource_id), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if max_timestamp is not None:
            clauses.append("updated_ts < ?")
            params.append(max_timestamp)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = await self.db.fetch_all(
            "admin_list_tasks", f"SELECT {', '.join(_TASK_COLUMNS)} FROM admin_tasks{where} ORDER BY updated_ts, task_id",
            tuple(params))
        return [_task(row) for row in rows]

    async def get_unfinished_tasks(self) -> list[AdminTaskRow]:
        rows = await self.db.fetch_all(
            "unfinished_admin_tasks",
            f"SELECT {', '.join(_TASK_COLUMNS)} FROM admin_tasks WHERE status IN ('scheduled', 'active')"
            " ORDER BY created_ts", ())
        return [_task(r) for r in rows]


_TASK_COLUMNS = ["task_id", "action", "resource_id", "status", "params", "result", "error", "created_ts",
                 "updated_ts"]


def _task(row: tuple[Any, ...]) -> AdminTaskRow:
    task_id, action, resource_id, status, params, result, error, created_ts, updated_ts = row
    return AdminTaskRow(task_id, action, resource_id, status, decode(params), decode(result) if result else None,
                        error, created_ts, updated_ts)


async def _execute(txn: Transaction, sql: str, params: tuple[Any, ...]) -> None:
    await txn.execute(sql, params)


async def delete_room_server_notice_txn(txn: Transaction, room_id: str) -> None:
    """Forget the room as anyone's server-notice room (the room is being deleted)."""
    await txn.execute("DELETE FROM server_notice_rooms WHERE room_id = ?", (room_id,))
