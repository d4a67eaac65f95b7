"""Versioned consent: the policy documents, the homeserver told the required version and each acceptance."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from appservices.privacy.config import PrivacyConfig
from appservices.privacy.hsclient import HUISKAMER, HomeserverClient, HomeserverError, Unreachable, q
from appservices.privacy.store import PrivacyStore

logger = logging.getLogger(__name__)


class ConsentService:
    def __init__(self, config: PrivacyConfig, hs: HomeserverClient, store: PrivacyStore):
        self._config = config
        self._hs = hs
        self._store = store
        self.homeserver_enforces = False

    @property
    def version(self) -> str | None:
        return self._config.consent.version

    def url(self, version: str | None = None, language: str | None = None) -> str:
        version = version or self.version or ""
        return f"{self._config.public_url}/_privacy/consent/{version}" + (f"?lang={language}" if language else "")

    def document(self, version: str, language: str) -> tuple[str, str] | None:
        """(content type, text) of a policy document, in the language asked for or any other."""
        documents = self._config.consent.documents.get(version)
        if not documents:
            return None
        path = documents.get(language) or documents.get(self._config.language) or next(iter(documents.values()))
        content = Path(path).read_text(encoding="utf-8")
        return ("text/html" if path.endswith((".html", ".htm")) else "text/plain"), content

    async def publish_policy(self) -> None:
        """Tell the homeserver which version members must accept, and where it is."""
        if self.version is None:
            return
        try:
            await self._hs.admin("PUT", f"{HUISKAMER}/consent/policy", {"version": self.version, "url": self.url()})
            self.homeserver_enforces = True
        except Unreachable:
            logger.warning("the homeserver does not track consent (no %s/consent/policy): consent is recorded "
                           "by this service only", HUISKAMER)

    async def homeserver_record(self, user_id: str) -> dict[str, Any] | None:
        try:
            return await self._hs.admin("GET", f"{HUISKAMER}/users/{q(user_id)}/consent")
        except HomeserverError:
            return None

    async def accept(self, ts: int, user_id: str, request_id: str) -> tuple[bool, bool]:
        """Record the member's acceptance of the current version: (newly recorded, homeserver told)."""
        assert self.version is not None
        new = await self._store.record_consent(ts, user_id, self.version, request_id)
        try:
            await self._hs.admin("PUT", f"{HUISKAMER}/users/{q(user_id)}/consent", {"version": self.version})
            told = True
        except Unreachable:
            told = False
        return new, told

    async def accepted(self, user_id: str) -> dict[str, Any] | None:
        records = [r for r in await self._store.consents_of(user_id) if r["version"] == self.version]
        return records[0] if records else None
