"""Server-wide admin endpoints: registration tokens, event reports, version, background updates."""

from __future__ import annotations

import secrets
import string
from typing import Any

from homeserver import __version__
from homeserver.admin.common import optional_int
from homeserver.clock import Clock
from homeserver.errors import MatrixError, invalid_param, not_found
from storage.stores.events import EventStore
from storage.stores.registration_tokens import RegistrationTokenRow, RegistrationTokenStore
from storage.stores.reports import EventReport, ReportStore, UserReport

TOKEN_CHARS = string.ascii_letters + string.digits + "._~-"
MAX_TOKEN_LENGTH = 64


def _uses_allowed(body: dict[str, Any]) -> int | None:
    value = body.get("uses_allowed")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise invalid_param("uses_allowed: must be a non-negative integer or null")
    return value


def _token_json(row: RegistrationTokenRow) -> dict[str, Any]:
    return {"token": row.token, "uses_allowed": row.uses_allowed, "pending": row.pending, "completed": row.completed,
            "expiry_time": row.expiry_time}


class AdminServerService:
    def __init__(self, accounts: RegistrationTokenStore, reports: ReportStore, events: EventStore, clock: Clock):
        self._accounts = accounts
        self._reports = reports
        self._events = events
        self._clock = clock

    @staticmethod
    def server_version() -> dict[str, Any]:
        return {"server_version": __version__}

    @staticmethod
    def background_updates_status() -> dict[str, Any]:
        """Migrations run to completion at start-up, so nothing is ever running in the background."""
        return {"enabled": True, "current_updates": {}}

    # --- registration tokens ---------------------------------------------------------------
    async def list_registration_tokens(self, valid: bool | None) -> dict[str, Any]:
        rows = await self._accounts.list_registration_tokens(valid, self._clock.time_ms())
        return {"registration_tokens": [_token_json(r) for r in rows]}

    async def get_registration_token(self, token: str) -> dict[str, Any]:
        row = await self._accounts.get_registration_token(token)
        if row is None:
            raise not_found(f"No such registration token: {token}")
        return _token_json(row)

    async def create_registration_token(self, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /v1/registration_tokens/new`: the given token, or a random one of `length` characters."""
        token = body.get("token")
        if token is not None:
            if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
                raise invalid_param(f"token: must be a string of 1-{MAX_TOKEN_LENGTH} characters")
            if not set(token) <= set(TOKEN_CHARS):
                raise invalid_param("token: may only contain A-Z, a-z, 0-9, '.', '_', '~', '-'")
        length = body.get("length", 16)
        if not isinstance(length, int) or isinstance(length, bool) or not 0 < length <= MAX_TOKEN_LENGTH:
            raise invalid_param(f"length: must be an integer from 1 to {MAX_TOKEN_LENGTH}")
        uses_allowed = _uses_allowed(body)
        expiry_time = self._expiry_time(body)
        if token is not None:
            if not await self._accounts.create_registration_token(token, uses_allowed, expiry_time):
                raise invalid_param(f"token: {token} already exists")
        else:
            for _ in range(5):
                token = "".join(secrets.choice(TOKEN_CHARS) for _ in range(length))
                if await self._accounts.create_registration_token(token, uses_allowed, expiry_time):
                    break
            else:
                raise MatrixError(500, "M_UNKNOWN", "Could not generate a unique token")
        return await self.get_registration_token(token)

    async def update_registration_token(self, token: str, body: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "uses_allowed" in body:
            values["uses_allowed"] = _uses_allowed(body)
        if "expiry_time" in body:
            values["expiry_time"] = self._expiry_time(body)
        if not await self._accounts.update_registration_token(token, values):
            raise not_found(f"No such registration token: {token}")
        return await self.get_registration_token(token)

    async def delete_registration_token(self, token: str) -> None:
        if not await self._accounts.delete_registration_token(token):
            raise not_found(f"No such registration token: {token}")

    def _expiry_time(self, body: dict[str, Any]) -> int | None:
        expiry = optional_int(body, "expiry_time", minimum=None)
        if expiry is not None and expiry < self._clock.time_ms():
            raise invalid_param("expiry_time: must not be in the past")
        return expiry

    # --- event reports ----------------------------------------------------------------------
    async def list_event_reports(self, *, offset: int, limit: int, backwards: bool, room_id: str | None,
                                 user_id: str | None, event_sender: str | None) -> dict[str, Any]:
        rows, total = await self._reports.list_event_reports(
            offset=offset, limit=limit, backwards=backwards, room_id=room_id, reporter=user_id,
            event_sender=event_sender)
        body: dict[str, Any] = {"event_reports": [await self._with_room(r) for r in rows], "total": total}
        if offset + limit < total:
            body["next_token"] = offset + len(rows)
        return body

    async def get_event_report(self, report_id: str) -> dict[str, Any]:
        row = await self._reports.get_event_report(_report_id(report_id))
        if row is None:
            raise not_found("Event report not found")
        report = await self._with_room(row)
        event = await self._events.get_event(row.event_id)
        report["event_json"] = dict(event.pdu) if event is not None else None
        return report

    async def delete_event_report(self, report_id: str) -> None:
        if not await self._reports.delete_event_report(_report_id(report_id)):
            raise not_found("Event report not found")

    # --- user reports -----------------------------------------------------------------------
    async def list_user_reports(self, *, offset: int, limit: int, backwards: bool, user_id: str | None,
                                target_user_id: str | None) -> dict[str, Any]:
        rows, total = await self._reports.list_user_reports(offset=offset, limit=limit, backwards=backwards,
                                                            reporter=user_id, target=target_user_id)
        body: dict[str, Any] = {"user_reports": [_user_report_json(r) for r in rows], "total": total}
        if offset + limit < total:
            body["next_token"] = offset + len(rows)
        return body

    async def get_user_report(self, report_id: str) -> dict[str, Any]:
        row = await self._reports.get_user_report(_report_id(report_id))
        if row is None:
            raise not_found("User report not found")
        return _user_report_json(row)

    async def delete_user_report(self, report_id: str) -> None:
        if not await self._reports.delete_user_report(_report_id(report_id)):
            raise not_found("User report not found")

    async def _with_room(self, row: EventReport) -> dict[str, Any]:
        """An event report as the admin API shows it (Synapse's fields: `user_id` is the reporter)."""
        return {
            "id": row.id, "received_ts": row.received_ts, "room_id": row.room_id, "event_id": row.event_id,
            "user_id": row.reporter, "reason": row.reason, "score": row.score, "sender": row.sender,
            "name": await self._state_field(row.room_id, "m.room.name", "name"),
            "canonical_alias": await self._state_field(row.room_id, "m.room.canonical_alias", "alias"),
        }

    async def _state_field(self, room_id: str | None, event_type: str, key: str) -> Any:
        if room_id is None:
            return None
        event_id = await self._events.get_current_state_event_id(room_id, event_type, "")
        event = await self._events.get_event(event_id) if event_id else None
        return event.content.get(key) if event is not None else None


def _user_report_json(row: UserReport) -> dict[str, Any]:
    """A user report as the admin API shows it (`user_id` is the reporter)."""
    return {"id": row.id, "received_ts": row.received_ts, "target_user_id": row.target_user_id,
            "user_id": row.reporter, "reason": row.reason}


def _report_id(text: str) -> int:
    if not text.isdigit():
        raise invalid_param("report_id: must be a string representing a positive integer")
    return int(text)
