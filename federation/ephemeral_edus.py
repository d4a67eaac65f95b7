"""Inbound typing (`m.typing`), read receipt (`m.receipt`) and presence (`m.presence`) EDUs.

`handlers()` gives the `edu_type` -> handler entries of /send's table (federation/inbound.py,
built in federation/wiring.py). The parsers are pure: they check an EDU's content against the spec's schema and that every user in
it belongs to the origin (a server speaks only for its own users); what fails is dropped with a log
line. A typing notification or receipts of a room are then taken only when the room's server ACL
allows the origin (MSC4163, as Synapse), when we are in the room and when the origin has a member
joined in it (as Synapse checks). Presence has no room: it is taken for users joined to some room
here (anyone else's presence nobody here could see). The services then store it as their own
users' (remote typing expires after `typing.REMOTE_TIMEOUT_MS` unless renewed).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from federation.inbound import EduHandler
from federation.room_hosts import joined_hosts
from federation.server_acl import ServerAcls
from homeserver.ephemeral.presence import MAX_STATUS_MSG, STATES, PresenceService
from homeserver.ephemeral.receipts import MAIN_TIMELINE, READ, ReceiptService
from homeserver.ephemeral.typing import TypingService
from homeserver.identifiers import is_valid_event_id, is_valid_room_id, is_valid_user_id
from storage.stores.events import EventStore

logger = logging.getLogger(__name__)

TYPING_EDU = "m.typing"
RECEIPT_EDU = "m.receipt"
PRESENCE_EDU = "m.presence"


class InvalidEdu(ValueError):
    """An EDU (or part of one) is malformed or not allowed from its origin: dropped, the reason logged."""


@dataclass(frozen=True, slots=True)
class TypingUpdate:
    room_id: str
    user_id: str
    typing: bool


@dataclass(frozen=True, slots=True)
class RemoteReceipt:
    room_id: str
    user_id: str
    event_id: str
    thread_id: str | None
    ts: int


@dataclass(frozen=True, slots=True)
class PresencePush:
    user_id: str
    state: str
    status_msg: str | None
    last_active_ago: int | None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_user(user_id: Any, origin: str, field: str) -> str:
    if not isinstance(user_id, str) or not is_valid_user_id(user_id):
        raise InvalidEdu(f"{field}: not a valid user ID")
    if user_id.split(":", 1)[1] != origin:
        raise InvalidEdu(f"{field}: {user_id} is not a user of {origin}")
    return user_id


def parse_typing(origin: str, content: dict[str, Any]) -> TypingUpdate:
    """The typing notification of an `m.typing` EDU; InvalidEdu naming the field when malformed."""
    room_id = content.get("room_id")
    if not isinstance(room_id, str) or not is_valid_room_id(room_id):
        raise InvalidEdu("room_id: not a valid room ID")
    user_id = _check_user(content.get("user_id"), origin, "user_id")
    typing = content.get("typing")
    if not isinstance(typing, bool):
        raise InvalidEdu("typing: must be a boolean")
    return TypingUpdate(room_id, user_id, typing)


def parse_receipts(origin: str, content: dict[str, Any]) -> tuple[dict[str, list[RemoteReceipt]], list[str]]:
    """({room_id: receipts}, problems) of an `m.receipt` EDU: each malformed room or receipt is left
    out and described in `problems`; the well-formed rest is kept. Only public `m.read` receipts
    travel between servers, so other receipt types are left out too."""
    rooms: dict[str, list[RemoteReceipt]] = {}
    problems: list[str] = []
    for room_id, by_type in content.items():
        if not is_valid_room_id(room_id):
            problems.append(f"{room_id!r}: not a valid room ID")
            continue
        if not isinstance(by_type, dict):
            problems.append(f"{room_id}: must be an object")
            continue
        for receipt_type, by_user in by_type.items():
            if receipt_type != READ:
                problems.append(f"{room_id}.{receipt_type}: only {READ} receipts are taken from other servers")
                continue
            if not isinstance(by_user, dict):
                problems.append(f"{room_id}.{receipt_type}: must be an object")
                continue
            for user_id, receipt in by_user.items():
                field = f"{room_id}.{receipt_type}.{user_id}"
                try:
                    parsed = _parse_receipt(origin, room_id, user_id, receipt, field)
                except InvalidEdu as error:
                    problems.append(str(error))
                    continue
                rooms.setdefault(room_id, []).append(parsed)
    return rooms, problems


def _parse_receipt(origin: str, room_id: str, user_id: str, receipt: Any, field: str) -> RemoteReceipt:
    _check_user(user_id, origin, field)
    if not isinstance(receipt, dict):
        raise InvalidEdu(f"{field}: must be an object")
    event_ids = receipt.get("event_ids")
    if (not isinstance(event_ids, list) or not event_ids
            or not all(isinstance(e, str) and is_valid_event_id(e) for e in event_ids)):
        raise InvalidEdu(f"{field}.event_ids: must be a non-empty array of event IDs")
    data = receipt.get("data")
    if not isinstance(data, dict):
        raise InvalidEdu(f"{field}.data: must be an object")
    ts = data.get("ts")
    if not _is_int(ts) or ts < 0:
        raise InvalidEdu(f"{field}.data.ts: must be a non-negative integer")
    thread_id = data.get("thread_id")
    if not isinstance(thread_id, str):
        thread_id = None  # absent (or not a string, which Synapse also reads as absent): unthreaded
    elif thread_id != MAIN_TIMELINE and not is_valid_event_id(thread_id):
        raise InvalidEdu(f"{field}.data.thread_id: must be `main` or an event ID")
    # The spec allows one event per receipt; of a longer list (older servers) the first counts, as in Synapse.
    return RemoteReceipt(room_id, user_id, event_ids[0], thread_id, ts)


def parse_presence(origin: str, content: dict[str, Any]) -> tuple[list[PresencePush], list[str]]:
    """(updates, problems) of an `m.presence` EDU's `push` list; malformed entries are left out."""
    push = content.get("push")
    if not isinstance(push, list):
        raise InvalidEdu("push: must be an array")
    updates: list[PresencePush] = []
    problems: list[str] = []
    for index, entry in enumerate(push):
        field = f"push[{index}]"
        try:
            updates.append(_parse_push(origin, entry, field))
        except InvalidEdu as error:
            problems.append(str(error))
    return updates, problems


