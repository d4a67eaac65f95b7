"""Users, access/refresh/login tokens, devices, registration tokens and UIA sessions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction


class UserExistsError(Exception):
    """The user ID is already taken."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What an access token resolves to."""

    token_id: int
    user_id: str
    device_id: str | None
    valid_until_ms: int | None
    is_guest: bool
    deactivated: bool
    puppets_user_id: str | None
    locked: bool = False


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: str
    password_hash: str | None
    admin: bool
    deactivated: bool
    erased: bool
    is_guest: bool
    user_type: str | None
    appservice_id: str | None
    created_ts: int


_TOKEN_COLUMNS = ("token", "uses_allowed", "pending", "completed", "expiry_time")
_USER_COLUMNS = (
    "user_id, password_hash, admin, deactivated, erased, is_guest, user_type, appservice_id, created_ts"
)


def _user(row: tuple[Any, ...] | None) -> UserRow | None:
    if row is None:
        return None
    return UserRow(
        row[0], row[1], bool(row[2]), bool(row[3]), bool(row[4]), bool(row[5]), row[6], row[7], row[8]
    )


class AccountStore:
    def __init__(self, db: Database):
        self.db = db

    # --- users -------------------------------------------------------------------
    async def create_user(
        self,
        user_id: str,
        password_hash: str | None,
        *,
        created_ts: int,
        admin: bool = False,
        is_guest: bool = False,
        user_type: str | None = None,
        appservice_id: str | None = None,
        displayname: str | None = None,
    ) -> None:
        """Insert a user and its profile; raises UserExistsError if the ID is taken."""
        localpart = user_id[1:].split(":", 1)[0]

        async def txn_fn(txn: Transaction) -> None:
            existing = await txn.fetch_value(
                "SELECT 1 FROM users WHERE lower(user_id) = lower(?)", (user_id,)
            )
            if existing:
                raise UserExistsError(user_id)
            await txn.execute(
                "INSERT INTO users (user_id, password_hash, admin, is_guest, user_type, appservice_id, created_ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (user_id, password_hash, admin, is_guest, user_type, appservice_id, created_ts),
            )
            await txn.execute(
                "INSERT INTO profiles (user_id, displayname) VALUES (?, ?) ON CONFLICT (user_id) DO NOTHING",
                (user_id, displayname if displayname is not None else localpart),
            )

        await self.db.run_interaction("create_user", txn_fn)

    async def get_user(self, user_id: str) -> UserRow | None:
        row = await self.db.fetch_one(
            "get_user", f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = ?", (user_id,)
        )
        return _user(row)

    async def find_user_case_insensitive(self, user_id: str) -> UserRow | None:
        """The user whose ID matches ignoring case; an exact match wins when several do."""
        rows = await self.db.fetch_all(
            "find_user_ci", f"SELECT {_USER_COLUMNS} FROM users WHERE lower(user_id) = lower(?)", (user_id,)
        )
        users = [_user(r) for r in rows]
        for user in users:
            if user is not None and user.user_id == user_id:
                return user
        return users[0] if len(users) == 1 else None

    async def upgrade_guest(self, user_id: str, password_hash: str | None) -> bool:
        """Turn a guest account into a full one with this password; False if it is no guest."""
        updated = await self.db.execute(
            "upgrade_guest", "UPDATE users SET is_guest = ?, password_hash = ? WHERE user_id = ? AND is_guest = ?",
            (False, password_hash, user_id, True),
        )
        return updated > 0

    async def set_password_hash(self, user_id: str, password_hash: str | None) -> None:
        await self.db.simple_update("users", {"user_id": user_id}, {"password_hash": password_hash})

    async def set_admin(self, user_id: str, admin: bool) -> None:
        await self.db.simple_update("users", {"user_id": user_id}, {"admin": admin})

    async def mark_deactivated(self, user_id: str, *, erase: bool) -> None:
        """Deactivate: no password, no tokens, no devices; `erase` recorded for the erasure work."""

        async def txn_fn(txn: Transaction) -> None:
            await txn.execute(
                "UPDATE users SET deactivated = ?, erased = ?, password_hash = NULL WHERE user_id = ?",
                (True, erase, user_id),
            )
            await txn.execute("DELETE FROM access_tokens WHERE user_id = ?", (user_id,))
            await txn.execute("DELETE FROM refresh_tokens WHERE user_id = ?", (user_id,))
            await txn.execute("DELETE FROM devices WHERE user_id = ?", (user_id,))

        await self.db.run_interaction("mark_deactivated", txn_fn)

    # --- access tokens -----------------------------------------------------------
    async def add_access_token(
        self,
        token_hash: str,
        user_id: str,
        device_id: str | None,
        *,
        created_ts: int,
        valid_until_ms: int | None = None,
        refresh_token_id: int | None = None,
        puppets_user_id: str | None = None,
    ) -> int:
        return await self.db.run_interaction(
            "add_access_token",
            _insert_returning_id,
            "INSERT INTO access_tokens (token_hash, user_id, device_id, valid_until_ms, refresh_token_id,"
            " puppets_user_id, created_ts) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (token_hash, user_id, device_id, valid_until_ms, refresh_token_id, puppets_user_id, created_ts),
        )

    async def get_access_token(self, token_hash: str) -> TokenInfo | None:
        row = await self.db.fetch_one(
            "get_access_token",
            # A puppet token (an admin logged in as someone) acts as, and lives and dies with, that user.
            "SELECT t.id, u.user_id, t.device_id, t.valid_until_ms, u.is_guest, u.deactivated, t.puppets_user_id,"
            " u.locked FROM access_tokens t JOIN users u ON u.user_id = COALESCE(t.puppets_user_id, t.user_id)"
            " WHERE t.token_hash = ?",
            (token_hash,),
        )
        if row is None:
            return None
        return TokenInfo(row[0], row[1], row[2], row[3], bool(row[4]), bool(row[5]), row[6], bool(row[7]))

    async def delete_access_tokens(
        self,
        user_id: str,
        *,
        device_id: str | None = None,
        except_token_id: int | None = None,
        token_id: int | None = None,
    ) -> list[str]:
        """Delete matching access tokens; returns their hashes so caches can drop them."""
        clauses, params = ["user_id = ?"], [user_id]
        if device_id is not None:
            clauses.append("device_id = ?")
            params.append(device_id)
        if except_token_id is not None:
            clauses.append("id != ?")
            params.append(except_token_id)
        if token_id is not None:
            clauses.append("id = ?")
            params.append(token_id)
        sql = "DELETE FROM access_tokens WHERE " + " AND ".join(clauses) + " RETURNING token_hash"
        rows = await self.db.run_interaction("delete_access_tokens", _fetch_all, sql, tuple(params))
        return [r[0] for r in rows]

    # --- refresh tokens ----------------------------------------------------------
    async def add_refresh_token(
        self, token_hash: str, user_id: str, device_id: str, *, created_ts: int, expiry_ts: int | None
    ) -> int:
        return await self.db.run_interaction(
            "add_refresh_token",
            _insert_returning_id,
            "INSERT INTO refresh_tokens (token_hash, user_id, device_id, expiry_ts, created_ts)"
            " VALUES (?, ?, ?, ?, ?) RETURNING id",
            (token_hash, user_id, device_id, expiry_ts, created_ts),
        )

    async def get_refresh_token(self, token_hash: str) -> dict[str, Any] | None:
        return await self.db.simple_select_one(
            "refresh_tokens",
            {"token_hash": token_hash},
            ["id", "user_id", "device_id", "next_token_id", "expiry_ts", "has_next_access_token_been_used"],
            allow_none=True,
        )

    async def replace_refresh_token(self, old_id: int, new_id: int) -> None:
        """Chain the old refresh token to its successor and drop the old token's access tokens."""

        async def txn_fn(txn: Transaction) -> None:
            await txn.execute("UPDATE refresh_tokens SET next_token_id = ? WHERE id = ?", (new_id, old_id))
            await txn.execute("DELETE FROM access_tokens WHERE refresh_token_id = ?", (old_id,))

        await self.db.run_interaction("replace_refresh_token", txn_fn)

    async def delete_refresh_tokens(self, user_id: str, device_id: str | None = None) -> None:
        if device_id is None:
            await self.db.simple_delete("refresh_tokens", {"user_id": user_id})
        else:
            await self.db.simple_delete("refresh_tokens", {"user_id": user_id, "device_id": device_id})

    # --- login tokens ------------------------------------------------------------
    async def add_login_token(self, token_hash: str, user_id: str, expiry_ts: int) -> None:
        await self.db.simple_insert(
            "login_tokens", {"token_hash": token_hash, "user_id": user_id, "expiry_ts": expiry_ts}
        )

    async def consume_login_token(self, token_hash: str, now_ms: int) -> str | None:
        """The user of an unexpired, unused login token, marking it used; None otherwise."""

        async def txn_fn(txn: Transaction) -> str | None:
            row = await txn.fetch_one(
                "UPDATE login_tokens SET used_ts = ? WHERE token_hash = ? AND used_ts IS NULL AND expiry_ts > ?"
                " RETURNING user_id",
                (now_ms, token_hash, now_ms),
            )
            return None if row is None else row[0]

        return await self.db.run_interaction("consume_login_token", txn_fn)

    # --- OpenID tokens ------------------------------------------------------------
    async def add_openid_token(self, token_hash: str, user_id: str, expires_ts: int, now_ms: int) -> None:
        """Store a new OpenID token, dropping expired ones on the way."""

        async def txn_fn(txn: Transaction) -> None:
            await txn.execute("DELETE FROM openid_tokens WHERE expires_ts <= ?", (now_ms,))
            await txn.execute(
                "INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES (?, ?, ?)",
                (token_hash, user_id, expires_ts),
            )

        await self.db.run_interaction("add_openid_token", txn_fn)

    async def get_openid_token_user(self, token_hash: str, now_ms: int) -> str | None:
        """The user of an unexpired OpenID token, or None."""
        row = await self.db.fetch_one(
            "get_openid_token_user",
            "SELECT user_id FROM openid_tokens WHERE token_hash = ? AND expires_ts > ?",
            (token_hash, now_ms),
        )
        return None if row is None else row[0]

    # --- devices -----------------------------------------------------------------
    async def ensure_device(
        self, user_id: str, device_id: str, display_name: str | None, created_ts: int
    ) -> bool:
        """Create the device if missing (keeping an existing one's name); True when it was created."""
        rows = await self.db.run_interaction(
            "ensure_device",
            _fetch_all,
            "INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (user_id, device_id) DO NOTHING RETURNING device_id",
            (user_id, device_id, display_name, created_ts),
        )
        return bool(rows)

    async def get_device(self, user_id: str, device_id: str) -> dict[str, Any] | None:
        return await self.db.simple_select_one(
            "devices",
            {"user_id": user_id, "device_id": device_id},
            [
                "device_id",
                "display_name",
                "last_seen_ip",
                "last_seen_user_agent",
                "last_seen_ts",
                "created_ts",
            ],
            allow_none=True,
        )

    async def get_devices(self, user_id: str) -> list[dict[str, Any]]:
        return await self.db.simple_select_list(
            "devices",
            {"user_id": user_id, "hidden": False},
            [
                "device_id",
                "display_name",
                "last_seen_ip",
                "last_seen_user_agent",
                "last_seen_ts",
                "created_ts",
            ],
            order_by=["device_id"],
        )

    async def set_device_display_name(self, user_id: str, device_id: str, display_name: str | None) -> bool:
        updated = await self.db.simple_update(
            "devices", {"user_id": user_id, "device_id": device_id}, {"display_name": display_name}
        )
        return updated > 0

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> list[str]:
        """Delete devices with their access and refresh tokens; returns the token hashes removed."""

        async def txn_fn(txn: Transaction) -> list[str]:
            hashes: list[str] = []
            for device_id in device_ids:
                rows = await txn.fetch_all(
                    "DELETE FROM access_tokens WHERE user_id = ? AND device_id = ? RETURNING token_hash",
                    (user_id, device_id),
                )
                hashes.extend(r[0] for r in rows)
                await txn.execute(
                    "DELETE FROM refresh_tokens WHERE user_id = ? AND device_id = ?", (user_id, device_id)
                )
                await txn.execute(
                    "DELETE FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id)
                )
            return hashes

        return await self.db.run_interaction("delete_devices", txn_fn)

    async def record_last_seen(self, entries: list[tuple[str, str | None, str, str, int]]) -> None:
        """Write a batch of (user_id, device_id, ip, user_agent, ts) sightings."""

        # Two statements for the whole batch (a thousand syncing devices are one flush): the writer
        # is held for two round trips, not two per sighting, and sends wait for it.
        sightings = [(user_id, device_id or "", ip, user_agent, ts) for user_id, device_id, ip, user_agent, ts in entries]
        # A device's last sighting wins, as when the rows were written one after another.
        devices = {(user_id, device_id): (ip, user_agent, ts) for user_id, device_id, ip, user_agent, ts in entries
                   if device_id}

        async def txn_fn(txn: Transaction) -> None:
            await txn.executemany(
                "INSERT INTO user_ips (user_id, device_id, ip, user_agent, last_seen) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, device_id, ip, user_agent) DO UPDATE SET last_seen = excluded.last_seen",
                sightings,
            )
            await txn.executemany(
                "UPDATE devices SET last_seen_ip = ?, last_seen_user_agent = ?, last_seen_ts = ?"
                " WHERE user_id = ? AND device_id = ?",
                [(ip, user_agent, ts, user_id, device_id) for (user_id, device_id), (ip, user_agent, ts)
                 in devices.items()],
            )

        await self.db.run_interaction("record_last_seen", txn_fn)

    async def prune_user_ips(self, older_than_ts: int) -> int:
        return await self.db.execute(
            "prune_user_ips", "DELETE FROM user_ips WHERE last_seen < ?", (older_than_ts,)
        )

    async def prune_last_seen(self, older_than_ts: int) -> int:
        """Forget sightings older than the cut-off: user_ips rows and the devices' last IP/user agent.

        Returns how many user_ips rows went. The devices keep last_seen_ts, which says when
        but not from where.
        """

        async def txn_fn(txn: Transaction) -> int:
            await txn.execute("DELETE FROM user_ips WHERE last_seen < ?", (older_than_ts,))
            pruned = txn.rowcount
            await txn.execute(
                "UPDATE devices SET last_seen_ip = NULL, last_seen_user_agent = NULL"
                " WHERE last_seen_ts < ? AND (last_seen_ip IS NOT NULL OR last_seen_user_agent IS NOT NULL)",
                (older_than_ts,),
            )
            return pruned

        return await self.db.run_interaction("prune_last_seen", txn_fn)

    async def get_user_ips(self, user_id: str) -> list[dict[str, Any]]:
        """Every recorded (device, ip, user agent) sighting of a user, newest first."""
        rows = await self.db.fetch_all(
            "get_user_ips",
            "SELECT device_id, ip, user_agent, last_seen FROM user_ips WHERE user_id = ?"
            " ORDER BY last_seen DESC",
            (user_id,),
        )
        return [{"device_id": r[0], "ip": r[1], "user_agent": r[2], "last_seen": r[3]} for r in rows]

    # --- registration tokens -----------------------------------------------------
    async def registration_token_valid(self, token: str, now_ms: int) -> bool:
        row = await self.db.fetch_one(
            "registration_token_valid",
            "SELECT uses_allowed, pending, completed, expiry_time FROM registration_tokens WHERE token = ?",
            (token,),
        )
        if row is None:
            return False
        uses_allowed, pending, completed, expiry_time = row
        if expiry_time is not None and expiry_time <= now_ms:
            return False
        return uses_allowed is None or pending + completed < uses_allowed

    async def add_registration_token(
        self, token: str, uses_allowed: int | None, expiry_time: int | None
    ) -> None:
        await self.db.simple_insert(
            "registration_tokens", {"token": token, "uses_allowed": uses_allowed, "expiry_time": expiry_time}
        )

    async def list_registration_tokens(self, valid: bool | None, now_ms: int) -> list[dict[str, Any]]:
        """Every registration token, or only the usable (`valid=True`) or unusable ones."""
        usable = ("(uses_allowed IS NULL OR pending + completed < uses_allowed)"
                  " AND (expiry_time IS NULL OR expiry_time > ?)")
        where, params = "", ()
        if valid is not None:
            where = f" WHERE {usable}" if valid else f" WHERE NOT ({usable})"
            params = (now_ms,)
        rows = await self.db.fetch_all(
            "list_registration_tokens",
            f"SELECT {', '.join(_TOKEN_COLUMNS)} FROM registration_tokens{where} ORDER BY token", params)
        return [dict(zip(_TOKEN_COLUMNS, row, strict=True)) for row in rows]

    async def get_registration_token(self, token: str) -> dict[str, Any] | None:
        return await self.db.simple_select_one("registration_tokens", {"token": token}, _TOKEN_COLUMNS,
                                               allow_none=True)

    async def create_registration_token(self, token: str, uses_allowed: int | None,
                                        expiry_time: int | None) -> bool:
        """Insert a new token; False when the token already exists."""
        rows = await self.db.run_interaction(
            "create_registration_token", _fetch_all,
            "INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES (?, ?, ?)"
            " ON CONFLICT (token) DO NOTHING RETURNING token",
            (token, uses_allowed, expiry_time))
        return bool(rows)

    async def update_registration_token(self, token: str, values: dict[str, Any]) -> bool:
        """Change `uses_allowed` and/or `expiry_time`; False when there is no such token."""
        if not values:
            return await self.get_registration_token(token) is not None
        return await self.db.simple_update("registration_tokens", {"token": token}, values) > 0

    async def delete_registration_token(self, token: str) -> bool:
        return await self.db.simple_delete("registration_tokens", {"token": token}) > 0

    async def use_registration_token(self, token: str, now_ms: int) -> bool:
        """Count one completed registration against the token, atomically; False if it is used up."""
        rows = await self.db.run_interaction(
            "use_registration_token",
            _fetch_all,
            "UPDATE registration_tokens SET completed = completed + 1 WHERE token = ?"
            " AND (expiry_time IS NULL OR expiry_time > ?)"
            " AND (uses_allowed IS NULL OR pending + completed < uses_allowed) RETURNING token",
            (token, now_ms),
        )
        return bool(rows)

    # --- user-interactive auth sessions ------------------------------------------
    async def create_uia_session(
        self, session_id: str, uri: str, method: str, clientdict: dict[str, Any], created_ts: int
    ) -> None:
        await self.db.simple_insert(
            "ui_auth_sessions",
            {
                "session_id": session_id,
                "uri": uri,
                "method": method,
                "clientdict": encode_str(clientdict),
                "created_ts": created_ts,
            },
        )

    async def get_uia_session(self, session_id: str) -> dict[str, Any] | None:
        row = await self.db.simple_select_one(
            "ui_auth_sessions",
            {"session_id": session_id},
            ["session_id", "uri", "method", "clientdict", "serverdict", "created_ts"],
            allow_none=True,
        )
        if row is None:
            return None
        row["clientdict"] = decode(row["clientdict"])
        row["serverdict"] = decode(row["serverdict"])
        return row

    async def set_uia_stage_result(self, session_id: str, stage_type: str, result: Any) -> None:
        await self.db.simple_upsert(
            "ui_auth_session_credentials",
            {"session_id": session_id, "stage_type": stage_type},
            {"result": encode_str(result)},
        )

    async def get_uia_stage_results(self, session_id: str) -> dict[str, Any]:
        rows = await self.db.simple_select_list(
            "ui_auth_session_credentials", {"session_id": session_id}, ["stage_type", "result"]
        )
        return {r["stage_type"]: decode(r["result"]) for r in rows}

    async def set_uia_server_value(self, session_id: str, key: str, value: Any) -> None:
        async def txn_fn(txn: Transaction) -> None:
            raw = await txn.fetch_value(
                "SELECT serverdict FROM ui_auth_sessions WHERE session_id = ?", (session_id,)
            )
            serverdict = decode(raw) if raw else {}
            serverdict[key] = value
            await txn.execute(
                "UPDATE ui_auth_sessions SET serverdict = ? WHERE session_id = ?",
                (encode_str(serverdict), session_id),
            )

        await self.db.run_interaction("set_uia_server_value", txn_fn)

    async def delete_uia_session(self, session_id: str) -> None:
        async def txn_fn(txn: Transaction) -> None:
            await txn.execute("DELETE FROM ui_auth_session_credentials WHERE session_id = ?", (session_id,))
            await txn.execute("DELETE FROM ui_auth_sessions WHERE session_id = ?", (session_id,))

        await self.db.run_interaction("delete_uia_session", txn_fn)

    async def prune_uia_sessions(self, older_than_ts: int) -> None:
        async def txn_fn(txn: Transaction) -> None:
            await txn.execute(
                "DELETE FROM ui_auth_session_credentials WHERE session_id IN"
                " (SELECT session_id FROM ui_auth_sessions WHERE created_ts < ?)",
                (older_than_ts,),
            )
            await txn.execute("DELETE FROM ui_auth_sessions WHERE created_ts < ?", (older_than_ts,))

        await self.db.run_interaction("prune_uia_sessions", txn_fn)


async def _insert_returning_id(txn: Transaction, sql: str, params: tuple[Any, ...]) -> int:
    return int(await txn.fetch_value(sql, params))


async def _fetch_all(txn: Transaction, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return await txn.fetch_all(sql, params)
