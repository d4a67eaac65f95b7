"""Helpers for the privacy service's end-to-end tests: members who DM the bot and read its replies."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from appservices.privacy.service import PrivacyService
from tests.admin.helpers import Caller, new_caller, q

ADMIN_V1 = "/_privacy/admin/v1"


class ManualClock:
    """Wall-clock time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return int(time.time() * 1000) + self.offset_ms

    def advance(self, ms: int) -> None:
        self.offset_ms += ms


@dataclass
class Member:
    caller: Caller
    bot: str
    admin: Caller  # reads the DM through the admin API, so replies stay readable after an erasure
    room_id: str = ""
    seen: set[str] = field(default_factory=set)
    consent_request: list[dict[str, Any]] = field(default_factory=list)

    @property
    def user_id(self) -> str:
        return self.caller.user_id

    async def open_dm(self) -> str:
        body = await self.caller.call("POST", "/createRoom", {"is_direct": True, "invite": [self.bot],
                                                              "preset": "trusted_private_chat"})
        self.room_id = body["room_id"]
        await self.wait_for(lambda: self._bot_joined(), what="the bot to join")
        return self.room_id

    async def join_bot_dm(self, store: Any) -> list[dict[str, Any]]:
        """Accept the DM the bot opened (with a policy set the member may not create rooms, but may join
        one whose other member is the bot); returns the bot's messages there so far, marked seen."""

        async def invited() -> bool:
            self.room_id = await store.dm_room(self.user_id) or ""
            return bool(self.room_id)

        await self.wait_for(invited, what="the bot to open a DM")
        await self.caller.call("POST", f"/join/{q(self.room_id)}", {})
        return await self.next_replies()

    async def _bot_joined(self) -> bool:
        members = await self.caller.call("GET", f"/rooms/{q(self.room_id)}/joined_members")
        return self.bot in members.get("joined", {})

    async def say(self, text: str) -> None:
        await self.caller.call("POST", f"/rooms/{q(self.room_id)}/send/m.room.message",
                               {"msgtype": "m.text", "body": text})

    async def bot_events(self) -> list[dict[str, Any]]:
        page = await self.admin.admin("GET", f"/v1/rooms/{q(self.room_id)}/messages", dir="b", limit=200)
        return [e for e in reversed(page["chunk"]) if e["sender"] == self.bot and e["type"] == "m.room.message"]

    async def next_replies(self, count: int = 1, timeout: float = 60.0, until: str | None = None
                           ) -> list[dict[str, Any]]:
        """The bot's messages not seen before: at least `count`, or until one whose body contains `until`."""
        found: list[dict[str, Any]] = []

        async def ready() -> bool:
            for event in await self.bot_events():
                if event["event_id"] not in self.seen:
                    self.seen.add(event["event_id"])
                    found.append(event)
            if until is not None:
                return any(until in e["content"].get("body", "") for e in found)
            return len(found) >= count

        await self.wait_for(ready, timeout=timeout, what=f"bot replies ({until or count})")
        return found

    async def ask(self, text: str, until: str | None = None, count: int = 1) -> list[dict[str, Any]]:
        await self.say(text)
        return await self.next_replies(count=count, until=until)

    @staticmethod
    async def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)


@dataclass
class PrivacyEnv:
    hs: Any
    service: PrivacyService
    client: aiohttp.ClientSession
    admin: Caller
    clock: ManualClock
    tmp_path: Path
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    @property
    def bot(self) -> str:
        return self.service.config.bot_user_id

    async def member(self, name: str, dm: bool = True) -> Member:
        """A new member; with `dm`, in a DM with the bot: opened by the member, or with a consent policy
        (the member may not create rooms before consenting) the bot's consent request, joined."""
        member = Member(await new_caller(self.client, name), self.bot, self.admin)
        if dm and self.service.config.consent.version is not None:
            member.consent_request = await member.join_bot_dm(self.service.store)
        elif dm:
            await member.open_dm()
        return member

    async def privacy_admin(self, method: str, path: str, token: str | None = None, expect: int = 200,
                            **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {token or self.service.config.admin_api_token}"}
        async with aiohttp.ClientSession() as session:
            async with session.request(method, self.service.url + ADMIN_V1 + path, headers=headers,
                                       params={k: str(v) for k, v in params.items()}) as resp:
                body = await resp.json()
                assert resp.status == expect, f"{method} {path} -> {resp.status} {body}"
                return body

    async def close(self) -> None:
        for session in self.sessions:
            await session.close()
