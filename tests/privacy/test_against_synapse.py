"""The privacy service beside a real Synapse: it registers the same way, answers in the DM, an export
degrades to what Synapse's admin API offers (naming what it could not reach), an erasure uses
Synapse's redact/media/deactivate endpoints, and new devices get notices by polling its admin API."""

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
from tests.accounts.helpers import login, register_admin
from tests.admin.helpers import Caller, q
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
    service = PrivacyService(parse_privacy_config(raw), device_poll_s=0.5)
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


async def _member(synapse_env: dict[str, Any], name: str) -> tuple[Member, Caller]:
    service, client = synapse_env["service"], synapse_env["client"]
    body = await register_admin(client, name, admin=False, secret=synapse_env["secret"])
    reader = Caller(client, await register_admin(client, f"{name}-reader", secret=synapse_env["secret"]))
    member = Member(Caller(client, body), service.config.bot_user_id, reader)
    await member.open_dm()
    return member, reader


async def test_an_erasure_against_synapse_redacts_private_messages_deletes_media_and_deactivates(synapse_env):
    member, reader = await _member(synapse_env, "sem")
    client = synapse_env["client"]
    private = (await reader.call("POST", "/createRoom", {"preset": "private_chat", "invite": [member.user_id]}))
    public = (await reader.call("POST", "/createRoom", {"preset": "public_chat"}))
    sent = {}
    for kind, room in (("private", private["room_id"]), ("public", public["room_id"])):
        await member.caller.call("POST", f"/join/{q(room)}", {})
        sent[kind] = (await member.caller.call("POST", f"/rooms/{q(room)}/send/m.room.message",
                                               {"msgtype": "m.text", "body": f"{kind} van sem"}))["event_id"]
    async with client.post("/_matrix/media/v3/upload", data=b"picture of sem",
                           headers={"Authorization": f"Bearer {member.caller.token}",
                                    "Content-Type": "image/png"}) as resp:
        assert resp.status == 200
    # Other bot messages (a notice about the member's sessions) may come first: pick the confirmation.
    replies = await member.ask("wis", until="'wis ")
    confirm = next(e["content"]["body"] for e in replies if "'wis " in e["content"]["body"])
    code = confirm.split("'wis ")[1].split("'")[0]
    report = (await member.ask(f"wis {code}", until="Bewaard"))[-1]["content"]["body"]
    assert "Verwijderd" in report and "public_room_messages" in report and "redacted_originals" in report
    user = await reader.admin("GET", f"/v2/users/{q(member.user_id)}")
    assert user["deactivated"] is True and not user.get("displayname")
    assert (await reader.admin("GET", f"/v1/users/{q(member.user_id)}/media"))["total"] == 0
    private_event = await reader.call("GET", f"/rooms/{q(private['room_id'])}/event/{q(sent['private'])}")
    assert private_event["content"] == {}  # redacted through POST /_synapse/admin/v1/user/{u}/redact
    public_event = await reader.call("GET", f"/rooms/{q(public['room_id'])}/event/{q(sent['public'])}")
    assert public_event["content"]["body"] == "public van sem"  # kept by policy, as the report says


async def test_a_new_device_against_synapse_gets_a_notice_by_polling(synapse_env):
    service, client = synapse_env["service"], synapse_env["client"]
    member, _ = await _member(synapse_env, "noor")
    await member.wait_for(lambda: _polling(service), timeout=60, what="the device poller's baseline")
    await member.caller.call("GET", "/account/whoami")  # the member is seen: their baseline is taken
    await member.wait_for(lambda: _has_baseline(service, member.user_id), timeout=60, what="noor's baseline")
    session = await login(client, member.user_id, password="admin pass", device_id="TABLET9")
    async with client.get("/_matrix/client/v3/account/whoami",
                          headers={"Authorization": f"Bearer {session['access_token']}"}) as resp:
        assert resp.status == 200  # Synapse records the device's address at its first request
    replies = await member.next_replies(until="TABLET9", timeout=60)
    assert "afmelden-TABLET9" in replies[-1]["content"]["body"]


async def _polling(service: PrivacyService) -> bool:
    return service.login_watcher_state == "polling"


async def _has_baseline(service: PrivacyService, user_id: str) -> bool:
    return await service.store.get_value(f"device_watch:{user_id}") is not None
