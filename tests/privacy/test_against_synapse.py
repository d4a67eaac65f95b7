"""The privacy service beside a real Synapse: it registers the same way, answers in the DM, and an
export degrades to what Synapse's admin API offers, naming what it could not reach."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from appservices.privacy.attachment_crypto import decrypt_attachment
from appservices.privacy.config import parse_privacy_config, registration_yaml
from appservices.privacy.service import PrivacyService
from tests.accounts.helpers import register_admin
from tests.admin.helpers import Caller
from tests.privacy.support import Member
from tests.support.ports import free_port


@pytest.fixture
async def synapse_env(tmp_path) -> AsyncIterator[dict[str, Any]]:
    from scripts.synapse.run_synapse import start_synapse

    port, as_port = free_port(), free_port()
    raw = {"homeserver_url": f"http://127.0.0.1:{port}", "server_name": f"localhost:{port}",
           "as_token": "syn-as", "hs_token": "syn-hs", "admin_api_token": "syn-adm",
           "bind": {"host": "127.0.0.1", "port": as_port},
           "database": {"engine": "sqlite", "path": str(tmp_path / "privacy.db")},
           "retention": {"interval_hours": 0}}
    registration = tmp_path / "privacy-registration.yaml"
    registration.write_text(registration_yaml(parse_privacy_config(raw)))
    server = await asyncio.to_thread(start_synapse, tmp_path / "synapse", port,
                                     extra_config={"app_service_config_files": [str(registration)]})
    raw["homeserver_shared_secret"] = server.registration_shared_secret
    service = PrivacyService(parse_privacy_config(raw))
    await service.start()
    client = aiohttp.ClientSession(server.url)
    try:
        await asyncio.wait_for(service.ready.wait(), 30)
        yield {"service": service, "client": client, "secret": server.registration_shared_secret}
    finally:
        await client.close()
        await service.stop()
        await asyncio.to_thread(server.stop)
        shutil.rmtree(server.workdir, ignore_errors=True)


async def test_help_and_an_export_work_against_synapse_and_name_what_was_unreachable(synapse_env):
    service, client = synapse_env["service"], synapse_env["client"]
    body = await register_admin(client, "ria", admin=False, secret=synapse_env["secret"])
    reader = Caller(client, await register_admin(client, "reader", secret=synapse_env["secret"]))
    member = Member(Caller(client, body), service.config.bot_user_id, reader)
    await member.open_dm()
    assert "privacybot" in (await member.ask("help"))[0]["content"]["body"]
    await member.caller.call("POST", f"/rooms/{member.room_id}/send/m.room.message",
                             {"msgtype": "m.text", "body": "kijk https://example.org/x"})
    await member.next_replies()
    replies = await member.ask("export", until="export-")
    file_event = next(e for e in replies if e["content"].get("msgtype") == "m.file")
    info = file_event["content"]["file"]
    server, media_id = info["url"].removeprefix("mxc://").split("/", 1)
    async with client.get(f"/_matrix/client/v1/media/download/{server}/{media_id}",
                          headers={"Authorization": f"Bearer {member.caller.token}"}) as resp:
        assert resp.status == 200
        archive = zipfile.ZipFile(io.BytesIO(decrypt_attachment(await resp.read(), info)))
    export = json.loads(archive.read("export.json"))
    assert "kijk https://example.org/x" in [e["content"].get("body") for e in export["messages"]["private"]]
    assert [link["url"] for link in export["links"]] == ["https://example.org/x"]
    assert "logins" in export["unreachable"]  # Synapse has no login log endpoint
    assert "consent.homeserver" in export["unreachable"]
