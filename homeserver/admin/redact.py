"""Redacting everything a user sent (`POST /v1/user/{userId}/redact`), as a background job.

The redactions are sent by the user (local and still joined), else by the requesting admin;
where neither may redact, the event is listed in `failed_redactions` with the reason, as
Synapse does. Join events are redacted with the messages (their display names and avatars
are personal data); other membership events are left, since the room's state needs them.
"""

from __future__ import annotations

import logging
from typing import Any

from homeserver.admin.common import optional_int, optional_str
from homeserver.admin.tasks import AdminTaskRunner
from homeserver.errors import MatrixError, bad_json, invalid_param, missing_param, not_found
from homeserver.identifiers import parse_user_id
from homeserver.requester import Requester
from homeserver.rooms.redaction import RedactionService
from storage.stores.admin import AdminStore
from storage.stores.events import EventStore

logger = logging.getLogger(__name__)

REDACT_ALL = "redact_all_events"
REDACTED_TYPES = ("m.room.member", "m.room.message", "m.room.encrypted")
DEFAULT_LIMIT = 1000


class UserRedactionService:
    def __init__(self, server_name: str, events: EventStore, admin_store: AdminStore, redactions: RedactionService,
                 tasks: AdminTaskRunner):
        self._server_name = server_name
        self._events = events
        self._store = admin_store
        self._redactions = redactions
        self._tasks = tasks

    async def start_redact(self, requester: Requester, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        parse_user_id(user_id, "user_id")
        rooms = body.get("rooms")
        if rooms is None:
            raise missing_param("rooms: required (an empty list means all the user's rooms)")
        if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
            raise bad_json("rooms: must be a list of room IDs")
        reason = optional_str(body, "reason", 1000)
        limit = optional_int(body, "limit", minimum=1) or DEFAULT_LIMIT
        before_ts = optional_int(body, "before_ts")
        after_ts = optional_int(body, "after_ts")
        if body.get("use_admin") is not None and not isinstance(body.get("use_admin"), bool):
            raise bad_json("use_admin: must be true or false")
        if not rooms:
            rooms = await self._store.rooms_of_user_ever(user_id)
        for task in await self._store.get_tasks(REDACT_ALL, user_id):
            if task.status in ("scheduled", "active"):
                raise invalid_param(f"user_id: a redaction of {user_id} is already running")
        params = {"rooms": rooms, "reason": reason, "limit": limit, "before_ts": before_ts, "after_ts": after_ts,
                  "admin": requester.user_id, "use_admin": bool(body.get("use_admin"))}
        return {"redact_id": await self._tasks.schedule(REDACT_ALL, user_id, params)}

    async def status(self, redact_id: str) -> dict[str, Any]:
        task = await self._store.get_task(redact_id)
        if task is None or task.action != REDACT_ALL:
            raise not_found(f"redact id '{redact_id}' not found")
        return {"status": task.status, "failed_redactions": (task.result or {}).get("failed_redactions", {})}

    async def run(self, task_id: str, params: dict[str, Any]) -> dict[str, Any]:
        task = await self._store.get_task(task_id)
        assert task is not None
        user_id = task.resource_id
        local = parse_user_id(user_id)[1] == self._server_name
        failed: dict[str, str] = {}
        redacted = 0
        for room_id in params["rooms"]:
            event_ids = await self._store.events_sent_by(user_id, room_id, REDACTED_TYPES, params["limit"],
                                                         params["before_ts"], params["after_ts"])
            membership, _ = await self._events.get_membership(room_id, user_id)
            as_user = local and membership == "join" and not params["use_admin"]
            sender = Requester(user_id if as_user else params["admin"], None, None)
            body = {"reason": params["reason"]} if params["reason"] else {}
            for event_id in event_ids:
                event = await self._events.get_event(event_id)
                if event is None or (event.type == "m.room.member" and event.membership != "join"):
                    continue
                try:
                    await self._redactions.redact(sender, room_id, event_id, body, f"redact-{task_id}-{event_id}")
                    redacted += 1
                except MatrixError as e:
                    failed[event_id] = e.message
            logger.info("Redacting %s's events: %s done, %d redacted, %d failed so far", user_id, room_id,
                        redacted, len(failed))
            await self._tasks.progress(task_id, {"failed_redactions": failed})
        return {"failed_redactions": failed}
