"""E-mail through SMTP (stdlib smtplib in a thread), for security notices when SMTP is configured."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

from appservices.privacy.config import SmtpConfig


class Mailer:
    def __init__(self, config: SmtpConfig):
        self._config = config

    def _send(self, to: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"] = self._config.sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        with smtplib.SMTP(self._config.host, self._config.port, timeout=30) as smtp:
            if self._config.starttls:
                smtp.starttls()
            if self._config.username:
                smtp.login(self._config.username, self._config.password or "")
            smtp.send_message(message)

    async def send(self, to: str, subject: str, body: str) -> None:
        await asyncio.to_thread(self._send, to, subject, body)
