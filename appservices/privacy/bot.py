"""The bot: events from the homeserver's transactions in, commands handled, replies in the member's DM.

Handlers are thin: each command creates a request (ID, timestamps, audit entry) and calls the
service that does the work. Exports and erasures run as background tasks so the transaction
worker keeps answering.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from appservices.privacy.attachment_crypto import encrypt_attachment
from appservices.privacy.collector import Collector
from appservices.privacy.commands import Command, parse_command, reply_language
from appservices.privacy.config import LANGUAGES, PrivacyConfig
from appservices.privacy.consent import ConsentService
from appservices.privacy.erasure import Eraser
from appservices.privacy.export_format import build_zip
from appservices.privacy.hsclient import HomeserverClient, HomeserverError, q
from appservices.privacy.mailer import Mailer
from appservices.privacy.messages import text
from appservices.privacy.store import PrivacyRequest, PrivacyStore

logger = logging.getLogger(__name__)
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def when(ts: int | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(6))


def format_counts(values: dict[str, Any]) -> str:
    lines = []
    for cls, value in sorted(values.items()):
        if isinstance(value, dict):
            count = value.get("count")
            lines.append(f"- {cls}" + (f": {count}" if count is not None else "") + f" ({value.get('why', '')})")
        else:
            lines.append(f"- {cls}: {value}")
    return "\n".join(lines) or "-"


class PrivacyBot:
    def __init__(self, config: PrivacyConfig, hs: HomeserverClient, store: PrivacyStore, collector: Collector,
                 eraser: Eraser, consent: ConsentService, mailer: Mailer | None, clock: Callable[[], int]):
        self._config = config
        self._hs = hs
        self._store = store
        self._collector = collector
        self._eraser = eraser
        self._consent = consent
        self._mailer = mailer
        self._clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()
        self._busy: dict[tuple[str, str], str] = {}  # (user, kind) -> request running
        self._asking = asyncio.Lock()  # the sweep and the login feed never ask the same member twice

    @property
    def bot(self) -> str:
        return self._config.bot_user_id

    def is_local(self, user_id: str) -> bool:
        return user_id.split(":", 1)[-1] == self._config.server_name

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("background task ended with %r (already reported)", task.exception())

    async def drain(self) -> None:
        """Wait for the background work (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def resume_interrupted(self) -> int:
        """Exports and confirmed erasures a restart interrupted run again (both may safely repeat)."""
        resumed = 0
        for request in await self._store.open_requests():
            if request.status != "in_progress" or request.kind not in ("export", "erase"):
                continue
            if (request.user_id, request.kind) in self._busy:
                continue
            room_id = await self._store.dm_room(request.user_id)
            lang = await self.language_of(request.user_id)
            await self._store.audit(self._clock(), "service", request.user_id, f"{request.kind}.resumed",
                                    request.request_id)
            self._busy[(request.user_id, request.kind)] = request.request_id
            if request.kind == "export":  # never left in progress for want of a known DM: one is found or opened
                self._spawn(self._resume_export(request.user_id, room_id, request, lang))
            else:
                self._spawn(self._run_erase(request.user_id, room_id, request.request_id, lang))
            resumed += 1
        return resumed

    async def _resume_export(self, user_id: str, room_id: str | None, request: PrivacyRequest, lang: str) -> None:
        if room_id is None:
            try:
                room_id = await self.dm_room_for(user_id)
            except HomeserverError:
                self._busy.pop((user_id, "export"), None)
                raise
        await self._run_export(user_id, room_id, request, lang)

    # --- sending ---------------------------------------------------------------------------------
    async def say(self, room_id: str, body: str, extra: dict[str, Any] | None = None) -> str:
        content = {"msgtype": "m.notice", "body": body, **(extra or {})}
        return await self._hs.send(room_id, content, f"privacy-{secrets.token_hex(8)}")

    async def is_private(self, room_id: str, user_id: str) -> bool:
        """Only the member and the bot are in the room: the bot says nothing personal anywhere else."""
        try:
            members = set(await self._hs.joined_members(room_id))
        except HomeserverError:
            return False
        return self.bot in members and members <= {self.bot, user_id}

    async def dm_room_for(self, user_id: str) -> str:
        """The member's DM with the bot, created (and the member invited) when there is none, or when
        someone else has joined it since."""
        room_id = await self._store.dm_room(user_id)
        if room_id is None or not await self.is_private(room_id, user_id):
            room_id = await self._hs.create_dm(user_id)
            await self._store.set_dm_room(self._clock(), user_id, room_id)
        return room_id

    async def tell(self, user_id: str, body: str) -> str:
        return await self.say(await self.dm_room_for(user_id), body)

    async def language_of(self, user_id: str) -> str:
        return await self._store.language(user_id) or self._config.language

    # --- events in -------------------------------------------------------------------------------
    async def handle_event(self, event: dict[str, Any]) -> None:
        sender = event.get("sender", "")
        room_id = event.get("room_id", "")
        if sender == self.bot or not self.is_local(sender):
            return
        content = event.get("content") or {}
        if event.get("type") == "m.room.member" and event.get("state_key") == self.bot:
            if content.get("membership") == "invite":
                await self._hs.join(room_id)
                if not await self.is_private(room_id, sender):
                    await self._hs.cs("POST", f"/rooms/{q(room_id)}/leave", {})
                    await self._store.audit(self._clock(), sender, sender, "dm.refused",
                                            detail={"room_id": room_id, "why": "other members"})
                    return
                await self._store.set_dm_room(self._clock(), sender, room_id)
                await self._store.audit(self._clock(), sender, sender, "dm.joined", detail={"room_id": room_id})
            return
        if event.get("type") != "m.room.message" or not isinstance(content.get("body"), str):
            return
        if content.get("msgtype") not in ("m.text", None):
            return
        if not await self.is_private(room_id, sender):
            return  # others are in the room: personal data is only ever shown in a DM
        if await self._store.dm_room(sender) != room_id:
            await self._store.set_dm_room(self._clock(), sender, room_id)
        await self.handle_command(sender, room_id, content["body"])

    async def handle_command(self, user_id: str, room_id: str, body: str) -> None:
        command = parse_command(body)
        chosen = await self._store.language(user_id)
        lang = reply_language(command, chosen, self._config.language)
        handler = getattr(self, f"_cmd_{command.name}", None)
        if handler is None:
            await self.say(room_id, text(lang, "unknown"))
            return
        await handler(user_id, room_id, command, lang)

    # --- commands --------------------------------------------------------------------------------
    async def _cmd_help(self, user_id: str, room_id: str, command: Command, lang: str) -> None:
        await self.say(room_id, text(lang, "help"))

    async def _cmd_language(self, user_id: str, room_id: str, command: Command, lang: str) -> None:
        choice = command.args[0].lower() if command.args else ""
        if choice not in LANGUAGES:
            await self.say(room_id, text(lang, "language_bad"))
            return
        await self._store.set_language(user_id, choice)
        await self._store.audit(self._clock(), user_id, user_id, "language.set", detail={"language": choice})
        await self.say(room_id, text(choice, "language_set"))

    async def _cmd_requests(self, user_id: str, room_id: str, command: Command, lang: str) -> None:
        requests = await self._store.requests_of(user_id)
        if not requests:
            await self.say(room_id, text(lang, "requests_none"))
            return
        lines = "\n".join(f"- {r.request_id} {r.kind}: {r.status} ({when(r.created_ts)})" for r in requests[-20:])
        await self.say(room_id, text(lang, "requests", lines=lines))

    async def _begin(self, user_id: str, room_id: str, kind: str, lang: str, **kwargs: Any) -> PrivacyRequest | None:
        running = self._busy.get((user_id, kind))
        if running is not None:
            await self.say(room_id, text(lang, "busy", kind=kind, request_id=running))
            return None
        return await self._store.create_request(self._clock(), user_id, kind, **kwargs)

    async def _cmd_export(self, user_id: str, room_id: str, command: Command, lang: str) -> None:
        request = await self._begin(user_id, room_id, "export", lang, status="in_progress")
        if request is None:
            return
        self._busy[(user_id, "export")] = request.request_id
        await self.say(room_id, text(lang, "export_started", request_id=request.request_id))
        self._spawn(self._run_export(user_id, room_id, request, lang))

    async def _run_export(self, user_id: str, room_id: str, request: PrivacyRequest, lang: str) -> None:
        rid = request.request_id
        try:
            async def progress(count: int) -> None:
                await self.say(room_id, text(lang, "export_progress", request_id=rid, count=count))

            started = time.perf_counter()
            data = await self._collector.collect(user_id, rid, self._clock(), progress)
            collected = time.perf_counter()
            data.consent["records"] = await self._store.consents_of(user_id)
            data.consent["current_version"] = self._consent.version
            data.privacy_requests = [r.as_json() for r in await self._store.requests_of(user_id)]
            archive = await asyncio.to_thread(build_zip, data, self._config.server_name)
            ciphertext, file_info = await asyncio.to_thread(encrypt_attachment, archive)
            mxc = await self._hs.upload(ciphertext, "application/octet-stream", f"export-{rid}.zip")
            timings = {"collect_ms": int((collected - started) * 1000),
                       "build_and_upload_ms": int((time.perf_counter() - collected) * 1000)}
            expires = self._clock() + int(self._config.export_expiry_hours * 3600 * 1000)
            await self._store.add_export_file(mxc, user_id, rid, expires)
            await self.say(room_id, text(lang, "export_ready", request_id=rid, size=len(archive),
                                         expires=when(expires)))
            if data.unreachable:
                await self.say(room_id, text(lang, "export_unreachable", classes=", ".join(sorted(data.unreachable))))
            await self._hs.send(room_id, {
                "msgtype": "m.file", "body": f"export-{rid}.zip", "filename": f"export-{rid}.zip",
                "info": {"mimetype": "application/zip", "size": len(archive)},
                "file": {**file_info, "url": mxc, "mimetype": "application/zip"},
            }, f"privacy-file-{rid}")
            await self._store.update_request(self._clock(), rid, "done", {
                "mxc": mxc, "size": len(archive), "expires_ts": expires, "messages": len(data.events),
                "media": len(data.media), "unreachable": sorted(data.unreachable), **timings},
                actor="service", action="export.delivered")
        except Exception as exc:
            logger.exception("export %s of %s failed", rid, user_id)
            await self._store.update_request(self._clock(), rid, "failed", {"error": str(exc)},
                                             actor="service", action="export.failed")
            await self.say(room_id, text(lang, "export_failed", request_id=rid, error=type(exc).__name__))
        finally:
            self._busy.pop((user_id, "export"), None)

    async def _cmd_erase(self, user_id: str, room_id: str, command: Command, lang: str) -> None:
        ttl = int(self._config.erase_code_ttl_minutes * 60 * 1000)
        if command.args:
            pending = await self._store.pending_request(user_id, "erase", "awaiting_confirmation")
            code = command.args[0].upper()
            if pending is None or pending.code != code or self._clock() - pending.created_ts > ttl:
                await self._store.audit(self._clock(), user_id, user_id, "erase.bad_code",
                                        pending.request_id if pending else None)
                await self.say(room_id, text(lang, "erase_bad_code"))
                return
            await self._store.update_request(self._clock(), pending.request_id, "in_progress",
                                             actor=user_id, action="erase.confirmed")
            self._busy[(user_id, "erase")] = pending.request_id
            await self.say(room_id, text(lang, "erase_started", request_id=pending.request_id))
            self._spawn(self._run_erase(user_id, room_id, pending.request_id, lang))
            return
        if (user_id, "erase") in self._busy:
            await self.say(room_id, text(lang, "busy", kind="erase", request_id=self._busy[(user_id, "erase")]))
            return
        old = await self._store.pending_request(user_id, "erase", "awaiting_confirmation")
        if old is not None:
            await self._store.update_request(self._clock(), old.request_id, "superseded", actor=user_id,
                                             action="erase.superseded")
        code = new_code()
        request = await self._store.create_request(self._clock(), user_id, "erase", status="awaiting_confirmation",
                                                   code=code)
        keep = self._config.keep_public_room_messages
        await self.say(room_id, text(lang, "erase_confirm", request_id=request.request_id, code=code,
                                     minutes=int(self._config.erase_code_ttl_minutes),
                                     public="bewaard" if keep else "niet bewaard",
                                     public_en="are kept" if keep else "are removed too"))

    async def _run_erase(self, user_id: str, room_id: str | None, request_id: str, lang: str) -> dict[str, Any]:
        try:
            email = await self._email_of(user_id)
            report = await self._eraser.erase(user_id)
            await self._store.update_request(self._clock(), request_id, "done", report, actor="service",
                                             action="erase.completed")
            body = text(lang, "erase_report", request_id=request_id, removed=format_counts(report["removed"]),
                        kept=format_counts(report["kept"]))
            if report.get("unreachable"):
                body += "\n" + format_counts(report["unreachable"])
            if room_id is not None:
                await self.say(room_id, body)
            if email and self._mailer is not None:
                await self._mailer.send(email, f"[{self._config.server_name}] erasure {request_id}", body)
            return report
        except Exception as exc:
            logger.exception("erasure %s of %s failed", request_id, user_id)
            await self._store.update_request(self._clock(), request_id, "failed", {"error": str(exc)},
                                             actor="service", action="erase.failed")
            if room_id is not None:
                await self.say(room_id, text(lang, "erase_failed", request_id=request_id, error=type(exc).__name__))
            raise
        finally:
            self._busy.pop((user_id, "erase"), None)

    async def erase_inactive(self, user_id: str) -> dict[str, Any]:
        """The retention engine's erasure: a request made by the service itself."""
        request = await self._store.create_request(self._clock(), user_id, "erase", status="in_progress",
                                                   detail={"reason": "inactivity"})
        return await self._run_erase(user_id, None, request.request_id, await self.language_of(user_id))

    async def warn_inactive(self, user_id: str, last_active_ts: int, erase_after_ts: int) -> None:
        lang = await self.language_of(user_id)
        await self.tell(user_id, text(lang, "inactivity_warning", since=when(last_active_ts),
                                      date=when(erase_after_ts)))
        await self._store.audit(self._clock(), "service", user_id, "retention.warned",
                                detail={"last_active_ts": last_active_ts, "erase_after_ts": erase_after_ts})

    async def _email_of(self, user_id: str) -> str | None:
        try:
            user = await self._hs.admin("GET", f"/v2/users/{q(user_id)}")
        except HomeserverError:
            return None
        emails = [t["address"] for t in user.get("threepids") or [] if t.get("medium") == "email"]
        return emails[0] if emails else None

    async def _cmd_consent(self, user_id: str, room_id: str, command: Command, lang: str) -> None:
        if self._consent.version is None:
            await self.say(room_id, text(lang, "consent_none"))
            return
        record = await self._consent.accepted(user_id)
        state = (text(lang, "consent_given_state", when=when(record["ts"])) if record
                 else text(lang, "consent_missing_state"))
        await self.say(room_id, text(lang, "consent_status", version=self._consent.version,
                                     url=self._consent.url(language=lang), state=state))

    async def _cmd_accept(self, user_id: str, room_id: str, command: Command, lang: str) -> None:
        version = self._consent.version
        if version is None:
            await self.say(room_id, text(lang, "consent_none"))
            return
        if await self._consent.accepted(user_id):
            await self.say(room_id, text(lang, "consent_already", version=version))
            return
        request = await self._store.create_request(self._clock(), user_id, "consent", detail={"version": version})
        _, told = await self._consent.accept(self._clock(), user_id, request.request_id)
        await self._store.update_request(self._clock(), request.request_id, "done",
                                         {"version": version, "homeserver_told": told}, actor=user_id,
                                         action="consent.recorded")
        await self.say(room_id, text(lang, "consent_recorded", request_id=request.request_id, version=version))

    async def _cmd_retention(self, user_id: str, room_id: str, command: Command, lang: str) -> None:
        policy = self._config.retention
        rooms = text(lang, "retention_rooms_policy", min=policy.room_min_lifetime_days,
                     max=policy.room_max_lifetime_days if policy.room_max_lifetime_days is not None else "∞")
        kept = "\n".join(text(lang, "retention_kept", cls=cls, why=why) for cls, why in policy.kept.items())
        days = policy.inactivity_days if policy.inactivity_days is not None else text(lang, "retention_inactive_off")
        await self.say(room_id, text(lang, "retention", days=days, warn=policy.warn_days_before, rooms=rooms,
                                     kept=kept))

    async def _cmd_sessions(self, user_id: str, room_id: str, command: Command, lang: str) -> None:
        devices = (await self._hs.admin("GET", f"/v2/users/{q(user_id)}/devices")).get("devices", [])
        await self._store.audit(self._clock(), user_id, user_id, "sessions.listed", detail={"count": len(devices)})
        if not devices:
            await self.say(room_id, text(lang, "sessions_none"))
            return
        lines = "\n".join(text(lang, "session_line", device_id=d["device_id"], name=d.get("display_name") or "",
                               ip=d.get("last_seen_ip") or "-", seen=when(d.get("last_seen_ts")))
                          for d in sorted(devices, key=lambda d: d["device_id"]))
        await self.say(room_id, text(lang, "sessions", lines=lines))

    async def _cmd_signout(self, user_id: str, room_id: str, command: Command, lang: str) -> None:
        if not command.args:
            await self.say(room_id, text(lang, "signout_missing"))
            return
        device_id = command.args[0]
        devices = (await self._hs.admin("GET", f"/v2/users/{q(user_id)}/devices")).get("devices", [])
        match = [d["device_id"] for d in devices if d["device_id"].upper() == device_id.upper()]
        if not match:
            await self.say(room_id, text(lang, "signout_unknown", device_id=device_id))
            return
        request = await self._store.create_request(self._clock(), user_id, "signout", detail={"device_id": match[0]})
        await self._hs.admin("DELETE", f"/v2/users/{q(user_id)}/devices/{q(match[0])}")
        await self._store.update_request(self._clock(), request.request_id, "done", {"device_id": match[0]},
                                         actor=user_id, action="signout.done")
        await self.say(room_id, text(lang, "signout_done", request_id=request.request_id, device_id=match[0]))

    # --- security notices ------------------------------------------------------------------------
    async def ask_consent(self, user_id: str) -> bool:
        """Ask a member who has not accepted the current policy, once per version, in a DM the bot
        opens: with a policy set the homeserver refuses the member's own `createRoom`, but lets them
        join a room whose other members are all exempt users (the bot). Returns whether it asked."""
        version = self._consent.version
        if version is None or user_id == self.bot or not self.is_local(user_id):
            return False
        key = f"consent_asked:{version}:{user_id}"
        async with self._asking:
            if await self._consent.accepted(user_id) or await self._store.get_value(key):
                return False
            lang = await self.language_of(user_id)
            await self.tell(user_id, text(lang, "consent_status", version=version,
                                          url=self._consent.url(language=lang),
                                          state=text(lang, "consent_missing_state")))
            await self._store.set_value(key, str(self._clock()))
        await self._store.audit(self._clock(), "service", user_id, "consent.asked", detail={"version": version})
        return True

    async def sweep_consent(self) -> int:
        """Ask every existing member who has not accepted the current version (once per version, so a
        restart resumes where it stopped), rather than waiting for their next sign-in; the homeserver
        blocks their sending meanwhile (`M_CONSENT_NOT_GIVEN`). Returns how many were asked."""
        version = self._consent.version
        if version is None or await self._store.get_value(f"consent_swept:{version}"):
            return 0
        asked = 0
        offset: Any = 0
        while True:
            page = await self._hs.admin("GET", "/v2/users", limit=500, deactivated="false", guests="false",
                                        **{"from": offset})
            for user in page.get("users", []):
                if user.get("deactivated") or user.get("is_guest") or user.get("appservice_id"):
                    continue
                try:
                    asked += await self.ask_consent(user["name"])
                except HomeserverError as exc:  # one member's trouble stops nobody else's request
                    logger.warning("asking %s for consent to version %s failed: %s", user["name"], version, exc)
            offset = page.get("next_token")
            if offset is None:
                break
        await self._store.set_value(f"consent_swept:{version}", str(self._clock()))
        await self._store.audit(self._clock(), "service", None, "consent.swept",
                                detail={"version": version, "asked": asked})
        logger.info("asked %d members for consent to policy version %s", asked, version)
        return asked

    async def on_login(self, login: dict[str, Any]) -> None:
        """A sign-in from the homeserver's login feed: the consent request if due, a security notice."""
        await self.ask_consent(login["user_id"])
        await self.login_notice(login)

    async def login_notice(self, login: dict[str, Any]) -> None:
        user_id = login["user_id"]
        if user_id == self.bot or not self.is_local(user_id):
            return
        if login.get("registration"):
            return  # the account's first session, from registering: nothing to warn about
        if not (login.get("new_ip") or login.get("new_device")):
            return
        lang = await self.language_of(user_id)
        what = " + ".join(text(lang, key) for key, flag in (("login_new_device", login.get("new_device")),
                                                             ("login_new_ip", login.get("new_ip"))) if flag)
        word = "afmelden" if lang == "nl" else "signout"
        body = text(lang, "login_notice", what=what, device_id=login.get("device_id"), ip=login.get("ip"),
                    user_agent=login.get("user_agent") or "-", when=when(login.get("ts")),
                    command=f"{word}-{login.get('device_id')}")
        await self.tell(user_id, body)
        await self._store.audit(self._clock(), "service", user_id, "security.notice",
                                detail={k: login.get(k) for k in ("device_id", "ip", "new_ip", "new_device", "ts")})
        if self._mailer is not None:
            email = await self._email_of(user_id)
            if email:
                subject = ("Nieuwe aanmelding" if lang == "nl" else "New sign-in") + f" ({self._config.server_name})"
                await self._mailer.send(email, subject, body)
                await self._store.audit(self._clock(), "service", user_id, "security.notice_mailed",
                                        detail={"device_id": login.get("device_id")})
