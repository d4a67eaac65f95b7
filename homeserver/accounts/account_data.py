"""Account data (global and per room) and room tags, which are the room account data `m.tag`.

Every write moves the `account_data` stream so that /sync can deliver it; callers that need to
react to a write consume the `AccountDataChanged` updates it publishes on the stream bus.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from homeserver.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.identifiers import is_valid_user_id, parse_user_id
from homeserver.streams.bus import StreamBus
from homeserver.streams.updates import AccountDataChanged, RoomUpgraded
from storage.stores.account_data import TAG_TYPE, AccountDataChanges, AccountDataStore

logger = logging.getLogger(__name__)

IGNORED_USER_LIST = "m.ignored_user_list"
# Written by the server through their own APIs (read markers, push rules), never through this one.
SERVER_MANAGED_TYPES = {
    "m.fully_read": "Cannot set m.fully_read through this API; use /rooms/{roomId}/read_markers",
    "m.push_rules": "Cannot set m.push_rules through this API; use /pushrules",
}
# Event types and room IDs are limited to 255 bytes wherever the spec bounds them (PDU limits).
MAX_TYPE_BYTES = 255
MAX_ROOM_ID_BYTES = 255
# "The name of a tag MUST NOT exceed 255 bytes" (room tagging module).
MAX_TAG_BYTES = 255

def check_type(data_type: str) -> None:
    if not data_type:
        raise invalid_param("type: must not be empty")
    if len(data_type.encode("utf-8")) > MAX_TYPE_BYTES:
        raise invalid_param(f"type: longer than {MAX_TYPE_BYTES} bytes")


def check_room_id(room_id: str) -> None:
    # Room IDs are opaque after the sigil (v12 IDs have no server part), so only the shape is checked.
    if (
        len(room_id) < 2
        or room_id[0] != "!"
        or len(room_id.encode("utf-8")) > MAX_ROOM_ID_BYTES
        or any(c.isspace() or c == "/" for c in room_id)
    ):
        raise invalid_param(f"roomId: {room_id!r} is not a valid room ID")


def check_settable(data_type: str) -> None:
    """405 `M_BAD_JSON` for the types the server keeps itself (account-data API, 405 response)."""
    message = SERVER_MANAGED_TYPES.get(data_type)
    if message is not None:
        raise MatrixError(405, "M_BAD_JSON", message)


def check_ignored_user_list(content: dict[str, Any]) -> None:
    """`{"ignored_users": {user_id: {}}}`, the shape the ignore module enforces on."""
    ignored = content.get("ignored_users")
    if not isinstance(ignored, dict):
        raise bad_json("ignored_users: must be an object mapping user IDs to objects")
    for user_id, value in ignored.items():
        if not is_valid_user_id(user_id):
            raise bad_json(f"ignored_users: {user_id!r} is not a valid user ID")
        if not isinstance(value, dict):
            raise bad_json(f"ignored_users.{user_id}: must be an object")


def check_tag(tag: str, content: dict[str, Any]) -> None:
    if not tag:
        raise invalid_param("tag: must not be empty")
    if len(tag.encode("utf-8")) > MAX_TAG_BYTES:
        raise invalid_param(f"tag: longer than {MAX_TAG_BYTES} bytes")
    order = content.get("order")
    if "order" in content and (
        isinstance(order, bool) or not isinstance(order, int | float) or not math.isfinite(order)
    ):
        raise bad_json("order: must be a number")


class AccountDataService:
    def __init__(self, store: AccountDataStore, bus: StreamBus):
        self._store = store
        self._bus = bus

    # --- global -----------------------------------------------------------------------
    async def set_global(
        self, requester_id: str, user_id: str, data_type: str, content: dict[str, Any]
    ) -> None:
        """Store global account data for the requester."""
        _check_owner(requester_id, user_id)
        check_type(data_type)
        check_settable(data_type)
        if data_type == IGNORED_USER_LIST:
            check_ignored_user_list(content)
        await self._notify(user_id, await self._store.put_global(user_id, data_type, content))

    async def get_global(self, requester_id: str, user_id: str, data_type: str) -> dict[str, Any]:
        """One global account data object of the requester; 404 when unset."""
        _check_owner(requester_id, user_id)
        check_type(data_type)
        content = await self._store.get_global(user_id, data_type)
        if content is None:
            raise not_found("Account data not found")
        return content

    # --- per room ---------------------------------------------------------------------
    async def set_room(
        self, requester_id: str, user_id: str, room_id: str, data_type: str, content: dict[str, Any]
    ) -> None:
        """Store account data for one of the requester's rooms."""
        _check_owner(requester_id, user_id)
        check_room_id(room_id)
        check_type(data_type)
        check_settable(data_type)
        await self._notify(user_id, await self._store.put_room(user_id, room_id, data_type, content))

    async def set_server_managed_room(self, user_id: str, room_id: str, data_type: str,
                                      content: dict[str, Any]) -> None:
        """Store room account data of a type clients cannot set directly (`m.fully_read`)."""
        await self._notify(user_id, await self._store.put_room(user_id, room_id, data_type, content))

    async def get_room(self, requester_id: str, user_id: str, room_id: str, data_type: str) -> dict[str, Any]:
        """One room account data object of the requester; 404 when unset."""
        _check_owner(requester_id, user_id)
        check_room_id(room_id)
        check_type(data_type)
        content = await self._store.get_room(user_id, room_id, data_type)
        if content is None:
            raise not_found("Room account data not found")
        return content

    # --- tags -------------------------------------------------------------------------
    async def get_tags(self, requester_id: str, user_id: str, room_id: str) -> dict[str, Any]:
        """The requester's tags on a room, `{tag: {order?}}`."""
        _check_owner(requester_id, user_id)
        check_room_id(room_id)
        content = await self._store.get_room(user_id, room_id, TAG_TYPE)
        tags = (content or {}).get("tags")
        return tags if isinstance(tags, dict) else {}

    async def add_tag(
        self, requester_id: str, user_id: str, room_id: str, tag: str, content: dict[str, Any]
    ) -> None:
        """Add or replace one tag on a room."""
        # Membership in the room is not required yet: rooms do not exist in this server so far.
        _check_owner(requester_id, user_id)
        check_room_id(room_id)
        check_tag(tag, content)

        def update(current: dict[str, Any] | None) -> dict[str, Any]:
            tags = _tags_of(current)
            tags[tag] = content
            return {**(current or {}), "tags": tags}

        await self._notify(user_id, await self._store.update_room(user_id, room_id, TAG_TYPE, update))

    async def remove_tag(self, requester_id: str, user_id: str, room_id: str, tag: str) -> None:
        """Remove one tag from a room; removing an absent tag succeeds."""
        _check_owner(requester_id, user_id)
        check_room_id(room_id)

        def update(current: dict[str, Any] | None) -> dict[str, Any] | None:
            tags = _tags_of(current)
            if tag not in tags:
                return None
            del tags[tag]
            return {**(current or {}), "tags": tags}

        await self._notify(user_id, await self._store.update_room(user_id, room_id, TAG_TYPE, update))

    # --- room upgrades ----------------------------------------------------------------
    async def on_room_upgraded(self, update: RoomUpgraded) -> None:
        """Carry each user's tags over to the new room and list it in `m.direct` beside the old one
        (what Synapse copies for the local members of an upgraded room)."""
        old_room_id, new_room_id = update.old_room_id, update.new_room_id
        for user_id in update.local_user_ids:
            tags = await self._store.get_room(user_id, old_room_id, TAG_TYPE)
            if tags and await self._store.get_room(user_id, new_room_id, TAG_TYPE) is None:
                await self._notify(user_id, await self._store.put_room(user_id, new_room_id, TAG_TYPE, tags))
            direct = await self._store.get_global(user_id, "m.direct")
            if not isinstance(direct, dict):
                continue
            changed = False
            updated: dict[str, Any] = {}
            for other, rooms in direct.items():
                if isinstance(rooms, list) and old_room_id in rooms and new_room_id not in rooms:
                    rooms = [*rooms, new_room_id]
                    changed = True
                updated[other] = rooms
            if changed:
                await self._notify(user_id, await self._store.put_global(user_id, "m.direct", updated))

    # --- for /sync --------------------------------------------------------------------
    async def get_changes(self, user_id: str, since: int, upto: int | None = None) -> AccountDataChanges:
        """Account data written after stream position `since` (0: all of it)."""
        return await self._store.get_changes(user_id, since, upto)

    async def current_position(self) -> int:
        return await self._store.get_current_position()

    async def _notify(self, user_id: str, position: int | None) -> None:
        if position is None:
            return
        await self._bus.publish(AccountDataChanged(user_id, position))


def _check_owner(requester_id: str, user_id: str) -> None:
    parse_user_id(user_id, "userId")
    if requester_id != user_id:
        raise forbidden("userId: cannot access the account data of other users")


def _tags_of(content: dict[str, Any] | None) -> dict[str, Any]:
    tags = (content or {}).get("tags")
    return dict(tags) if isinstance(tags, dict) else {}
