"""Pushers: the users' push gateways, and delivering notifications to them.

Delivery is durable. A stream stage (`pusher_handoff`) follows push evaluation: for each batch
of evaluated events it reads the push actions of users with pushers and queues one outbound
item per notification and pusher, in the transaction that also moves the stage. The outbound
queue then delivers each pusher's items in order (one gateway request each), retrying with
backoff while the gateway is down or answers 5xx/429, across restarts too. A gateway that
answers another 4xx gets nothing more for that notification; one that lists the pushkey as
`rejected` loses the pusher (spec: "Homeservers must cease sending notification requests for
these pushkeys").

All pushers are kept in memory: there are few of them, and every evaluated batch looks up the
pushers of every notified member.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from prometheus_client import CollectorRegistry

from homeserver.requester import Requester
from homeserver.clock import Clock
from homeserver.errors import bad_json, invalid_param, missing_param
from homeserver.events.event import Event
from homeserver.outbound.queue import PermanentDeliveryError
from homeserver.push.evaluator import outcome_of
from homeserver.push.notifications import NotificationService
from homeserver.streams.bus import StreamBus
from homeserver.streams.stages import EventStage
from homeserver.streams.updates import DevicesDeleted, OutboundItemsQueued
from storage.stores.events import EventStore
from storage.stores.notifications import NotificationStore
from storage.stores.pushers import PUSHER_KIND, PusherStore, StoredPusher
from storage.stores.stages import StagePositionStore

logger = logging.getLogger(__name__)

GATEWAY_PATH = "/_matrix/push/v1/notify"
MAX_APP_ID_CHARS = 64
MAX_PUSHKEY_BYTES = 512
EVENT_ID_ONLY = "event_id_only"
_REQUIRED = ("app_display_name", "device_display_name", "lang", "data")

HANDOFF_STAGE = "pusher_handoff"


class DeliveryFailed(Exception):
    """The gateway could not take the notification now; the outbound queue retries."""


def pusher_destination(pusher: StoredPusher) -> str:
    """The outbound queue destination of a pusher: its user and a digest of app ID and pushkey."""
    digest = hashlib.sha256(f"{pusher.app_id}\0{pusher.pushkey}".encode()).hexdigest()[:16]
    return f"{pusher.user_id}/{digest}"


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


@dataclass(frozen=True, slots=True)
class RoomFacts:
    """What a notification names about its room and sender, read when it is sent."""

    sender_display_name: str | None
    room_name: str | None
    room_alias: str | None


def notification_body(pusher: StoredPusher, event: Event, tweaks: dict[str, Any], facts: RoomFacts,
                      unread: int) -> dict[str, Any]:
    """The JSON body POSTed to the push gateway (push gateway API, /notify)."""
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
        if facts.sender_display_name:
            notification["sender_display_name"] = facts.sender_display_name
        if facts.room_name:
            notification["room_name"] = facts.room_name
        if facts.room_alias:
            notification["room_alias"] = facts.room_alias
        if event.type == "m.room.member" and event.state_key is not None:
            notification["user_is_target"] = event.state_key == pusher.user_id
        if event.content:
            notification["content"] = dict(event.content)
    # Counts whose value is zero should be omitted (push gateway API).
    notification["counts"] = {"unread": unread} if unread else {}
    notification["devices"] = [device]
    return {"notification": notification}


class PusherService:
    """Pushers over the client API, the `pusher_handoff` stage, and the courier of `pusher` items."""

    # One gateway request per notification.
    max_items = 1
    # A pusher's destination names its user: queue metrics are summed over all pushers.
    metrics_per_destination = False

    def __init__(self, store: PusherStore, notifications: NotificationService, notification_store: NotificationStore,
                 events: EventStore, positions: StagePositionStore, bus: StreamBus, clock: Clock, *,
                 request_timeout_s: float = 15.0, registry: CollectorRegistry | None = None):
        self._store = store
        self._notifications = notifications
        self._notification_store = notification_store
        self._events = events
        self._bus = bus
        self._clock = clock
        self._request_timeout_s = request_timeout_s
        self._by_user: dict[str, dict[tuple[str, str], StoredPusher]] | None = None
        self._load_lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self.stage = EventStage(HANDOFF_STAGE, events, positions, self._hand_off, upstream=notifications.stage,
                                registry=registry)

    async def close(self) -> None:
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
            raise missing_param(f"Missing parameters: {', '.join(missing)}")
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
            raise missing_param(f"Missing parameters: {', '.join(missing)}")
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

    async def on_devices_deleted(self, update: DevicesDeleted) -> None:
        """A session's pushers end with it (logout, password change, device deletion)."""
        for key in await self._store.delete_for_devices(update.user_id, list(update.device_ids)):
            (await self._pushers()).get(update.user_id, {}).pop(key, None)

    async def remove_all_for_user(self, user_id: str) -> None:
        """Forget every pusher of the user (deactivation)."""
        await self._store.delete_for_user(user_id)
        (await self._pushers()).pop(user_id, None)

    # --- the hand-off stage -------------------------------------------------------------------
    async def _hand_off(self, events: Sequence[Event], upto: int) -> bool:
        """Queue a delivery per notification and pusher; False when there was nothing to queue."""
        pushers = await self._pushers()
        users = [user_id for user_id, of_user in pushers.items() if of_user]
        if not events or not users:
            return False
        notifications = await self._notification_store.get_push_actions_for_events(
            [event.event_id for event in events], users)
        queued: dict[str, list[dict[str, Any]]] = {}
        for notification in notifications:
            for pusher in pushers.get(notification.user_id, {}).values():
                queued.setdefault(pusher_destination(pusher), []).append({
                    "user_id": pusher.user_id, "app_id": pusher.app_id, "pushkey": pusher.pushkey,
                    "event_id": notification.event_id, "actions": notification.actions,
                })
        if not queued:
            return False
        await self._store.queue_deliveries(queued, stage=HANDOFF_STAGE, upto=upto, now_ms=self._clock.time_ms())
        for destination, items in queued.items():
            await self._bus.publish(OutboundItemsQueued(PUSHER_KIND, destination, len(items)))
        return True

    # --- the courier -----------------------------------------------------------------------------
    async def deliver(self, destination: str, txn_id: str, items: list[dict[str, Any]]) -> None:
        """Send queued notifications to a pusher's gateway (outbound queue courier)."""
        for item in items:
            await self._deliver(item)

    async def _deliver(self, item: dict[str, Any]) -> None:
        user_id, app_id, pushkey = item["user_id"], item["app_id"], item["pushkey"]
        pusher = (await self._pushers()).get(user_id, {}).get((app_id, pushkey))
        if pusher is None:
            return  # deleted meanwhile: nothing to deliver to
        event = await self._events.get_event(item["event_id"])
        if event is None:
            return  # purged meanwhile
        tweaks = outcome_of("", "", item["actions"]).tweaks
        unread = await self._notifications.total_unread(user_id)
        body = notification_body(pusher, event, tweaks, await self._room_facts(event), unread)
        outcome = await self._post(pusher, body)
        if outcome == "rejected":
            logger.info("push gateway rejected pushkey of %s (%s): removing the pusher", user_id, app_id)
            await self._delete(user_id, app_id, pushkey)
        elif outcome == "give_up":
            raise PermanentDeliveryError("the gateway refused the notification")
        elif outcome == "retry":
            raise DeliveryFailed("the gateway is unreachable or failing")

    async def _room_facts(self, event: Event) -> RoomFacts:
        wanted = [("m.room.name", ""), ("m.room.canonical_alias", ""), ("m.room.member", event.sender)]
        state = await self._events.get_current_state_ids(event.room_id)
        loaded = await self._events.get_events([state[k] for k in wanted if k in state])

        def field(key: tuple[str, str], name: str) -> str | None:
            found = loaded.get(state.get(key, ""))
            value = found.content.get(name) if found is not None else None
            return value if isinstance(value, str) and value else None

        return RoomFacts(sender_display_name=field(("m.room.member", event.sender), "displayname"),
                         room_name=field(("m.room.name", ""), "name"),
                         room_alias=field(("m.room.canonical_alias", ""), "alias"))

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
