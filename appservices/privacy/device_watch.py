"""Security notices where the homeserver has no login feed (Synapse): poll its admin API.

Each round reads the users seen most recently (`GET /_synapse/admin/v2/users?order_by=last_seen_ts
&dir=b`) and, for each whose `last_seen_ts` moved, their devices (`/v2/users/{u}/devices`), and
compares them with what this service saw before: a device ID or an IP address not seen before is a
sign-in to tell the member about. The first sight of a member is their baseline (no notice, as for
the session registering starts). Synapse writes last-seen data in batches (every few seconds), so
notices come a few seconds later than through our homeserver's feed, and a session that signs in
but makes no request is not seen until it does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from appservices.privacy.hsclient import HomeserverClient, q
from appservices.privacy.store import PrivacyStore

logger = logging.getLogger(__name__)

RECENT_USERS = 100


class DevicePoller:
    def __init__(self, hs: HomeserverClient, store: PrivacyStore, bot_user_id: str,
                 on_login: Callable[[dict[str, Any]], Awaitable[None]],
                 on_first_sight: Callable[[str], Awaitable[Any]]):
        self._hs = hs
        self._store = store
        self._bot = bot_user_id
        self._on_login = on_login
        self._on_first_sight = on_first_sight

    async def poll_once(self) -> int:
        """One round; returns how many sign-ins it reported."""
        page = await self._hs.admin("GET", "/v2/users", order_by="last_seen_ts", dir="b", limit=RECENT_USERS,
                                    deactivated="false", guests="false")
        reported = 0
        for user in page.get("users", []):
            user_id = user["name"]
            if user_id == self._bot or user.get("appservice_id") or user.get("deactivated"):
                continue
            seen_ts = user.get("last_seen_ts") or 0
            key = f"device_watch:{user_id}"
            raw = await self._store.get_value(key)
            known = json.loads(raw) if raw else None
            if known is not None and seen_ts <= known["ts"]:
                continue
            devices = (await self._hs.admin("GET", f"/v2/users/{q(user_id)}/devices")).get("devices", [])
            if known is None:
                known = {"ts": 0, "devices": [], "ips": []}
                first_sight = True
            else:
                first_sight = False
            for device in devices:
                device_id, ip = device.get("device_id"), device.get("last_seen_ip")
                new_device = device_id not in known["devices"]
                new_ip = bool(ip) and ip not in known["ips"]
                if device_id and new_device:
                    known["devices"].append(device_id)
                if ip and new_ip:
                    known["ips"].append(ip)
                if not first_sight and (new_device or new_ip):
                    reported += 1
                    await self._on_login({"user_id": user_id, "device_id": device_id, "ip": ip,
                                          "user_agent": device.get("last_seen_user_agent"),
                                          "ts": device.get("last_seen_ts") or seen_ts,
                                          "new_device": new_device, "new_ip": new_ip})
            known["ts"] = seen_ts
            await self._store.set_value(key, json.dumps(known))
            if first_sight:
                await self._on_first_sight(user_id)
        return reported
