"""Fetch everything the homeserver holds about a member, for the export, over the admin API.

Each data class comes from one endpoint, with a fallback where another endpoint gives the same data
(e.g. messages per room through the admin `/messages` when `/_huiskamer/.../events` is not served).
A class no endpoint provides is named in `unreachable` with the endpoint that was missing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from appservices.privacy.export_format import Collected, room_kind, servers_of
from appservices.privacy.hsclient import HUISKAMER, HomeserverClient, HomeserverError, Unreachable, q

logger = logging.getLogger(__name__)
Progress = Callable[[int], Awaitable[None]]
REPORTS_PAGE = 500
EVENT_FIELDS = ("event_id", "room_id", "type", "state_key", "content", "origin_server_ts", "redacted")


def _event(raw: dict[str, Any]) -> dict[str, Any]:
    event = {k: raw[k] for k in EVENT_FIELDS if k in raw}
    if "redacted" not in event:
        event["redacted"] = "redacted_because" in (raw.get("unsigned") or {})
    return event


class Collector:
    def __init__(self, hs: HomeserverClient, server_name: str, progress_every: int = 2000):
        self._hs = hs
        self._server_name = server_name
        self._progress_every = progress_every

    async def collect(self, user_id: str, request_id: str, now_ms: int,
                      progress: Progress | None = None) -> Collected:
        data = Collected(user_id=user_id, request_id=request_id, generated_ts=now_ms)
        u = q(user_id)

        async def part(cls: str, fn: Callable[[], Awaitable[None]]) -> None:
            try:
                await fn()
            except Unreachable as exc:
                data.unreachable[cls] = f"not served by the homeserver: {exc}"
            except HomeserverError as exc:
                data.unreachable[cls] = f"homeserver error: {exc}"

        async def profile() -> None:
            user = await self._hs.admin("GET", f"/v2/users/{u}")
            data.threepids = user.pop("threepids", []) or []
            data.profile = user
            try:  # extended profile fields (spec v1.16): every key the member set
                extra = await self._hs.cs("GET", f"/profile/{u}")
                data.profile["profile_fields"] = extra
            except HomeserverError:
                pass

        async def devices() -> None:
            data.devices = (await self._hs.admin("GET", f"/v2/users/{u}/devices")).get("devices", [])

        async def connections() -> None:
            try:
                body = await self._hs.admin("GET", f"{HUISKAMER}/users/{u}/connections")
                data.connections, data.logins = body.get("connections", []), body.get("logins", [])
                return
            except Unreachable:
                pass
            whois = await self._hs.admin("GET", f"/v1/whois/{u}")
            data.connections = [
                {"device_id": device_id, "ip": c.get("ip"), "user_agent": c.get("user_agent"),
                 "last_seen_ts": c.get("last_seen")}
                for device_id, dev in (whois.get("devices") or {}).items()
                for s in dev.get("sessions", []) for c in s.get("connections", [])]
            try:
                audit = await self._hs.admin("GET", f"/v1/users/{u}/login_audit", limit=10000)
                data.logins = [e for e in audit.get("entries", [])]
            except Unreachable as exc:
                data.unreachable["logins"] = f"not served by the homeserver: {exc}"

        async def account_data() -> None:
            body = await self._hs.admin("GET", f"/v1/users/{u}/accountdata")
            data.account_data = body.get("account_data", body)

        async def pushers() -> None:
            data.pushers = (await self._hs.admin("GET", f"/v1/users/{u}/pushers")).get("pushers", [])

        async def reports() -> None:
            data.reports["event_reports"] = await self._reports_by("/v1/event_reports", "event_reports", user_id)
            try:
                data.reports["user_reports"] = await self._reports_by("/v1/user_reports", "user_reports", user_id)
            except Unreachable:
                data.reports["user_reports"] = []

        async def consent() -> None:
            try:
                data.consent["homeserver"] = await self._hs.admin("GET", f"{HUISKAMER}/users/{u}/consent")
            except Unreachable as exc:
                data.consent["homeserver"] = None
                data.unreachable["consent.homeserver"] = f"not served by the homeserver: {exc}"
            except HomeserverError as exc:
                if exc.status != 404:
                    raise
                data.consent["homeserver"] = None

        async def as_member() -> None:
            await self._as_member(user_id, data)

        await asyncio.gather(part("profile", profile), part("devices", devices),
                             part("connections", connections), part("account_data", account_data),
                             part("pushers", pushers), part("reports", reports), part("consent", consent),
                             part("push_rules", as_member))
        await part("rooms", lambda: self._rooms(user_id, data))
        await part("messages", lambda: self._events(user_id, data, progress))
        await part("media", lambda: self._media(user_id, data))
        return data

    async def _reports_by(self, path: str, key: str, user_id: str) -> list[dict[str, Any]]:
        """The reports `user_id` made, every page of the list filtered here.

        Not with the `user_id` query parameter: with an application service's `as_token` both
        Synapse and our homeserver read `user_id` as the identity to act as (and refuse a member
        outside the service's namespace); Synapse's filter is a substring match besides.
        """
        found: list[dict[str, Any]] = []
        offset: int | str = 0
        while True:
            page = await self._hs.admin("GET", path, limit=REPORTS_PAGE, **{"from": offset})
            found.extend(r for r in page.get(key, []) if r.get("user_id") == user_id)
            if "next_token" not in page:
                return found
            offset = page["next_token"]

    async def _as_member(self, user_id: str, data: Collected) -> None:
        """Push rules and presence are only readable as the member: a short-lived admin puppet token."""
        login = await self._hs.admin("POST", f"/v1/users/{q(user_id)}/login", {"valid_until_ms": None})
        token = login["access_token"]
        try:
            data.push_rules = await self._hs.request("GET", "/_matrix/client/v3/pushrules/", token=token)
            try:
                data.presence = await self._hs.request("GET", f"/_matrix/client/v3/presence/{q(user_id)}/status",
                                                       token=token)
            except HomeserverError as exc:
                data.unreachable["presence"] = f"homeserver error: {exc}"
        finally:
            try:
                await self._hs.request("POST", "/_matrix/client/v3/logout", {}, token=token)
            except HomeserverError:
                logger.warning("could not log out the export's puppet session of %s", user_id)

    async def _rooms(self, user_id: str, data: Collected) -> None:
        memberships = (await self._hs.admin("GET", f"/v1/users/{q(user_id)}/memberships")).get("memberships", {})
        direct: set[str] = set()
        m_direct = (data.account_data.get("global") or {}).get("m.direct") or {}
        for rooms in m_direct.values():
            if isinstance(rooms, list):
                direct.update(r for r in rooms if isinstance(r, str))

        async def one(room_id: str, membership: str) -> dict[str, Any]:
            try:
                details = await self._hs.admin("GET", f"/v1/rooms/{q(room_id)}")
            except HomeserverError:
                details = {}
            try:
                members = (await self._hs.admin("GET", f"/v1/rooms/{q(room_id)}/members")).get("members", [])
            except HomeserverError:
                members = []
            return {"room_id": room_id, "name": details.get("name"), "membership": membership,
                    "kind": room_kind(room_id, direct, details), "join_rules": details.get("join_rules"),
                    "joined_members": details.get("joined_members"), "servers": servers_of(members)}

        data.rooms = list(await asyncio.gather(*(one(r, m) for r, m in sorted(memberships.items()))))

    async def _events(self, user_id: str, data: Collected, progress: Progress | None) -> None:
        events: list[dict[str, Any]] = []
        next_report = self._progress_every

        async def tick() -> None:
            nonlocal next_report
            if progress is not None and self._progress_every and len(events) >= next_report:
                next_report += self._progress_every
                await progress(len(events))

        try:
            async for event in self._hs.admin_lines(f"{HUISKAMER}/users/{q(user_id)}/events"):
                events.append(_event(event))
                await tick()
            data.events = events
            return
        except Unreachable:
            pass
        # Fallback (Synapse, or a homeserver without the stream): every room's history, filtered by sender,
        # a few rooms at a time.
        semaphore = asyncio.Semaphore(4)

        async def room_events(room_id: str) -> None:
            token: str | None = None
            async with semaphore:
                while True:
                    try:
                        page = await self._hs.admin("GET", f"/v1/rooms/{q(room_id)}/messages", dir="f", limit=1000,
                                                    filter=json.dumps({"senders": [user_id]}), **{"from": token})
                    except HomeserverError as exc:
                        data.unreachable.setdefault("messages", "")
                        data.unreachable["messages"] += f"{room_id}: {exc}; "
                        return
                    chunk = page.get("chunk", [])
                    events.extend(_event(e) for e in chunk if e.get("sender") == user_id)
                    await tick()
                    token = page.get("end")
                    if not chunk or not token:
                        return

        await asyncio.gather(*(room_events(room["room_id"]) for room in data.rooms))
        data.events = events

    async def _media(self, user_id: str, data: Collected) -> None:
        listing: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = await self._hs.admin("GET", f"/v1/users/{q(user_id)}/media", limit=500, **{"from": offset})
            listing.extend(page.get("media", []))
            if "next_token" not in page:
                break
            offset = page["next_token"]
        semaphore = asyncio.Semaphore(8)

        async def fetch(entry: dict[str, Any]) -> dict[str, Any]:
            item = dict(entry)
            async with semaphore:
                try:
                    item["bytes"] = await self._hs.download(self._server_name, entry["media_id"])
                except HomeserverError as exc:
                    item["bytes"] = None
                    item["unavailable"] = str(exc)
            return item

        data.media = list(await asyncio.gather(*(fetch(e) for e in listing)))
