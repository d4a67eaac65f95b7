"""Where users connect from (`user_ips`): each (device, IP, user agent) and when it was last seen."""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database, Transaction
from storage.stores import devices


@dataclass(frozen=True, slots=True)
class ClientSighting:
    device_id: str  # "" when the request was made without a device
    ip: str
    user_agent: str
    last_seen: int


class ClientIpStore:
    def __init__(self, db: Database):
        self.db = db

    async def record_last_seen(self, entries: list[tuple[str, str | None, str, str, int]]) -> None:
        """Write a batch of (user_id, device_id, ip, user_agent, ts) sightings."""
        # Two statements for the whole batch (a thousand syncing devices are one flush): the writer
        # is held for two round trips, not two per sighting, and sends wait for it.
        sightings = [(user_id, device_id or "", ip, user_agent, ts) for user_id, device_id, ip, user_agent, ts in entries]
        # A device's last sighting wins, as when the rows were written one after another.
        last = {(user_id, device_id): (ip, user_agent, ts) for user_id, device_id, ip, user_agent, ts in entries
                if device_id}

        async def txn_fn(txn: Transaction) -> None:
            await txn.executemany(
                "INSERT INTO user_ips (user_id, device_id, ip, user_agent, last_seen) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, device_id, ip, user_agent) DO UPDATE SET last_seen = excluded.last_seen",
                sightings,
            )
            await devices.record_devices_seen_txn(
                txn, [(user_id, device_id, ip, user_agent, ts) for (user_id, device_id), (ip, user_agent, ts)
                      in last.items()])

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
            await devices.forget_devices_seen_from_before_txn(txn, older_than_ts)
            return pruned

        return await self.db.run_interaction("prune_last_seen", txn_fn)

    async def get_user_ips(self, user_id: str) -> list[ClientSighting]:
        """Every recorded (device, ip, user agent) sighting of a user, newest first."""
        rows = await self.db.fetch_all(
            "get_user_ips",
            "SELECT device_id, ip, user_agent, last_seen FROM user_ips WHERE user_id = ?"
            " ORDER BY last_seen DESC",
            (user_id,),
        )
        return [ClientSighting(r[0], r[1], r[2], r[3]) for r in rows]


async def delete_user_ips_txn(txn: Transaction, user_id: str) -> None:
    """Forget every sighting of the user (erasure)."""
    await txn.execute("DELETE FROM user_ips WHERE user_id = ?", (user_id,))
