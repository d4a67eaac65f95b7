"""Proving that a user owns an e-mail address: a token mailed to it, and a link that submits it.

`/account/3pid/email/requestToken` creates a session (`sid`) for the client's secret and the
address and mails a link to `/_matrix/client/unstable/add_threepid/email/submit_token`; following
the link marks the session validated; `/account/3pid/add` then binds the address. A retried
request with the same secret, address and a `send_attempt` not above the last one returns the
same `sid` without sending again, as the spec asks.
"""

from __future__ import annotations

import html
import re
import secrets
from typing import Any
from urllib.parse import urlencode

from homeserver.accounts.mailer import MailDeliveryError, Mailer
from homeserver.clock import Clock
from homeserver.errors import MatrixError, invalid_param
from storage.stores.admin import AdminStore
from storage.stores.threepid_validation import ThreepidSession, ThreepidValidationStore

SUBMIT_TOKEN_PATH = "/_matrix/client/unstable/add_threepid/email/submit_token"
# Deliberately loose: one @, something on each side, no spaces; the mail itself is the real test.
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_EMAIL_LENGTH = 254


def normalise_email(address: str) -> str:
    """Lower case, as Synapse stores addresses, so lookups match however they are typed."""
    address = address.strip().lower()
    if len(address) > MAX_EMAIL_LENGTH or not _EMAIL_RE.fullmatch(address):
        raise invalid_param("email: not a valid e-mail address")
    return address


class EmailValidationService:
    def __init__(self, store: ThreepidValidationStore, threepids: AdminStore, mailer: Mailer, clock: Clock, *,
                 public_baseurl: str, token_lifetime_ms: int):
        self._store = store
        self._threepids = threepids
        self._mailer = mailer
        self._clock = clock
        self._public_baseurl = public_baseurl.rstrip("/")
        self._lifetime_ms = token_lifetime_ms

    @property
    def enabled(self) -> bool:
        return self._mailer.enabled

    async def request_token(self, body: dict[str, Any]) -> dict[str, Any]:
        """Mail a validation link for `body["email"]` (already checked for shape); returns `{"sid"}`."""
        address = normalise_email(body["email"])
        if await self._threepids.get_user_by_threepid("email", address) is not None:
            raise MatrixError(400, "M_THREEPID_IN_USE", "email: this address is already in use on this server")
        next_link = body.get("next_link")
        if next_link is not None and not next_link.startswith(("https://", "http://")):
            raise invalid_param("next_link: must be an http(s) URL")
        now = self._clock.time_ms()
        await self._store.delete_older_than(now - self._lifetime_ms)
        session = await self._store.find_session(body["client_secret"], "email", address)
        if session is not None and body["send_attempt"] <= session.send_attempt:
            return {"sid": session.sid}
        if session is None:
            session = ThreepidSession(sid=secrets.token_urlsafe(16), medium="email", address=address,
                                      client_secret=body["client_secret"], token=secrets.token_urlsafe(24),
                                      send_attempt=body["send_attempt"], next_link=next_link, created_ts=now)
            await self._store.create_session(session)
        else:
            await self._store.set_send_attempt(session.sid, body["send_attempt"])
        await self._send_mail(session)
        return {"sid": session.sid}

    async def _send_mail(self, session: ThreepidSession) -> None:
        query = urlencode({"token": session.token, "client_secret": session.client_secret,
                           "sid": session.sid})
        link = f"{self._public_baseurl}{SUBMIT_TOKEN_PATH}?{query}"
        app = self._mailer.app_name
        text = (f"A request was made to add this e-mail address to an account on {app}.\n\n"
                f"If that was you, follow this link to confirm it:\n\n{link}\n\n"
                "If it was not you, ignore this message: nothing changes without the link.\n")
        page = (f"<p>A request was made to add this e-mail address to an account on {html.escape(app)}.</p>"
                f'<p>If that was you, <a href="{html.escape(link)}">confirm the address</a>.</p>'
                "<p>If it was not you, ignore this message: nothing changes without the link.</p>")
        try:
            await self._mailer.send(session.address, f"[{app}] Confirm your e-mail address", text, page)
        except MailDeliveryError:
            raise MatrixError(500, "M_UNKNOWN", "Unable to send the validation e-mail; try again later") from None

    async def submit_token(self, sid: str, client_secret: str, token: str) -> str | None:
        """The mailed link was followed: validate the session; returns its `next_link`, if any."""
        session = await self._store.get_session(sid)
        if (session is None or not secrets.compare_digest(session.client_secret, client_secret)
                or not secrets.compare_digest(session.token, token)):
            raise MatrixError(400, "M_THREEPID_AUTH_FAILED", "token: this link is not valid")
        if session.created_ts < self._clock.time_ms() - self._lifetime_ms:
            raise MatrixError(400, "M_THREEPID_AUTH_FAILED", "token: this link has expired; ask for a new one")
        if session.validated_ts is None:
            await self._store.mark_validated(sid, self._clock.time_ms())
        return session.next_link

    async def validated_session(self, sid: str, client_secret: str) -> ThreepidSession:
        """The session behind `/account/3pid/add`, once its link was followed; else `M_THREEPID_AUTH_FAILED`."""
        session = await self._store.get_session(sid)
        if session is None or not secrets.compare_digest(session.client_secret, client_secret):
            raise MatrixError(400, "M_THREEPID_AUTH_FAILED", "sid: no such validation session for this client_secret")
        if session.validated_ts is None:
            raise MatrixError(400, "M_THREEPID_AUTH_FAILED", "sid: the address has not been validated yet")
        return session

    async def forget(self, sid: str) -> None:
        await self._store.delete_session(sid)
