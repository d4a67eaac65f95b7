"""The composition root: config in, every part built and wired, background loops started.

Loops: the inbox worker (events of stored transactions, in order), export expiry, the login
watcher (security notices), and the retention schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from appservices.privacy.bot import PrivacyBot
from appservices.privacy.collector import Collector
from appservices.privacy.config import PrivacyConfig
from appservices.privacy.consent import ConsentService
from appservices.privacy.database import Database
from appservices.privacy.device_watch import DevicePoller
from appservices.privacy.erasure import Eraser
from appservices.privacy.hsclient import (
    HUISKAMER,
    HomeserverClient,
    HomeserverError,
    Unreachable,
    q,
    register_with_shared_secret,
)
from appservices.privacy.http import PrivacyHttp
from appservices.privacy.mailer import Mailer
from appservices.privacy.retention import RetentionEngine
from appservices.privacy.store import PrivacyStore

logger = logging.getLogger(__name__)


TRANSACTIONS_KEPT_MS = 7 * 24 * 3600 * 1000


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class PrivacyService:
    def __init__(self, config: PrivacyConfig, clock: Callable[[], int] = wall_clock_ms, *,
                 login_poll_timeout_ms: int = 30000, expiry_interval_s: float = 60.0,
                 device_poll_s: float = 1.0):
        self.config = config
        self.clock = clock
        self.db = Database(config.database)
        self.store = PrivacyStore(self.db)
        self.hs = HomeserverClient(config.homeserver_url, config.as_token, config.admin_token, config.bot_user_id)
        self.consent = ConsentService(config, self.hs, self.store)
        self.mailer = Mailer(config.smtp) if config.smtp is not None else None
        self.eraser = Eraser(self.hs, keep_public_room_messages=config.keep_public_room_messages,
                             kept_classes=config.retention.kept)
        self.collector = Collector(self.hs, config.server_name, config.export_progress_every)
        self.bot = PrivacyBot(config, self.hs, self.store, self.collector, self.eraser, self.consent, self.mailer,
                              clock)
        self.retention = RetentionEngine(self.hs, self.store, config.retention, clock, self.bot.warn_inactive,
                                         self.bot.erase_inactive, config.bot_user_id)
        self.http = PrivacyHttp(hs_token=config.hs_token, admin_token=config.admin_api_token, store=self.store,
                                consent=self.consent, on_transaction=self.receive_transaction,
                                run_retention=self.run_retention, clock=clock, bot_user_id=config.bot_user_id)
        self._login_poll_timeout_ms = login_poll_timeout_ms
        self._device_poll_s = device_poll_s
        self._expiry_interval_s = expiry_interval_s
        self._inbox_wakeup = asyncio.Event()
        self._loops: list[asyncio.Task[Any]] = []
        self._runner: web.AppRunner | None = None
        self._retention_lock = asyncio.Lock()
        self.port = 0
        self.login_watcher_state = "starting"  # running | unavailable
        self.ready = asyncio.Event()  # set once the bot is admin and the consent policy is published
        self.consent_swept = asyncio.Event()  # set once every existing member was asked (tests)

    @property
    def url(self) -> str:
        return f"http://{self.config.bind_host}:{self.port}"

    async def start(self) -> None:
        await self.db.open()
        await self.hs.open()
        self._runner = web.AppRunner(self.http.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.bind_host, self.config.bind_port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._loops = [asyncio.create_task(self._inbox_loop(), name="privacy-inbox"),
                       asyncio.create_task(self._expiry_loop(), name="privacy-export-expiry")]
        if self.config.security_notices:
            self._loops.append(asyncio.create_task(self._login_loop(), name="privacy-logins"))
        if self.config.retention.interval_hours > 0:
            self._loops.append(asyncio.create_task(self._retention_loop(), name="privacy-retention"))
        self._loops.append(asyncio.create_task(self._setup_with_homeserver(), name="privacy-setup"))
        self._inbox_wakeup.set()

    async def stop(self) -> None:
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self.bot.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.hs.close()
        await self.db.close()

    async def ensure_bot_is_admin(self) -> None:
        """The admin API needs a server admin: with the registration shared secret, a throwaway admin
        account makes the bot one and is deactivated again; otherwise say what to do."""
        try:
            await self.hs.admin("GET", f"/v1/users/{q(self.config.bot_user_id)}/admin")
            return
        except HomeserverError as exc:
            if exc.status != 403 or self.config.admin_token:
                logger.warning("checking the admin API failed: %s", exc)
                return
        secret = self.config.homeserver_shared_secret
        if not secret:
            logger.error("%s is not a server admin: make it one (PUT /_synapse/admin/v2/users/%s "
                         "{\"admin\": true}) or set homeserver_shared_secret or admin_token in the config",
                         self.config.bot_user_id, self.config.bot_user_id)
            return
        try:  # Synapse creates an application service's sender only when it registers
            await self.hs.cs("POST", "/register", {"type": "m.login.application_service",
                                                   "username": self.config.bot_localpart, "inhibit_login": True})
        except HomeserverError as exc:
            if exc.errcode != "M_USER_IN_USE":
                raise
        helper = await register_with_shared_secret(self.hs, secret, f"privacy-setup-{secrets.token_hex(4)}")
        try:
            await self.hs.admin("PUT", f"/v2/users/{q(self.config.bot_user_id)}", {"admin": True},
                                token=helper["access_token"])
        finally:  # the throwaway admin never outlives this
            await self.hs.admin("POST", f"/v1/deactivate/{q(helper['user_id'])}", {"erase": False},
                                token=helper["access_token"])
        await self.store.audit(self.clock(), "service", self.config.bot_user_id, "bot.made_admin",
                               detail={"helper": helper["user_id"]})
        logger.info("made %s a server admin", self.config.bot_user_id)

    async def _setup_with_homeserver(self) -> None:
        """Once the homeserver answers (it may start after us): the bot made admin, the policy published."""
        async def set_up() -> None:
            await self.ensure_bot_is_admin()
            await self.consent.publish_policy()
            await self._backlog_handled()
            await self.bot.resume_interrupted()

        delay = await _until_done("setting up with the homeserver", set_up, 0.5)
        self.ready.set()
        # A new policy version: every existing member is asked now, not at their next sign-in.
        await _until_done("asking members for consent", self.bot.sweep_consent, delay)
        self.consent_swept.set()

    async def _backlog_handled(self, limit_s: float = 60.0) -> None:
        """Wait (bounded) until the events stored before a restart are handled: an interrupted request
        resumes only once the bookkeeping they carry (the member's DM room) is back."""
        deadline = asyncio.get_running_loop().time() + limit_s
        while await self.store.unprocessed_events() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)

    # --- transactions -----------------------------------------------------------------------------
    async def receive_transaction(self, txn_id: str, events: list[dict[str, Any]]) -> None:
        """Stored before the homeserver gets its 200, processed by the inbox loop."""
        await self.store.store_transaction(self.clock(), txn_id, events)
        self._inbox_wakeup.set()

    async def _inbox_loop(self) -> None:
        while True:
            await self._inbox_wakeup.wait()
            self._inbox_wakeup.clear()
            for txn_id, idx, event in await self.store.unprocessed_events():
                try:
                    await self.bot.handle_event(event)
                except Exception:
                    logger.exception("handling event %s failed", event.get("event_id"))
                await self.store.mark_processed(txn_id, idx)

    async def idle(self) -> None:
        """Wait until every stored event is handled and background work finished (tests)."""
        while await self.store.unprocessed_events():
            await asyncio.sleep(0.05)
        await self.bot.drain()

    # --- exports expire ---------------------------------------------------------------------------
    async def expire_exports(self) -> int:
        count = 0
        for mxc, user_id, request_id in await self.store.expired_exports(self.clock()):
            server, media_id = mxc.removeprefix("mxc://").split("/", 1)
            try:
                await self.hs.admin("DELETE", f"/v1/media/{server}/{media_id}")
            except HomeserverError as exc:
                if exc.status != 404:
                    logger.warning("deleting expired export %s failed: %s", mxc, exc)
                    continue
            await self.store.export_deleted(self.clock(), mxc, user_id, request_id)
            count += 1
        return count

    async def _expiry_loop(self) -> None:
        while True:
            try:
                await self.expire_exports()
                await self.store.prune_transactions(self.clock() - TRANSACTIONS_KEPT_MS)
            except Exception:
                logger.exception("export expiry failed")
            await asyncio.sleep(self._expiry_interval_s)

    # --- security notices -------------------------------------------------------------------------
    async def _login_loop(self) -> None:
        backoff = 1.0
        while True:
            try:
                token = await self.store.get_value("logins_token")
                if token is None:
                    token = (await self.hs.admin("GET", f"{HUISKAMER}/logins"))["next_token"]
                    await self.store.set_value("logins_token", str(token))
                self.login_watcher_state = "running"
                body = await self.hs.admin("GET", f"{HUISKAMER}/logins",
                                           http_timeout=self._login_poll_timeout_ms / 1000 + 30,
                                           **{"from": token, "timeout": self._login_poll_timeout_ms, "limit": 100})
                for login in body.get("logins", []):
                    try:
                        await self.bot.on_login(login)
                    except Exception:
                        logger.exception("security notice for %s failed", login.get("user_id"))
                await self.store.set_value("logins_token", str(body["next_token"]))
                backoff = 1.0
            except Unreachable:
                logger.warning("the homeserver has no %s/logins: security notices by polling its devices "
                               "every %.1f s instead", HUISKAMER, self._device_poll_s)
                await self._device_poll_loop()
                return
            except Exception as exc:  # noqa: BLE001 - never let the watcher die: notices are a promise
                logger.warning("watching logins failed (%r); retrying in %.0fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60)

    async def _device_poll_loop(self) -> None:
        poller = DevicePoller(self.hs, self.store, self.config.bot_user_id, self.bot.on_login, self.bot.ask_consent)
        await self.ready.wait()  # the bot is an admin
        first = True
        while True:
            try:
                await poller.poll_once()
                if first:  # the baseline is taken: sign-ins from now on are reported
                    self.login_watcher_state = "polling"
                    first = False
            except Exception as exc:  # noqa: BLE001 - as above: the watcher never dies
                logger.warning("polling devices failed (%r)", exc)
            await asyncio.sleep(self._device_poll_s)

    # --- retention --------------------------------------------------------------------------------
    async def run_retention(self, trigger: str) -> dict[str, Any]:
        async with self._retention_lock:
            return await self.retention.run(trigger)

    async def _retention_loop(self) -> None:
        interval = self.config.retention.interval_hours * 3600
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await self.run_retention("schedule")


async def _until_done(what: str, action, delay: float) -> float:
    """Run `action` until the homeserver lets it finish, backing off up to 30 s; returns the delay
    reached, so a following step goes on from it."""
    while True:
        try:
            await action()
            return delay
        except (HomeserverError, OSError) as exc:
            logger.warning("%s failed (%s); retrying in %.0fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30)
