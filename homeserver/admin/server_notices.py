"""Server notices: messages from the server to one user, in a room of their own (as Synapse does).

The room is created by the configured system user on the first notice, the user is invited
and the room is tagged `m.server_notice` in their account data. The user may not write in
it. Once they leave it, the next notice opens a fresh room.
"""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.accounts.account_data import AccountDataService
from homeserver.admin.common import check_local_user_id
from homeserver.clock import Clock
from homeserver.errors import MatrixError, bad_json, invalid_param, not_found
from homeserver.rooms.creation import RoomCreator
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.sender import RoomEventSender
from storage.stores.admin import AdminStore
from storage.stores.events import EventStore
from storage.stores.users import UserExistsError, UserStore

SERVER_NOTICE_TAG = "m.server_notice"
# The user's power level in their notices room: below the default for sending anything.
USER_POWER_LEVEL = -10

class ServerNoticeService:
    def __init__(self, server_name: str, config: dict[str, Any], accounts: UserStore, admin_store: AdminStore,
                 events: EventStore, creator: RoomCreator, membership: MembershipService,
                 sender: RoomEventSender, account_data: AccountDataService, clock: Clock):
        self._server_name = server_name
        self._config = config
        self._accounts = accounts
        self._store = admin_store
        self._events = events
        self._creator = creator
        self._membership = membership
        self._sender = sender
        self._account_data = account_data
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._config.get("system_mxid_localpart"))

    @property
    def system_user_id(self) -> str:
        return f"@{self._config['system_mxid_localpart']}:{self._server_name}"

    async def send_notice(self, body: dict[str, Any], txn_id: str | None = None) -> dict[str, Any]:
        """`POST /v1/send_server_notice`: send `content` (type `m.room.message` unless given) to `user_id`."""
        if not self.enabled:
            raise MatrixError(400, "M_UNKNOWN", "Server notices are not enabled on this server")
        user_id = body.get("user_id")
        if not isinstance(user_id, str):
            raise MatrixError(400, "M_MISSING_PARAM" if user_id is None else "M_BAD_JSON",
                              "user_id: required, a string")
        content = body.get("content")
        if not isinstance(content, dict):
            raise MatrixError(400, "M_MISSING_PARAM" if content is None else "M_BAD_JSON",
                              "content: required, an object")
        event_type = body.get("type", "m.room.message")
        if not isinstance(event_type, str) or not event_type:
            raise bad_json("type: must be a non-empty string")
        state_key = body.get("state_key")
        if state_key is not None and not isinstance(state_key, str):
            raise bad_json("state_key: must be a string")
        check_local_user_id(user_id, self._server_name)
        user = await self._accounts.get_user(user_id)
        if user is None:
            raise not_found("User not found")
        if user.deactivated:
            raise invalid_param("user_id: the user is deactivated")
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            room_id = await self._room_for(user_id)
        txn = (self.system_user_id, "", f"notice-{txn_id}") if txn_id is not None else None
        event = await self._sender.send(room_id, self.system_user_id, event_type, content, state_key=state_key,
                                        txn=txn)
        return {"event_id": event.event_id}

    async def _room_for(self, user_id: str) -> str:
        await self._ensure_system_user()
        room_id = await self._store.get_server_notice_room(user_id)
        if room_id is not None:
            membership, _ = await self._events.get_membership(room_id, user_id)
            if membership in ("join", "invite"):
                return room_id
        room = await self._creator.create_room(self.system_user_id, {
            "preset": "private_chat",
            "name": self._config.get("room_name") or "Server Notices",
            **({"topic": self._config["room_topic"]} if self._config.get("room_topic") else {}),
            "creation_content": {"m.federate": False},
            "power_level_content_override": {"users_default": USER_POWER_LEVEL},
        })
        room_id = room["room_id"]
        await self._account_data.add_tag(user_id, user_id, room_id, SERVER_NOTICE_TAG, {})
        await self._membership.invite(self.system_user_id, room_id, user_id)
        await self._store.set_server_notice_room(user_id, room_id)
        return room_id

    async def _ensure_system_user(self) -> None:
        if await self._accounts.get_user(self.system_user_id) is not None:
            return
        try:
            await self._accounts.create_user(self.system_user_id, None, created_ts=self._clock.time_ms(),
                                             user_type="support",
                                             displayname=self._config.get("system_mxid_display_name"))
        except UserExistsError:
            pass  # a notice to another user created it meanwhile
