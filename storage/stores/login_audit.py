"""The login audit log: logins and each new IP address or user agent of a device, with times."""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database, Transaction

_COLUMNS = ("kind", "device_id", "ip", "user_agent", "ts")


@dataclass(frozen=True, slots=True)
class LoginAuditEntry:
    """One entry of a user's log: `kind` is login, register, new_ip or new_user_agent; `device_id` "" if none."""
    kind: str
    device_id: str
    ip: str
    user_agent: str
    ts: int


@dataclass(frozen=True, slots=True)
class UserLogin:
    """A sign-in of a user (a login, or the session a registration started)."""
    device_id: str
    ip: str
    user_agent: str
    ts: int
    registration: bool


@dataclass(frozen=True, slots=True)
class FeedLogin:
    """A sign-in in the server-wide feed, flagged with whether its IP / device was new for the user."""
    id: int
    user_id: str
    device_id: str
    ip: str
    user_agent: str
    ts: int
    new_ip: bool
    new_device: bool
    registration: bool
# Sign-ins: logins, and the session a registration starts (the spec's automatic login).
_LOGIN_KINDS = "('login', 'register')"


class LoginAuditStore:
    def __init__(self, db: Database):
        self.db = db

    async def record_login(self, user_id: str, device_id: str, ip: str, user_agent: str, ts: int, *,
                           registration: bool = False) -> None:
        """A login (kind `login`), or the session a registration started (kind `register`)."""
        kind = "register" if registration else "login"
        await self.db.simple_insert("login_audit", {"user_id": user_id, "device_id": device_id, "kind": kind,
                                                    "ip": ip, "user_agent": user_agent, "ts": ts})

    async def record_sightings(self, entries: list[tuple[str, str | None, str, str, int]]) -> int:
        """Add `new_ip` / `new_user_agent` rows for sightings this device has not had; returns how many."""

        # A fixed number of statements per batch (a thousand syncing devices are one flush), not
        # two per sighting: this runs on the writer, and sends wait for it.
        async def txn_fn(txn: Transaction) -> int:
            users = sorted({entry[0] for entry in entries})
            known: set[tuple[str, str, str, str]] = set()
            for start in range(0, len(users), 500):
                clause, params = txn.dialect.in_list("user_id", users[start:start + 500])
                for column in ("ip", "user_agent"):
                    rows = await txn.fetch_all(
                        f"SELECT DISTINCT user_id, device_id, {column} FROM login_audit WHERE {clause}", params)
                    known.update((column, user_id, device, value) for user_id, device, value in rows)
            new_rows = []
            for user_id, device_id, ip, user_agent, ts in entries:
                device = device_id or ""
                for kind, column, value in (("new_ip", "ip", ip), ("new_user_agent", "user_agent", user_agent)):
                    if (column, user_id, device, value) not in known:
                        known.add((column, user_id, device, value))
                        new_rows.append((user_id, device, kind, ip, user_agent, ts))
            await txn.insert_many("login_audit", ("user_id", "device_id", "kind", "ip", "user_agent", "ts"),
                                  new_rows)
            return len(new_rows)

        return await self.db.run_interaction("record_login_sightings", txn_fn)

    async def list_entries(self, user_id: str, *, offset: int, limit: int,
                           backwards: bool) -> tuple[list[LoginAuditEntry], int]:
        order = "DESC" if backwards else "ASC"

        async def txn_fn(txn: Transaction) -> tuple[list[LoginAuditEntry], int]:
            total = await txn.fetch_value("SELECT COUNT(*) FROM login_audit WHERE user_id = ?", (user_id,))
            rows = await txn.fetch_all(
                f"SELECT {', '.join(_COLUMNS)} FROM login_audit WHERE user_id = ? ORDER BY ts {order}, id {order}"
                " LIMIT ? OFFSET ?", (user_id, limit, offset))
            return [LoginAuditEntry(*row) for row in rows], int(total or 0)

        return await self.db.run_interaction("list_login_audit", txn_fn, write=False)

    async def all_entries(self, user_id: str) -> list[LoginAuditEntry]:
        rows = await self.db.fetch_all(
            "all_login_audit", f"SELECT {', '.join(_COLUMNS)} FROM login_audit WHERE user_id = ? ORDER BY ts, id",
            (user_id,))
        return [LoginAuditEntry(*row) for row in rows]

    async def prune(self, older_than_ts: int) -> int:
        return await self.db.execute("prune_login_audit", "DELETE FROM login_audit WHERE ts < ?", (older_than_ts,))

    # --- the server-wide login feed (`GET /_huiskamer/admin/v1/logins`) ------------------------
    async def latest_id(self) -> int:
        """The ID of the newest entry: a feed token that skips everything so far."""
        return int(await self.db.fetch_value("latest_login_audit_id", "SELECT MAX(id) FROM login_audit") or 0)

    async def logins_after(self, after_id: int, limit: int) -> list[FeedLogin]:
        """Logins with an ID above `after_id`, oldest first, each flagged `new_ip` / `new_device`:
        whether the user's earlier entries had never shown this IP, or this device or user agent."""

        async def txn_fn(txn: Transaction) -> list[FeedLogin]:
            rows = await txn.fetch_all(
                "SELECT id, user_id, device_id, ip, user_agent, ts, kind FROM login_audit WHERE id > ?"
                f" AND kind IN {_LOGIN_KINDS} ORDER BY id LIMIT ?", (after_id, limit))
            logins = []
            for entry_id, user_id, device_id, ip, user_agent, ts, kind in rows:
                seen_ip = await txn.fetch_one(
                    "SELECT 1 FROM login_audit WHERE user_id = ? AND id < ? AND ip = ? LIMIT 1", (user_id, entry_id, ip))
                seen_device = await txn.fetch_one(
                    "SELECT 1 FROM login_audit WHERE user_id = ? AND id < ? AND (device_id = ? OR user_agent = ?)"
                    " LIMIT 1", (user_id, entry_id, device_id, user_agent))
                logins.append(FeedLogin(entry_id, user_id, device_id, ip, user_agent, ts, new_ip=seen_ip is None,
                                        new_device=seen_device is None, registration=kind == "register"))
            return logins

        return await self.db.run_interaction("login_audit_feed", txn_fn, write=False)

    async def logins_of_user(self, user_id: str) -> list[UserLogin]:
        rows = await self.db.fetch_all(
            "logins_of_user", "SELECT device_id, ip, user_agent, ts, kind FROM login_audit WHERE user_id = ?"
            f" AND kind IN {_LOGIN_KINDS} ORDER BY ts, id", (user_id,))
        return [UserLogin(*r[:4], registration=r[4] == "register") for r in rows]

    async def delete_user(self, user_id: str) -> int:
        return await self.db.execute("forget_login_audit_of_user", "DELETE FROM login_audit WHERE user_id = ?",
                                     (user_id,))
