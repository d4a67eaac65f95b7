"""Reporting rooms, events and users to the server's moderators."""

from __future__ import annotations

from typing import Any

from homeserver.clock import Clock
from homeserver.errors import bad_json, invalid_param, not_found
from homeserver.identifiers import is_valid_user_id
from homeserver.requester import Requester
from homeserver.rooms.reading import RoomReader
from storage.stores.events import EventStore
from storage.stores.reports import ReportStore
from storage.stores.users import UserStore

MAX_REASON_LENGTH = 1000


def _reason(body: dict[str, Any]) -> str | None:
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH):
        raise bad_json(f"reason: must be a string of at most {MAX_REASON_LENGTH} characters")
    return reason


class ReportService:
    def __init__(self, reports: ReportStore, events: EventStore, accounts: UserStore, reader: RoomReader,
                 clock: Clock):
        self._reports = reports
        self._events = events
        self._accounts = accounts
        self._reader = reader
        self._clock = clock

    async def report_event(self, requester: Requester, room_id: str, event_id: str, body: dict[str, Any]) -> None:
        reason = _reason(body)
        score = body.get("score")
        if score is not None and (not isinstance(score, int) or isinstance(score, bool) or not -100 <= score <= 0):
            raise invalid_param("score: must be an integer between -100 and 0")
        event = await self._events.get_event(event_id)
        # Unknown and invisible events look alike, so reports cannot probe for events.
        if event is None or event.room_id != room_id or not await self._reader.filter_visible(requester.user_id,
                                                                                               [event]):
            raise not_found("Event not found")
        await self._reports.add_report(requester.user_id, room_id=room_id, event_id=event_id, target_user_id=None,
                                       reason=reason, score=score, received_ts=self._clock.time_ms())

    async def report_room(self, requester: Requester, room_id: str, body: dict[str, Any]) -> None:
        reason = _reason(body)
        if await self._events.get_room_version_id(room_id) is None:
            raise not_found("Room not found")
        await self._reports.add_report(requester.user_id, room_id=room_id, event_id=None, target_user_id=None,
                                       reason=reason, score=None, received_ts=self._clock.time_ms())

    async def report_user(self, requester: Requester, user_id: str, body: dict[str, Any]) -> None:
        reason = _reason(body)
        if not is_valid_user_id(user_id) or await self._accounts.get_user(user_id) is None:
            raise not_found("User not found")
        await self._reports.add_report(requester.user_id, room_id=None, event_id=None, target_user_id=user_id,
                                       reason=reason, score=None, received_ts=self._clock.time_ms())
