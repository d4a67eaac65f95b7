"""Erasing a member (GDPR article 17) as one background admin task, through existing mechanisms.

In order: redact every event the user sent (as the user while they are in the room, else as the
requesting admin; public-room messages stay when the request keeps them), prune the stored
originals of the redacted events and of those nobody local could redact any more, delete the
user's media (avatar included) from the database and disk, drop their 3PIDs, pending e-mail
validations, consent record and login log, then deactivate with erasure (devices, keys,
pushers, account data, push rules, profile and extended profile, IP log, rooms).

The result says what went (`removed`: class -> count) and what stayed and why (`kept`).
"""

from __future__ import annotations

import logging
from typing import Any

from homeserver.accounts.account_data import AccountDataService
from homeserver.accounts.account_management import AccountService
from homeserver.admin.common import existing_local_user, optional_bool
from homeserver.admin.consent import ConsentService
from homeserver.admin.login_audit import LoginAuditService
from homeserver.admin.tasks import AdminTaskRunner
from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.media.service import MediaService
from homeserver.requester import Requester
from homeserver.rooms.redaction import RedactionService
from storage.stores.accounts import AccountStore
from storage.stores.admin import AdminStore
from storage.stores.events import EventStore
from storage.stores.media import MediaStore
from storage.stores.pushers import PusherStore
from storage.stores.threepid_validation import ThreepidValidationStore
from storage.stores.user_events import UserEventStore

logger = logging.getLogger(__name__)

ERASE_USER = "erase_user"
PROGRESS_EVERY = 50
MEDIA_PAGE = 500
# Events that are messages (not room state): redacted unless kept as public-room messages.
_NOT_REDACTED_TYPES = {"m.room.redaction"}

WHY = {
    "public_room_messages": "kept on request: messages in public rooms stay for the other members' safety;"
                            " the author is shown by user ID only (name and avatar removed) and only to"
                            " members who were in the room when they were sent",
    "room_state": "state events other than membership (names, topics, power levels) that the rooms need;"
                  " they carry no profile data",
    "membership_events": "the rooms' membership history needs them; stored without display name or avatar",
    "erased_user_record": "the users row (deactivated, erased) keeps the ID from being registered again and tells"
                          " clients to hide the user's content",
    "redaction_events": "the redaction events themselves, which say only that the content was removed",
}


