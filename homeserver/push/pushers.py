"""Pushers: the users' push gateways, and delivering notifications to them.

Each pusher has its own delivery queue and task, so notifications to one device arrive in order
and a slow or failing gateway delays nobody else. A failed delivery (network error, timeout, 5xx,
429) is retried with exponential backoff; after `max_attempts` the notification is dropped (the
next one carries fresh counts anyway). A gateway that lists the pushkey as `rejected` loses the
pusher (spec: "Homeservers must cease sending notification requests for these pushkeys").

All pushers are kept in memory: there are few of them, and each evaluated event looks up the
pushers of every notified member.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from homeserver.accounts.auth import Requester
from homeserver.clock import Clock
from homeserver.errors import MatrixError, bad_json, invalid_param
from homeserver.push.evaluator import Outcome
from homeserver.push.notifications import EventNotifications, NotificationService
from storage.stores.pushers import PusherStore, StoredPusher

logger = logging.getLogger(__name__)

GATEWAY_PATH = "/_matrix/push/v1/notify"
MAX_APP_ID_CHARS = 64
MAX_PUSHKEY_BYTES = 512
EVENT_ID_ONLY = "event_id_only"
_REQUIRED = ("app_display_name", "device_display_name", "lang", "data")

PusherKey = tuple[str, str, str]  # (user_id, app_id, pushkey)


@dataclass(frozen=True, slots=True)
class _Delivery:
    batch: EventNotifications
    outcome: Outcome


@dataclass(slots=True)
class _PusherQueue:
    deliveries: deque[_Delivery] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


def pusher_json(pusher: StoredPusher) -> dict[str, Any]:
    """A pusher as GET /pushers shows it."""
    body: dict[str, Any] = {
        "pushkey": pusher.pushkey, "kind": pusher.kind, "app_id": pusher.app_id,
        "app_display_name": pusher.app_display_name, "device_display_name": pusher.device_display_name,
        "lang": pusher.lang, "data": pusher.data,
    }
    if pusher.profile_tag is not None:
        body["profile_tag"] = pusher.profile_tag
    return body


def notification_body(pusher: StoredPusher, delivery: _Delivery, unread: int) -> dict[str, Any]:
    """The JSON body POSTed to the push gateway (push gateway API, /notify)."""
    event = delivery.batch.event
    tweaks = delivery.outcome.tweaks
    device = {
        "app_id": pusher.app_id, "pushkey": pusher.pushkey, "pushkey_ts": pusher.pushkey_ts // 1000,
        # Everything the client gave except `url` (client-server API, /pushers/set).
        "data": {k: v for k, v in pusher.data.items() if k != "url"},
        "tweaks": tweaks,
    }
    # As Synapse: urgent when it makes a sound or highlights, or when the server cannot tell
    # (encrypted); everything else may wait for the device's next wake-up.
    urgent = event.type == "m.room.encrypted" or bool(tweaks.get("highlight")) or bool(tweaks.get("sound"))
    notification: dict[str, Any] = {"event_id": event.event_id, "room_id": event.room_id,
                                    "prio": "high" if urgent else "low"}
    if pusher.data.get("format") != EVENT_ID_ONLY:
        notification["type"] = event.type
        notification["sender"] = event.sender
        if delivery.batch.sender_display_name:
            notification["sender_display_name"] = delivery.batch.sender_display_name
        if delivery.batch.room_name:
            notification["room_name"] = delivery.batch.room_name
        if delivery.batch.room_alias:
            notification["room_alias"] = delivery.batch.room_alias
        if event.type == "m.room.member" and event.state_key is not None:
            notification["user_is_target"] = event.state_key == pusher.user_id
        if event.content:
            notification["content"] = dict(event.content)
    # Counts whose value is zero should be omitted (push gateway API).
    notification["counts"] = {"unread": unread} if unread else {}
    notification["devices"] = [device]
    return {"notification": notification}


class PusherService:
    def __init__(self, store: PusherStore, notifications: NotificationService, clock: Clock, *,
                 request_timeout_s: float = 15.0):
        self._store = store
        self._notifications = notifications
        self._clock = clock
        self._request_timeout_s = request_timeout_s
        self._by_user: dict[str, dict[tuple[str, str], StoredPusher]] | None = None
        self._load_lock = asyncio.Lock()
        self._queues: dict[PusherKey, _PusherQueue] = {}
        self._session: aiohttp.ClientSession | None = None
        self._stopped = False
        # Backoff between attempts: initial, doubling, capped. Tests shorten these.
        self.retry_initial_s = 2.0
        self.retry_max_s = 600.0
        self.max_attempts = 10

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        pass

    async def stop(self) -> None:
        self._stopped = True
        tasks = [q.task for q in self._queues.values() if q.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._queues.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _pushers(self) -> dict[str, dict[tuple[str, str], StoredPusher]]:
        if self._by_user is None:
            async with self._load_lock:
                if self._by_user is None:
                    by_user: dict[str, dict[tuple[str, str], StoredPusher]] = {}
                    for pusher in await self._store.get_all():
                        by_user.setdefault(pusher.user_id, {})[(pusher.app_id, pusher.pushkey)] = pusher
                    self._by_user = by_user
        return self._by_user

    # --- the client API ------------------------------------------------------------------
    async def get_pushers(self, user_id: str) -> list[dict[str, Any]]:
        """GET /pushers."""
        return [pusher_json(p) for p in await self._store.get_for_user(user_id)]

    async def set_pusher(self, requester: Requester, body: dict[str, Any]) -> None:
        """POST /pushers/set: create, update (same app_id and pushkey) or, with `kind: null`, delete."""
        missing = [name for name in ("kind", "app_id", "pushkey") if name not in body]
        if missing:
            raise MatrixError(400, "M_MISSING_PARAM", f"Missing parameters: {', '.join(missing)}")
        app_id, pushkey, kind = body["app_id"], body["pushkey"], body["kind"]
        if not isinstance(app_id, str) or not app_id:
            raise bad_json("app_id: must be a non-empty string")
        if not isinstance(pushkey, str) or not pushkey:
            raise bad_json("pushkey: must be a non-empty string")
        if kind is None:
            await self._delete(requester.user_id, app_id, pushkey)
            return
        if len(app_id) > MAX_APP_ID_CHARS:
            raise invalid_param(f"app_id: longer than {MAX_APP_ID_CHARS} characters")
        if len(pushkey.encode("utf-8")) > MAX_PUSHKEY_BYTES:
            raise invalid_param(f"pushkey: longer than {MAX_PUSHKEY_BYTES} bytes")
        if not isinstance(kind, str):
            raise bad_json("kind: must be a string or null")
        if kind != "http":
            raise invalid_param(f"kind: {kind!r} pushers are not supported; use 'http'")
        missing = [name for name in _REQUIRED if name not in body]
        if missing:
            raise MatrixError(400, "M_MISSING_PARAM", f"Missing parameters: {', '.join(missing)}")
        for name in ("app_display_name", "device_display_name", "lang"):
            if not isinstance(body[name], str):
                raise bad_json(f"{name}: must be a string")
        profile_tag = body.get("profile_tag")
        if profile_tag is not None and not isinstance(profile_tag, str):
            raise bad_json("profile_tag: must be a string")
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise bad_json("append: must be a boolean")
        data = body["data"]
        if not isinstance(data, dict):
            raise bad_json("data: must be an object")
        _check_gateway_url(data.get("url"))
        if "format" in data and data["format"] != EVENT_ID_ONLY:
            raise invalid_param(f"data.format: only {EVENT_ID_ONLY!r} is defined")
        pusher = StoredPusher(
            user_id=requester.user_id, app_id=app_id, pushkey=pushkey, kind=kind,
            app_display_name=body["app_display_name"], device_display_name=body["device_display_name"],
            profile_tag=profile_tag, lang=body["lang"], data=data, device_id=requester.device_id,
            pushkey_ts=self._clock.time_ms(),
        )
        removed = await self._store.set_pusher(pusher, replace_other_users=not append)
        pushers = await self._pushers()
        for old in removed:
            pushers.get(old.user_id, {}).pop((old.app_id, old.pushkey), None)
        pushers.setdefault(pusher.user_id, {})[(app_id, pushkey)] = pusher

    async def _delete(self, user_id: str, app_id: str, pushkey: str) -> None:
        await self._store.delete_pusher(user_id, app_id, pushkey)
        (await self._pushers()).get(user_id, {}).pop((app_id, pushkey), None)

    async def remove_for_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Devices-deleted callback: a session's pushers end with it (logout, password change)."""
        for key in await self._store.delete_for_devices(user_id, device_ids):
            (await self._pushers()).get(user_id, {}).pop(key, None)

    async def remove_all_for_user(self, user_id: str) -> None:
        """Forget every pusher of the user (deactivation)."""
        await self._store.delete_for_user(user_id)
        (await self._pushers()).pop(user_id, None)

    # --- delivery ----------------------------------------------------------------------------
    async def on_notified(self, batch: EventNotifications) -> None:
        """NotificationService callback: queue a gateway request for each pusher of each notified user."""
        if self._stopped:
            return
        pushers = await self._pushers()
        for notified in batch.notified:
            for (app_id, pushkey) in pushers.get(notified.user_id, {}):
                key = (notified.user_id, app_id, pushkey)
                queue = self._queues.get(key)
                if queue is None:
                    queue = self._queues[key] = _PusherQueue()
                queue.deliveries.append(_Delivery(batch, notified.outcome))
                if queue.task is None:
                    queue.task = asyncio.create_task(self._deliver_all(key, queue), name=f"pusher-{pushkey[:16]}")

    async def _deliver_all(self, key: PusherKey, queue: _PusherQueue) -> None:
        try:
            while queue.deliveries:
                delivery = queue.deliveries.popleft()
                try:
                    await self._deliver(key, delivery)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("pusher delivery failed for %s", key[0])
        finally:
            queue.task = None
            if not queue.deliveries and self._queues.get(key) is queue:
                del self._queues[key]

    async def _deliver(self, key: PusherKey, delivery: _Delivery) -> None:
        user_id, app_id, pushkey = key
        delay = self.retry_initial_s
        for attempt in range(1, self.max_attempts + 1):
            pusher = (await self._pushers()).get(user_id, {}).get((app_id, pushkey))
            if pusher is None:
                return  # deleted meanwhile
            unread = await self._notifications.total_unread(user_id)
            outcome = await self._post(pusher, notification_body(pusher, delivery, unread))
            if outcome == "ok":
                return
            if outcome == "rejected":
                logger.info("push gateway rejected pushkey of %s (%s): removing the pusher", user_id, app_id)
                await self._delete(user_id, app_id, pushkey)
                return
            if outcome == "give_up" or attempt == self.max_attempts:
                logger.warning("dropping a notification for %s after %d attempt(s)", user_id, attempt)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max_s)

    async def _post(self, pusher: StoredPusher, body: dict[str, Any]) -> str:
        """'ok', 'rejected' (the gateway refused this pushkey), 'retry' or 'give_up'."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._request_timeout_s))
        try:
            async with self._session.post(pusher.data["url"], json=body) as response:
                if response.status == 429 or response.status >= 500:
                    return "retry"
                if response.status >= 400:
                    # The gateway will not take this request however often we send it.
                    logger.warning("push gateway answered %d for %s", response.status, pusher.user_id)
                    return "give_up"
                try:
                    answer = await response.json(content_type=None)
                except ValueError:
                    answer = {}
        except (aiohttp.ClientError, TimeoutError) as e:
            logger.info("push gateway unreachable for %s: %s", pusher.user_id, e)
            return "retry"
        rejected = answer.get("rejected") if isinstance(answer, dict) else None
        if isinstance(rejected, list) and pusher.pushkey in rejected:
            return "rejected"
        return "ok"


def _check_gateway_url(url: Any) -> None:
    if not isinstance(url, str) or not url:
        raise invalid_param("data.url: required for http pushers")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid_param("data.url: must be an absolute http(s) URL")
    if parts.path != GATEWAY_PATH:
        raise invalid_param(f"data.url: the path must be {GATEWAY_PATH}")