def _parse_push(origin: str, entry: Any, field: str) -> PresencePush:
    if not isinstance(entry, dict):
        raise InvalidEdu(f"{field}: must be an object")
    user_id = _check_user(entry.get("user_id"), origin, f"{field}.user_id")
    state = entry.get("presence")
    if state not in STATES:
        raise InvalidEdu(f"{field}.presence: must be one of {', '.join(STATES)}")
    last_active_ago = entry.get("last_active_ago")
    if last_active_ago is not None and (not _is_int(last_active_ago) or last_active_ago < 0):
        raise InvalidEdu(f"{field}.last_active_ago: must be a non-negative integer")
    status_msg = entry.get("status_msg")
    if status_msg is not None and not isinstance(status_msg, str):
        raise InvalidEdu(f"{field}.status_msg: must be a string")
    if status_msg is not None and len(status_msg) > MAX_STATUS_MSG:
        raise InvalidEdu(f"{field}.status_msg: at most {MAX_STATUS_MSG} characters")
    return PresencePush(user_id, state, status_msg, last_active_ago)


class EphemeralEduReceiver:
    """The inbound handlers of `m.typing`, `m.receipt` and `m.presence` (entries of /send's `edu_handlers`)."""

    def __init__(self, server_name: str, events: EventStore, acls: ServerAcls, typing: TypingService,
                 receipts: ReceiptService, presence: PresenceService):
        self._server_name = server_name
        self._events = events
        self._acls = acls
        self._typing = typing
        self._receipts = receipts
        self._presence = presence

    def handlers(self) -> Mapping[str, EduHandler]:
        return {
            TYPING_EDU: self._dropping_invalid(TYPING_EDU, self.receive_typing),
            RECEIPT_EDU: self._dropping_invalid(RECEIPT_EDU, self.receive_receipt),
            PRESENCE_EDU: self._dropping_invalid(PRESENCE_EDU, self.receive_presence),
        }

    @staticmethod
    def _dropping_invalid(edu_type: str, receive: Callable[[str, dict[str, Any]], Awaitable[None]]) -> EduHandler:
        async def handler(origin: str, content: Any) -> None:
            try:
                if not isinstance(content, dict):
                    raise InvalidEdu("content: must be an object")
                await receive(origin, content)
            except InvalidEdu as error:
                logger.info("%s EDU from %s dropped: %s", edu_type, origin, error)

        return handler

    async def _refusal(self, origin: str, room_id: str) -> str | None:
        """Why the origin may not send ephemeral data for the room, or None when it may."""
        if not await self._acls.allows(room_id, origin):
            return f"{origin} is denied by the server ACL of {room_id}"
        hosts = await joined_hosts(self._events, room_id)
        if self._server_name not in hosts:
            return f"we are not in {room_id}"
        if origin not in hosts:
            return f"{origin} has no member joined to {room_id}"
        return None

    async def receive_typing(self, origin: str, content: dict[str, Any]) -> None:
        update = parse_typing(origin, content)
        refusal = await self._refusal(origin, update.room_id)
        if refusal is not None:
            raise InvalidEdu(refusal)
        if not await self._typing.set_remote_typing(update.room_id, update.user_id, update.typing):
            raise InvalidEdu(f"{update.user_id} is not joined to {update.room_id}")

    async def receive_receipt(self, origin: str, content: dict[str, Any]) -> None:
        rooms, problems = parse_receipts(origin, content)
        for problem in problems:
            logger.info("m.receipt EDU from %s: %s; left out", origin, problem)
        for room_id, receipts in rooms.items():
            refusal = await self._refusal(origin, room_id)
            if refusal is not None:
                logger.info("m.receipt EDU from %s: receipts of %s dropped: %s", origin, room_id, refusal)
                continue
            for receipt in receipts:
                if not await self._receipts.store_remote_receipt(receipt.room_id, receipt.user_id, receipt.event_id,
                                                                 receipt.thread_id, receipt.ts):
                    logger.debug("receipt of %s in %s from %s not taken (not newer, or another room's event)",
                                 receipt.user_id, room_id, origin)

    async def receive_presence(self, origin: str, content: dict[str, Any]) -> None:
        updates, problems = parse_presence(origin, content)
        for problem in problems:
            logger.info("m.presence EDU from %s: %s; left out", origin, problem)
        for update in updates:
            if not await self._events.get_rooms_for_user(update.user_id, ("join",)):
                logger.debug("presence of %s from %s dropped: in no room here", update.user_id, origin)
                continue
            await self._presence.set_remote_presence(update.user_id, update.state, update.status_msg,
                                                     update.last_active_ago)
