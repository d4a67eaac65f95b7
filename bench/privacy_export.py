"""The privacy service's flow for one member, timed, on our homeserver and on Synapse side by side.

Targets: an export of 10,000 messages and 50 MB of media in < 10 s; a login from a new address or
device reaching the member as a DM notice in < 5 s; the erasure of the same member (no target).

For each server (ours in this process on SQLite, or PostgreSQL with `--postgres DSN`; Synapse from
PyPI in a subprocess), the privacy service runs in this process: one member sends `--messages`
messages over four rooms and uploads `--media-mb` of pictures (5 MB each), then DMs the bot
`export` (timed until the encrypted ZIP is in the DM; the archive is decrypted and its messages and
media bytes checked), signs in three times from new addresses (ours: `X-Forwarded-For`; Synapse,
which has no login feed and does not trust that header: a new device making one request, found by
the service's admin-API polling), then `wis` + code (timed until the report is in the DM).

    .venv/bin/python bench/privacy_export.py [--messages 10000] [--media-mb 50] [--quick] [--no-synapse]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import io
import json
import os
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


async def register(session: aiohttp.ClientSession, name: str, secret: str, admin: bool) -> dict:
    async with session.get("/_synapse/admin/v1/register") as resp:
        nonce = (await resp.json())["nonce"]
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(f"{nonce}\0{name}\0pw\0".encode() + (b"admin" if admin else b"notadmin"))
    async with session.post("/_synapse/admin/v1/register", json={"nonce": nonce, "username": name, "password": "pw",
                                                                 "admin": admin, "mac": mac.hexdigest()}) as resp:
        return await resp.json()


def privacy_config(workdir: Path, hs_port: int, as_port: int, secret: str):
    return parse_privacy_config({
        "homeserver_url": f"http://127.0.0.1:{hs_port}", "server_name": f"localhost:{hs_port}", "as_token": "as",
        "hs_token": "hs", "admin_api_token": "adm", "bind": {"host": "127.0.0.1", "port": as_port},
        "database": {"engine": "sqlite", "path": str(workdir / "privacy.db")},
        "export": {"progress_every": 5000}, "retention": {"interval_hours": 0}, "homeserver_shared_secret": secret,
        "erasure": {"keep_public_room_messages": True},
    })


async def run_ours(messages: int, media_mb: int, postgres_dsn: str | None) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench-privacy-"))
    hs_port, as_port = free_port(), free_port()
    config = privacy_config(workdir, hs_port, as_port, SECRET)
    (workdir / "reg.yaml").write_text(registration_yaml(config))
    database = ({"engine": "postgres", "dsn": postgres_dsn} if postgres_dsn
                else {"engine": "sqlite", "path": str(workdir / "hs.db")})
    hs = HomeServer(parse_config({
        "server_name": config.server_name, "data_dir": str(workdir),
        "listeners": [{"host": "127.0.0.1", "port": hs_port, "resources": ["client", "federation", "admin"]}],
        "database": database,
        "registration": {"enabled": True, "shared_secret": SECRET}, "passwords": {"bcrypt_rounds": 4},
        "rate_limits": {"enabled": False}, "logging": {"level": "WARNING"},
        "app_service_config_files": [str(workdir / "reg.yaml")],
        # The encrypted archive holds all the media: it must fit in one upload.
        "http": {"x_forwarded": True, "max_request_body_size": 200 * 1024 * 1024},
        "media": {"max_upload_size": 200 * 1024 * 1024},
    }))
    await hs.start()
    service = PrivacyService(config)
    await service.start()
    try:
        await asyncio.wait_for(service.ready.wait(), 60)  # the service made its bot an admin
        return await flow(f"http://127.0.0.1:{hs_port}", SECRET, service, messages, media_mb, via_header=True)
    finally:
        await service.stop()
        await hs.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def run_synapse(messages: int, media_mb: int) -> dict:
    from scripts.synapse.run_synapse import start_synapse

    workdir = Path(tempfile.mkdtemp(prefix="bench-privacy-synapse-"))
    hs_port, as_port = free_port(), free_port()
    config = privacy_config(workdir, hs_port, as_port, "unset")
    (workdir / "reg.yaml").write_text(registration_yaml(config))
    server = await asyncio.to_thread(start_synapse, workdir / "synapse", hs_port,
                                     extra_config={"app_service_config_files": [str(workdir / "reg.yaml")],
                                                   "max_upload_size": "200M"})
    config = privacy_config(workdir, hs_port, as_port, server.registration_shared_secret)
    service = PrivacyService(config, device_poll_s=0.5)
    await service.start()
    try:
        await asyncio.wait_for(service.ready.wait(), 60)
        return await flow(server.url, server.registration_shared_secret, service, messages, media_mb,
                          via_header=False)
    finally:
        await service.stop()
        await asyncio.to_thread(server.stop)
        shutil.rmtree(workdir, ignore_errors=True)


async def flow(base_url: str, secret: str, service: PrivacyService, messages: int, media_mb: int, *,
               via_header: bool) -> dict:
    bot = service.config.bot_user_id
    async with aiohttp.ClientSession(base_url, timeout=aiohttp.ClientTimeout(total=600)) as session:
        admin = (await register(session, "bench-admin", secret, admin=True))["access_token"]
        member = await register(session, "bench", secret, admin=False)
        token, user_id = member["access_token"], member["user_id"]
        rooms = [(await call(session, token, "POST", "/_matrix/client/v3/createRoom",
                             {"name": f"room {i}", "preset": "public_chat" if i == 0 else "private_chat"}))["room_id"]
                 for i in range(4)]
        started = time.perf_counter()
        semaphore = asyncio.Semaphore(16)

        async def send(i: int) -> None:
            async with semaphore:
                await call(session, token, "PUT", f"/_matrix/client/v3/rooms/{q(rooms[i % 4])}/send/"
                           f"m.room.message/t{i}", {"msgtype": "m.text", "body": f"bericht {i} https://x.test/{i}"})

        await asyncio.gather(*(send(i) for i in range(messages)))
        fill_s = time.perf_counter() - started
        uploaded = 0
        for n in range(max(1, media_mb // 5) if media_mb else 0):
            data = os.urandom(min(5, media_mb) * 1024 * 1024)
            async with session.post("/_matrix/media/v3/upload", data=data, params={"filename": f"foto{n}.jpg"},
                                    headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}) as r:
                assert r.status == 200, await r.text()
            uploaded += len(data)
        dm = (await call(session, token, "POST", "/_matrix/client/v3/createRoom",
                         {"is_direct": True, "invite": [bot]}))["room_id"]
        while bot not in (await call(session, token, "GET",
                                     f"/_matrix/client/v3/rooms/{q(dm)}/joined_members"))["joined"]:
            await asyncio.sleep(0.05)

        async def say(text: str) -> None:
            await call(session, token, "POST", f"/_matrix/client/v3/rooms/{q(dm)}/send/m.room.message",
                       {"msgtype": "m.text", "body": text})

        async def bot_message(predicate, since: float, timeout: float = 600) -> tuple[dict, float]:
            while True:  # read as the admin: after the erasure the member's token is gone
                page = await call(session, admin, "GET", f"/_synapse/admin/v1/rooms/{q(dm)}/messages", dir="b",
                                  limit=20)
                found = next((e for e in page["chunk"] if e["sender"] == bot and predicate(e["content"])), None)
                if found is not None:
                    return found, round(time.perf_counter() - since, 3)
                if time.perf_counter() - since > timeout:
                    raise RuntimeError("no answer from the bot")
                await asyncio.sleep(0.05)

        started = time.perf_counter()
        await say("export")
        file_event, export_s = await bot_message(lambda c: c.get("msgtype") == "m.file", started)
        info = file_event["content"]["file"]
        server, media_id = info["url"].removeprefix("mxc://").split("/", 1)
        async with session.get(f"/_matrix/client/v1/media/download/{server}/{media_id}",
                               headers={"Authorization": f"Bearer {token}"}) as resp:
            archive = zipfile.ZipFile(io.BytesIO(decrypt_attachment(await resp.read(), info)))
        export = json.loads(archive.read("export.json"))
        exported = sum(1 for events in export["messages"].values() for e in events
                       if e["type"] == "m.room.message" and e["content"].get("body", "").startswith("bericht"))
        media_bytes = sum(archive.getinfo(m["file"]).file_size for m in export["media"] if m.get("file"))
        [request] = [r for r in await service.store.requests_of(user_id) if r.kind == "export"]
        while service.login_watcher_state not in ("running", "polling"):
            await asyncio.sleep(0.1)
        notice_s = [await notice_latency(session, token, admin, dm, bot, user_id, n, via_header) for n in range(1, 4)]
        print(json.dumps({"before_erasure": {"export_s": export_s, "exported": exported, "media_bytes": media_bytes,
                                             "collect_ms": request.detail.get("collect_ms"),
                                             "build_and_upload_ms": request.detail.get("build_and_upload_ms"),
                                             "notice_s": notice_s}}), flush=True)
        started = time.perf_counter()
        await say("wis")
        confirm, _ = await bot_message(lambda c: "'wis " in c.get("body", ""), started)
        code = confirm["content"]["body"].split("'wis ")[1].split("'")[0]
        started = time.perf_counter()
        await say(f"wis {code}")
        # Every message is redacted one by one: minutes for 10,000 on a loaded machine.
        _, erase_s = await bot_message(lambda c: "Bewaard" in c.get("body", ""), started, timeout=3600)
        return {"messages": messages, "exported": exported, "media_bytes_uploaded": uploaded,
                "media_bytes_exported": media_bytes, "links": len(export["links"]),
                "unreachable": sorted(export["unreachable"]), "fill_s": round(fill_s, 2), "export_s": export_s,
                "collect_ms": request.detail.get("collect_ms"),
                "build_and_upload_ms": request.detail.get("build_and_upload_ms"),
                "zip_bytes": file_event["content"]["info"]["size"], "notice_s": notice_s, "erase_s": erase_s}


async def notice_latency(session: aiohttp.ClientSession, token: str, admin: str, dm: str, bot: str, user_id: str,
                         n: int, via_header: bool) -> float:
    """Seconds from a sign-in from a new address (or, on Synapse, a new device's first request) until
    the bot's notice naming its device is in the DM."""
    device = f"BENCH{n}"
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
            "password": "pw", "device_id": device}
    headers = {"X-Forwarded-For": f"203.0.113.{n}"} if via_header else {}
    started = time.perf_counter()
    async with session.post("/_matrix/client/v3/login", json=body, headers=headers) as r:
        assert r.status == 200, await r.text()
        new_token = (await r.json())["access_token"]
    if not via_header:  # Synapse records a device's address at its first request
        await call(session, new_token, "GET", "/_matrix/client/v3/account/whoami")
    while True:
        page = await call(session, admin, "GET", f"/_synapse/admin/v1/rooms/{q(dm)}/messages", dir="b", limit=10)
        if any(e["sender"] == bot and device in e["content"].get("body", "") for e in page["chunk"]):
            return round(time.perf_counter() - started, 3)
        if time.perf_counter() - started > 60:
            return float("inf")
        await asyncio.sleep(0.02)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--media-mb", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="1,000 messages and 10 MB of media")
    parser.add_argument("--no-synapse", action="store_true", help="our homeserver only")
    parser.add_argument("--synapse-messages", type=int,
                        help="fewer messages for Synapse (it fills slowly); default: the same")
    parser.add_argument("--postgres", metavar="DSN", help="our homeserver on this (empty) PostgreSQL database")
    args = parser.parse_args()
    messages, media_mb = (1000, 10) if args.quick else (args.messages, args.media_mb)
    results = {}
    print(f"load average before: {load()}", flush=True)
    results["ours"] = asyncio.run(run_ours(messages, media_mb, args.postgres))
    print(json.dumps({"ours": results["ours"]}), flush=True)
    if not args.no_synapse:
        print(f"load average before Synapse: {load()}", flush=True)
        results["synapse"] = asyncio.run(run_synapse(args.synapse_messages or messages, media_mb))
        print(json.dumps({"synapse": results["synapse"]}), flush=True)
    print(f"load average after: {load()}")
    print(f"{'':28}" + "".join(f"{name:>14}" for name in results))
    for key in ("messages", "exported", "media_bytes_exported", "fill_s", "export_s", "collect_ms",
                "build_and_upload_ms", "erase_s"):
        print(f"{key:28}" + "".join(f"{str(r.get(key)):>14}" for r in results.values()))
    print(f"{'notice_s (max of 3)':28}" + "".join(f"{max(r['notice_s']):>14}" for r in results.values()))
    ours = results["ours"]
    ok = ours["exported"] == ours["messages"] and ours["media_bytes_exported"] == ours["media_bytes_uploaded"]
    ok = ok and (args.quick or ours["export_s"] < 10)
    print(f"privacy export (ours): {ours['messages']} messages + {ours['media_bytes_exported']} media bytes in "
          f"{ours['export_s']} s ({'ok' if ok else 'FAILED: target 10 s, every message and byte'})")
    notices_ok = max(ours["notice_s"]) < 5
    print(f"security notice latency (ours): {ours['notice_s']} s ({'ok' if notices_ok else 'FAILED: target 5 s'})")
    return 0 if ok and notices_ok else 1


if __name__ == "__main__":
    sys.exit(main())