class UserErasureService:
    def __init__(self, server_name: str, accounts: AccountStore, admin_store: AdminStore, events: EventStore,
                 user_events: UserEventStore, redactions: RedactionService, account_service: AccountService,
                 account_data: AccountDataService, pushers: PusherStore, media: MediaService,
                 media_store: MediaStore, login_audit: LoginAuditService, consent: ConsentService,
                 validations: ThreepidValidationStore, tasks: AdminTaskRunner):
        self._server_name = server_name
        self._accounts = accounts
        self._admin_store = admin_store
        self._events = events
        self._user_events = user_events
        self._redactions = redactions
        self._account_service = account_service
        self._account_data = account_data
        self._pushers = pushers
        self._media = media
        self._media_store = media_store
        self._login_audit = login_audit
        self._consent = consent
        self._validations = validations
        self._tasks = tasks

    async def start_erasure(self, requester: Requester, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /_huiskamer/admin/v1/users/{userId}/erase`: schedule the task, return its ID."""
        await existing_local_user(self._accounts, self._server_name, user_id)
        keep_public = optional_bool(body, "keep_public_room_messages")
        for task in await self._admin_store.get_tasks(ERASE_USER, user_id):
            if task.status in ("scheduled", "active"):
                raise invalid_param(f"user_id: an erasure of {user_id} is already running ({task.task_id})")
        params = {"keep_public_room_messages": bool(keep_public), "admin": requester.user_id}
        return {"task_id": await self._tasks.schedule(ERASE_USER, user_id, params)}

    async def task_status(self, task_id: str) -> dict[str, Any]:
        """`GET /_huiskamer/admin/v1/tasks/{task_id}`: status, progress and (once done) the result."""
        task = await self._admin_store.get_task(task_id)
        if task is None:
            raise not_found(f"task_id: no task {task_id}")
        stored = dict(task.result or {})
        progress = stored.pop("progress", {})
        body: dict[str, Any] = {"status": "active" if task.status == "scheduled" else task.status,
                                "action": task.action, "resource_id": task.resource_id, "progress": progress}
        if task.status == "complete":
            body["result"] = stored
        if task.error:
            body["error"] = task.error
        return body

    async def run(self, task_id: str, params: dict[str, Any]) -> dict[str, Any]:
        task = await self._admin_store.get_task(task_id)
        assert task is not None
        user_id = task.resource_id
        eraser = _Erasure(self, task_id, user_id, params)
        return await eraser.run()


class _Erasure:
    """One run of the erasure of one user; counts what it removed and kept."""

    def __init__(self, service: UserErasureService, task_id: str, user_id: str, params: dict[str, Any]):
        self.s = service
        self.task_id = task_id
        self.user_id = user_id
        self.keep_public = bool(params.get("keep_public_room_messages"))
        self.admin = params["admin"]
        self.removed: dict[str, int] = {}
        self.kept: dict[str, int] = {}
        self.progress: dict[str, Any] = {"step": "starting"}

    def _count(self, bucket: dict[str, int], key: str, n: int = 1) -> None:
        if n:
            bucket[key] = bucket.get(key, 0) + n

    async def _report(self, step: str, **extra: Any) -> None:
        self.progress = {"step": step, **extra, "removed_so_far": dict(self.removed)}
        logger.info("Erasing %s: %s %s", self.user_id, step, extra or "")
        await self.s._tasks.progress(self.task_id, {"progress": self.progress})

    async def run(self) -> dict[str, Any]:
        s = self.s
        await self._report("redacting events")
        unredactable = await self._redact_events()
        await self._report("deleting media")
        await self._delete_media()
        await self._report("deleting identifiers and logs")
        threepids = await s._admin_store.get_threepids(self.user_id)
        for threepid in threepids:
            await s._validations.delete_for_address(threepid.medium, threepid.address)
        await s._admin_store.replace_threepids(self.user_id, set(), 0)
        self._count(self.removed, "threepids", len(threepids))
        self._count(self.removed, "login_log_entries", await s._login_audit.forget_user(self.user_id))
        self._count(self.removed, "consent_records", await s._consent.forget_user(self.user_id))
        self._count(self.removed, "ip_log_entries", len(await s._accounts.get_user_ips(self.user_id)))
        await self._report("deactivating with erasure")
        await self._count_settings()
        await s._account_service.deactivate_account(self.user_id, erase=True)
        self._count(self.kept, "erased_user_record")
        await self._report("pruning redacted originals")
        pruned = await s._user_events.prune_redacted_originals(self.user_id)
        pruned += await s._user_events.prune_events(unredactable)
        s._events.forget_cached_events(pruned)
        self._count(self.removed, "event_originals", len(set(pruned)))
        await self._report("done")
        return {
            "progress": self.progress,
            "removed": self.removed,
            "kept": {name: {"count": count, "why": WHY[name]} for name, count in self.kept.items()},
        }

    async def _redact_events(self) -> list[str]:
        """Redact what should go; returns the events nobody local could redact (pruned in place later)."""
        s = self.s
        public_rooms: dict[str, bool] = {}
        unredactable: list[str] = []
        summaries = await s._user_events.sent_event_summaries(self.user_id)
        for done, event in enumerate(summaries, 1):
            room_id, event_type = event.room_id, event.type
            if event.state_key is not None:
                self._count(self.kept, "membership_events" if event_type == "m.room.member" else "room_state")
                continue
            if event_type in _NOT_REDACTED_TYPES:
                self._count(self.kept, "redaction_events")
                continue
            if event.redacted:
                continue
            if self.keep_public:
                if room_id not in public_rooms:
                    public_rooms[room_id] = await self._is_public(room_id)
                if public_rooms[room_id]:
                    self._count(self.kept, "public_room_messages")
                    continue
            if await self._redact(room_id, event.event_id):
                self._count(self.removed, "events_redacted")
            else:
                unredactable.append(event.event_id)
                self._count(self.removed, "events_pruned_without_redaction")
            if done % PROGRESS_EVERY == 0:
                await self._report("redacting events", done=done, of=len(summaries))
        return unredactable

    async def _redact(self, room_id: str, event_id: str) -> bool:
        """Redact as the user (while joined), else as the admin; False when neither may."""
        membership, _ = await self.s._events.get_membership(room_id, self.user_id)
        senders = [self.user_id] if membership == "join" else []
        senders.append(self.admin)
        for sender in senders:
            try:
                await self.s._redactions.redact(Requester(sender, None, None), room_id, event_id, {},
                                                f"erase-{self.task_id}-{event_id}")
                return True
            except MatrixError as e:
                logger.info("Erasing %s: %s cannot redact %s: %s", self.user_id, sender, event_id, e.message)
        return False

    async def _is_public(self, room_id: str) -> bool:
        event_id = await self.s._events.get_current_state_event_id(room_id, "m.room.join_rules", "")
        event = await self.s._events.get_event(event_id) if event_id else None
        return event is not None and event.content.get("join_rule") == "public"

    async def _delete_media(self) -> None:
        s = self.s
        while True:
            media, _ = await s._media_store.list_user_media(self.user_id, offset=0, limit=MEDIA_PAGE)
            deleted = 0
            for item in media:
                if await s._media.delete_local_media(item.media_id):
                    deleted += 1
            self._count(self.removed, "media", deleted)
            if deleted == 0 or len(media) < MEDIA_PAGE:
                return

    async def _count_settings(self) -> None:
        s = self.s
        self._count(self.removed, "devices", len(await s._accounts.get_devices(self.user_id)))
        self._count(self.removed, "pushers", len(await s._pushers.get_for_user(self.user_id)))
        changes = await s._account_data.get_changes(self.user_id, 0)
        self._count(self.removed, "account_data",
                    len(changes.global_data) + sum(len(v) for v in changes.room_data.values()))
