"""Sending e-mail through the configured SMTP server (aiosmtplib): STARTTLS when offered, required
when `require_transport_security` is set, implicit TLS with `force_tls`."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

logger = logging.getLogger(__name__)


class MailDeliveryError(Exception):
    """The SMTP server could not be reached or refused the message."""


class Mailer:
    def __init__(self, section: dict[str, Any]):
        self._host = section["smtp_host"]
        self._port = section["smtp_port"]
        self._user = section["smtp_user"]
        self._password = section["smtp_pass"]
        self._require_tls = section["require_transport_security"]
        self._force_tls = section["force_tls"]
        self._timeout = section["timeout_s"]
        self.app_name = section["app_name"]
        self._from = section["notif_from"].replace("%(app)s", self.app_name)

    @property
    def enabled(self) -> bool:
        return bool(self._host)

    async def send(self, to: str, subject: str, text: str, html: str | None = None) -> None:
        """Send one message; `MailDeliveryError` when the server cannot take it."""
        # Imported on first use: most servers never send mail, and the SMTP client costs about
        # 0.6 MiB of resident memory in every process that imports it.
        import aiosmtplib

        message = EmailMessage()
        message["From"] = self._from
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = make_msgid()
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
        try:
            await aiosmtplib.send(
                message, hostname=self._host, port=self._port, username=self._user or None,
                password=self._password or None, use_tls=self._force_tls,
                # None: STARTTLS when the server offers it; True: refuse a server that does not.
                start_tls=False if self._force_tls else (True if self._require_tls else None),
                timeout=self._timeout)
        except (aiosmtplib.SMTPException, OSError) as e:
            logger.warning("Could not send e-mail to %s through %s:%s: %s", to, self._host, self._port, e)
            raise MailDeliveryError(str(e)) from e
