"""How long the privacy service takes to export a member with many messages (target: 10,000 in < 10 s),
and how soon a login from a new address reaches the member as a DM notice (target: < 5 s).

Starts our homeserver (SQLite) and the privacy service in this process, has one member send
`--messages` messages over a few rooms, then DMs the bot `export` and times until the encrypted ZIP
arrives in the DM; the archive is decrypted and its message count checked. Then logs the member in
from new addresses (`X-Forwarded-For`) a few times and times each until the bot's notice is in the DM.

    .venv/bin/python bench/privacy_export.py [--messages 10000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import io
import json
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from urllib.parse import quote

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appservices.privacy.attachment_crypto import decrypt_attachment  # noqa: E402
from appservices.privacy.config import parse_privacy_config, registration_yaml  # noqa: E402
from appservices.privacy.service import PrivacyService  # noqa: E402
from homeserver.config import parse_config  # noqa: E402
from homeserver.server import HomeServer  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

SECRET = "bench-secret"


def q(value: str) -> str:
    return quote(value, safe="")


async def call(session: aiohttp.ClientSession, token: str, method: str, path: str, body=None, **params):
    async with session.request(method, path, json=body, params=params or None,
                               headers={"Authorization": f"Bearer {token}"}) as resp:
        data = await resp.json()
        if resp.status >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status} {data}")
        return data


async def register_admin(session: aiohttp.ClientSession, name: str) -> dict:
    async with session.get("/_synapse/admin/v1/register") as resp:
        nonce = (await resp.json())["nonce"]
    mac = hmac.new(SECRET.encode(), digestmod=hashlib.sha1)
    mac.update(f"{nonce}\0{name}\0pw\0admin".encode())
    async with session.post("/_synapse/admin/v1/register", json={"nonce": nonce, "username": name, "password": "pw",
                                                                 "admin": True, "mac": mac.hexdigest()}) as resp:
        return await resp.json()


async def run(messages: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench-privacy-"))
    hs_port, as_port = free_port(), free_port()
    server_name = f"localhost:{hs_port}"
    config = parse_privacy_config({
        "homeserver_url": f"http://127.0.0.1:{hs_port}", "server_name": server_name, "as_token": "as",
        "hs_token": "hs", "admin_api_token": "adm", "bind": {"host": "127.0.0.1", "port": as_port},
        "database": {"engine": "sqlite", "path": str(workdir / "privacy.db")},
        "export": {"progress_every": 5000}, "retention": {"interval_hours": 0}, "homeserver_shared_secret": SECRET,
    })
    (workdir / "reg.yaml").write_text(registration_yaml(config))
    hs = HomeServer(parse_config({
        "server_name": server_name, "data_dir": str(workdir),
        "listeners": [{"host": "127.0.0.1", "port": hs_port, "resources": ["client", "federation", "admin"]}],
        "database": {"engine": "sqlite", "path": str(workdir / "hs.db")},
        "registration": {"enabled": True, "shared_secret": SECRET}, "passwords": {"bcrypt_rounds": 4},
        "rate_limits": {"enabled": False}, "logging": {"level": "WARNING"},
        "app_service_config_files": [str(workdir / "reg.yaml")], "http": {"x_forwarded": True},
    }))
    await hs.start()
    service = PrivacyService(config)
    await service.start()
    await asyncio.wait_for(service.ready.wait(), 30)  # the service made its bot an admin
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{hs_port}") as session:
            member = await register_admin(session, "bench")  # any account will do
            token = member["access_token"]
            rooms = [(await call(session, token, "POST", "/_matrix/client/v3/createRoom",
                                 {"name": f"room {i}"}))["room_id"] for i in range(4)]
            started = time.perf_counter()
            semaphore = asyncio.Semaphore(16)

            async def send(i: int) -> None:
                async with semaphore:
                    await call(session, token, "PUT", f"/_matrix/client/v3/rooms/{q(rooms[i % 4])}/send/"
                               f"m.room.message/t{i}", {"msgtype": "m.text", "body": f"bericht {i} https://x.test/{i}"})

            await asyncio.gather(*(send(i) for i in range(messages)))
            fill_s = time.perf_counter() - started
            dm = (await call(session, token, "POST", "/_matrix/client/v3/createRoom",
                             {"is_direct": True, "invite": [config.bot_user_id]}))["room_id"]
            while config.bot_user_id not in (await call(session, token, "GET",
                                                        f"/_matrix/client/v3/rooms/{q(dm)}/joined_members"))["joined"]:
                await asyncio.sleep(0.05)
            started = time.perf_counter()
            await call(session, token, "POST", f"/_matrix/client/v3/rooms/{q(dm)}/send/m.room.message",
                       {"msgtype": "m.text", "body": "export"})
            file_event = None
            while file_event is None:
                page = await call(session, token, "GET", f"/_matrix/client/v3/rooms/{q(dm)}/messages", dir="b",
                                  limit=20)
                file_event = next((e for e in page["chunk"] if e["content"].get("msgtype") == "m.file"), None)
                if file_event is None:
                    await asyncio.sleep(0.05)
            export_s = time.perf_counter() - started
            info = file_event["content"]["file"]
            server, media_id = info["url"].removeprefix("mxc://").split("/", 1)
            async with session.get(f"/_matrix/client/v1/media/download/{server}/{media_id}",
                                   headers={"Authorization": f"Bearer {token}"}) as resp:
                archive = zipfile.ZipFile(io.BytesIO(decrypt_attachment(await resp.read(), info)))
            export = json.loads(archive.read("export.json"))
            exported = sum(1 for events in export["messages"].values() for e in events
                           if e["type"] == "m.room.message" and e["content"].get("body", "").startswith("bericht"))
            notice_s = [await notice_latency(session, token, dm, member["user_id"], n) for n in range(1, 4)]
            [request] = [r for r in await service.store.requests_of(member["user_id"]) if r.kind == "export"]
            return {"collect_ms": request.detail.get("collect_ms"),
                    "build_and_upload_ms": request.detail.get("build_and_upload_ms"), "messages": messages, "exported": exported, "links": len(export["links"]),
                    "fill_s": round(fill_s, 2), "export_s": round(export_s, 2),
                    "zip_bytes": file_event["content"]["info"]["size"], "notice_s": notice_s}
    finally:
        await service.stop()
        await hs.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def notice_latency(session: aiohttp.ClientSession, token: str, dm: str, user_id: str, n: int) -> float:
    """Seconds from a login from a new address until the bot's notice naming its device is in the DM."""
    device = f"BENCH{n}"
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
            "password": "pw", "device_id": device}
    started = time.perf_counter()
    async with session.post("/_matrix/client/v3/login", json=body, headers={"X-Forwarded-For": f"203.0.113.{n}"}) as r:
        assert r.status == 200, await r.text()
    while True:
        page = await call(session, token, "GET", f"/_matrix/client/v3/rooms/{q(dm)}/messages", dir="b", limit=10)
        if any(device in e["content"].get("body", "") for e in page["chunk"]):
            return round(time.perf_counter() - started, 3)
        if time.perf_counter() - started > 60:
            return float("inf")
        await asyncio.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--quick", action="store_true", help="1,000 messages")
    args = parser.parse_args()
    result = asyncio.run(run(1000 if args.quick else args.messages))
    print(json.dumps(result))
    ok = result["exported"] == result["messages"] and (args.quick or result["export_s"] < 10)
    print(f"privacy export: {result['messages']} messages exported in {result['export_s']} s "
          f"({'ok' if ok else 'FAILED: target 10 s and every message'})")
    notices_ok = max(result["notice_s"]) < 5
    print(f"security notice latency: {result['notice_s']} s ({'ok' if notices_ok else 'FAILED: target 5 s'})")
    ok = ok and notices_ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
