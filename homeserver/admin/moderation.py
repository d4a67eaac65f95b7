"""What the admin API's moderation flags mean on every request: suspended and shadow-banned users,
blocked rooms.

The flags are set through the admin services; this object only holds and checks them, so the room
event sender and the HTTP handlers can be given its checks when they are built, before the admin
services that depend on them exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.errors import MatrixError, forbidden
from storage.stores.admin import AdminStore

# Event types a suspended user may still send: leaving, and redacting (their own events; the
# auth rules stop them redacting others' unless they are moderators, and moderators who are
# suspended are rare enough that Synapse does not check either).
_SUSPENDED_MAY_SEND = {"m.room.redaction"}


class Moderation:
    def __init__(self, server_name: str, store: AdminStore):
        self._server_name = server_name
        self._store = store
        # Checked on every send, so kept in memory; every change goes through `set_suspended` and
        # `set_shadow_banned`.
        self._suspended: set[str] = set()
        self._shadow_banned: set[str] = set()

    async def start(self) -> None:
        """Load the suspended and shadow-banned users."""
        self._suspended = await self._store.get_suspended_users()
        self._shadow_banned = await self._store.get_shadow_banned_users()

    async def stop(self) -> None:
        return None

    async def set_suspended(self, user_id: str, suspended: bool) -> None:
        await self._set_flag(user_id, "suspended", suspended, self._suspended)

    async def set_shadow_banned(self, user_id: str, banned: bool) -> None:
        await self._set_flag(user_id, "shadow_banned", banned, self._shadow_banned)

    async def _set_flag(self, user_id: str, flag: str, value: bool, users: set[str]) -> None:
        await self._store.set_user_flag(user_id, flag, value)
        (users.add if value else users.discard)(user_id)

    def is_shadow_banned(self, user_id: str) -> bool:
        return user_id in self._shadow_banned

    def is_suspended(self, user_id: str) -> bool:
        return user_id in self._suspended

    async def check_not_suspended(self, room_id: str, sender: str, event_type: str, content: Mapping[str, Any],
                                  state_key: str | None) -> None:
        """A send check: a suspended local user may leave rooms and redact, and send nothing else."""
        if not sender.endswith(":" + self._server_name) or event_type in _SUSPENDED_MAY_SEND:
            return
        if event_type == "m.room.member" and content.get("membership") == "leave" and state_key == sender:
            return
        if self.is_suspended(sender):
            raise MatrixError(403, "M_USER_SUSPENDED", "You cannot perform this action while suspended.")

    async def check_room_not_blocked(self, room_id: str, sender: str, event_type: str, content: Any,
                                     state_key: str | None) -> None:
        """A send check: nobody joins or is invited to a blocked room."""
        if event_type != "m.room.member" or content.get("membership") not in ("join", "invite", "knock"):
            return
        if await self._store.get_room_block(room_id) is not None:
            raise forbidden("This room has been blocked on this server")
