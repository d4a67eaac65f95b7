"""Erase a member through the homeserver, and say what was removed and what was kept (and why).

Our homeserver's `POST /_huiskamer/admin/v1/users/{userId}/erase` does it all as one background task;
elsewhere (Synapse) the service combines the Synapse admin API: redact the member's events in
non-public rooms, delete their media, deactivate with `erase`. Either way the report has the same
shape: `{"removed": {class: count}, "kept": {class: {"count", "why"}}, "unreachable": {class: why}}`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from appservices.privacy.hsclient import HUISKAMER, HomeserverClient, HomeserverError, Unreachable, q

PRIVACY_RECORDS_WHY = ("privacy requests, consent records and the audit log are kept to account for how the "
                       "request was handled (GDPR art. 5(2))")
PUBLIC_ROOMS_WHY = ("messages in public rooms are kept for everyone's safety (erasure.keep_public_room_messages);"
                    " they show the user ID but no name or avatar")


class Eraser:
    def __init__(self, hs: HomeserverClient, *, keep_public_room_messages: bool, kept_classes: dict[str, str],
                 poll_interval_s: float = 0.5):
        self._hs = hs
        self._keep_public = keep_public_room_messages
        self._kept_classes = kept_classes
        self._poll = poll_interval_s

    async def erase(self, user_id: str) -> dict[str, Any]:
        try:
            report = await self._erase_huiskamer(user_id)
        except Unreachable:
            report = await self._erase_synapse(user_id)
        kept = report.setdefault("kept", {})
        kept["privacy_records"] = {"count": None, "why": PRIVACY_RECORDS_WHY}
        for cls, why in self._kept_classes.items():
            kept.setdefault(cls, {"count": None, "why": why})
        return report

    async def _wait(self, path: str, done: tuple[str, ...] = ("complete", "failed")) -> dict[str, Any]:
        while True:
            status = await self._hs.admin("GET", path)
            if status.get("status") in done:
                return status
            await asyncio.sleep(self._poll)

    async def _erase_huiskamer(self, user_id: str) -> dict[str, Any]:
        task = await self._hs.admin("POST", f"{HUISKAMER}/users/{q(user_id)}/erase",
                                    {"keep_public_room_messages": self._keep_public})
        status = await self._wait(f"{HUISKAMER}/tasks/{q(task['task_id'])}")
        if status.get("status") == "failed":
            raise HomeserverError("POST", "erase", 500, "M_UNKNOWN", str(status.get("error") or status))
        result = status.get("result") or {}
        report: dict[str, Any] = {"method": "huiskamer", "removed": dict(result.get("removed") or {}),
                                  "kept": dict(result.get("kept") or {}), "unreachable": {}}
        try:
            deleted = await self._hs.admin("DELETE", f"{HUISKAMER}/users/{q(user_id)}/redacted_originals")
            report["removed"]["redacted_originals"] = deleted.get("deleted", 0)
        except Unreachable as exc:
            report["unreachable"]["redacted_originals"] = str(exc)
        return report

    async def _erase_synapse(self, user_id: str) -> dict[str, Any]:
        u = q(user_id)
        removed: dict[str, Any] = {}
        kept: dict[str, Any] = {}
        unreachable: dict[str, str] = {
            "redacted_originals": "the homeserver keeps the original content of redacted events for its own "
                                  "retention period (no endpoint to purge them now)",
            "ip_log": "the homeserver expires its client IP log on its own schedule",
        }
        rooms = sorted((await self._hs.admin("GET", f"/v1/users/{u}/memberships")).get("memberships", {}))
        redact_rooms, public_rooms = [], []
        for room_id in rooms:
            try:
                details = await self._hs.admin("GET", f"/v1/rooms/{q(room_id)}")
            except HomeserverError:
                details = {}
            public = details.get("join_rules") == "public" or bool(details.get("public"))
            (public_rooms if public and self._keep_public else redact_rooms).append(room_id)
        if redact_rooms:
            started = await self._hs.admin("POST", f"/v1/user/{u}/redact", {"rooms": redact_rooms})
            status = await self._wait(f"/v1/user/redact_status/{q(started['redact_id'])}",
                                      done=("complete", "failed"))
            failed = status.get("failed_redactions") or {}
            removed["messages_redacted_in_rooms"] = len(redact_rooms)
            if failed:
                unreachable["messages"] = f"{len(failed)} events could not be redacted"
        if public_rooms:
            kept["public_room_messages"] = {"count": len(public_rooms), "why": PUBLIC_ROOMS_WHY}
        media = await self._hs.admin("DELETE", f"/v1/users/{u}/media")
        removed["media"] = media.get("total", len(media.get("deleted_media", [])))
        devices = (await self._hs.admin("GET", f"/v2/users/{u}/devices")).get("devices", [])
        await self._hs.admin("POST", f"/v1/deactivate/{u}", {"erase": True})
        removed["devices"] = len(devices)
        removed["account"] = 1
        removed["profile"] = 1
        removed["threepids"] = 1
        return {"method": "synapse-admin", "removed": removed, "kept": kept, "unreachable": unreachable}
