"""Fixtures: our homeserver with the privacy service registered, and the service running beside it.

Both use the engine of `database_config`: on PostgreSQL the service gets its own fresh database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from appservices.privacy.config import parse_privacy_config, registration_yaml
from appservices.privacy.service import PrivacyService
from tests.admin.helpers import new_admin, q
from tests.privacy.support import ManualClock, PrivacyEnv
from tests.support.ports import free_port

AS_TOKEN = "privacy-as-token"
HS_TOKEN = "privacy-hs-token"
ADMIN_API_TOKEN = "privacy-admin-api-token"


def privacy_raw_config(tmp_path, server_name: str, hs_url: str, port: int, database: dict[str, Any],
                       **overrides: Any) -> dict[str, Any]:
    policy = tmp_path / "policy-1.nl.html"
    policy.write_text("<h1>Privacybeleid 1</h1>")
    policy_en = tmp_path / "policy-1.en.html"
    policy_en.write_text("<h1>Privacy policy 1</h1>")
    raw = {
        "homeserver_url": hs_url, "server_name": server_name, "as_token": AS_TOKEN, "hs_token": HS_TOKEN,
        "admin_api_token": ADMIN_API_TOKEN, "bind": {"host": "127.0.0.1", "port": port},
        "public_url": f"http://127.0.0.1:{port}", "database": database,
        "export": {"expiry_hours": 1, "progress_every": 50},
        "retention": {"interval_hours": 0, "kept": {"payment_records": "7 years, tax law"}},
        # No required policy by default: with one, the homeserver refuses unconsented members outside
        # the DM with the bot, which the other tests do not expect. The consent tests ask for it.
        "consent": {"version": None, "documents": {"1": {"nl": str(policy), "en": str(policy_en)}}},
    }
    raw.update(overrides)
    return raw


@pytest.fixture
def privacy_database(request: pytest.FixtureRequest, database_config, tmp_path) -> dict[str, Any]:
    if database_config["engine"] == "sqlite":
        return {"engine": "sqlite", "path": str(tmp_path / "privacy.db")}
    return {"engine": "postgres", "dsn": request.getfixturevalue("postgres_dsn")}


@pytest.fixture
async def make_privacy(make_homeserver, tmp_path, privacy_database) -> AsyncIterator[Any]:
    started: list[PrivacyService] = []

    async def start(service_overrides: dict[str, Any] | None = None, promote_bot: bool = True,
                    **hs_overrides: Any) -> PrivacyEnv:
        port = free_port()
        hs_port = free_port()
        server_name = f"localhost:{hs_port}"
        raw = privacy_raw_config(tmp_path, server_name, f"http://127.0.0.1:{hs_port}", port, privacy_database,
                                 **(service_overrides or {}))
        config = parse_privacy_config(raw, source=str(tmp_path / "privacy.yaml"))
        registration = tmp_path / "privacy-registration.yaml"
        registration.write_text(registration_yaml(config))
        listeners = [{"host": "127.0.0.1", "port": hs_port, "resources": ["client", "federation", "admin"]}]
        # No consent.exempt_users (a homeserver.yaml from before that key): the registration's bot is the
        # exempt company a member may join unconsented all the same.
        hs = await make_homeserver(server_name=server_name, listeners=listeners,
                                   app_service_config_files=[str(registration)], **hs_overrides)
        client = aiohttp.ClientSession(hs.base_url("client"))
        admin = await new_admin(client, "root")
        if promote_bot:
            await admin.admin("PUT", f"/v2/users/{q(config.bot_user_id)}", {"admin": True})
        clock = ManualClock()
        service = PrivacyService(config, clock=clock, login_poll_timeout_ms=2000, expiry_interval_s=0.2)
        await service.start()
        started.append(service)
        await asyncio.wait_for(service.ready.wait(), 10)
        if config.security_notices:  # the login feed is watched from "now": new members come after
            await asyncio.wait_for(_watching_logins(service), 10)
        env = PrivacyEnv(hs=hs, service=service, client=client, admin=admin, clock=clock, tmp_path=tmp_path)
        env.sessions.append(client)
        return env

    yield start
    for service in reversed(started):
        await service.stop()


async def _watching_logins(service: PrivacyService) -> None:
    while service.login_watcher_state != "running":
        await asyncio.sleep(0.05)


WITH_POLICY = {"consent": {"version": "1", "documents": {"1": {"nl": "policy-1.nl.html",
                                                                 "en": "policy-1.en.html"}}}}


@pytest.fixture
async def consent_env(make_privacy) -> AsyncIterator[PrivacyEnv]:
    """The service requiring policy version 1 (documents written by `privacy_raw_config`)."""
    env = await make_privacy(WITH_POLICY)
    yield env
    await env.close()


@pytest.fixture
async def env(make_privacy) -> AsyncIterator[PrivacyEnv]:
    env = await make_privacy()
    yield env
    await env.close()
