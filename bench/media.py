#!/usr/bin/env python3
"""Media benchmark: upload and download of 1 MB and 50 MB files, and thumbnailing a 4000x3000 JPEG,
ours against Synapse in one run (same machine, same client, fresh servers).

    .venv/bin/python bench/media.py             # ours then Synapse, SQLite
    .venv/bin/python bench/media.py --quick     # fewer repetitions

Every file uploaded is distinct random bytes, so content-addressed storage cannot skip work.
Thumbnail time is measured from the start of the JPEG upload to the end of the first 320x240 thumbnail
download: Synapse renders its thumbnails during the upload, ours on the first request, so only the
sum is comparable. Peak RSS is the server's process tree (VmHWM) over the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import messaging  # noqa: E402  (bench/ is a script directory, not a package)
import servers  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MB = 1_000_000
# 50 MB stays under both servers' default 50 MiB upload limit.
SIZES = {"1mb": 1 * MB, "50mb": 50 * MB}


def random_jpeg(seed: int) -> bytes:
    """A 4000x3000 photo-like JPEG (noise over a gradient), different for every seed."""
    noise = Image.frombytes("L", (1000, 750), os.urandom(750_000)).resize((4000, 3000))
    gradient = Image.linear_gradient("L").resize((4000, 3000))
    rgb = Image.merge("RGB", (gradient, noise, Image.eval(gradient, lambda v: (v + seed * 37) % 256)))
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=85)
    return out.getvalue()


class MediaClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str):
        self.session = session
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}

    async def upload(self, data: bytes, content_type: str) -> str:
        async with self.session.post(f"{self.base_url}/_matrix/media/v3/upload", data=data,
                                     headers={**self.headers, "Content-Type": content_type}) as response:
            body = await response.json()
            if response.status != 200:
                raise RuntimeError(f"upload -> {response.status} {body}")
            return body["content_uri"]

    async def get(self, path: str, params: dict[str, str] | None = None) -> int:
        """Fetch and discard a body, returning its length."""
        length = 0
        async with self.session.get(f"{self.base_url}{path}", headers=self.headers, params=params) as response:
            if response.status != 200:
                raise RuntimeError(f"GET {path} -> {response.status} {(await response.read())[:200]!r}")
            async for chunk in response.content.iter_chunked(1 << 20):
                length += len(chunk)
        return length


async def register(session: aiohttp.ClientSession, base_url: str, secret: str) -> str:
    async with session.get(f"{base_url}/_synapse/admin/v1/register") as response:
        nonce = (await response.json())["nonce"]
    localpart, password = f"media{os.urandom(3).hex()}", "bench password"
    body = {"nonce": nonce, "username": localpart, "password": password, "admin": False,
            "mac": messaging.shared_secret_mac(secret, nonce, localpart, password)}
    async with session.post(f"{base_url}/_synapse/admin/v1/register", json=body) as response:
        return (await response.json())["access_token"]


async def transfer_phase(client: MediaClient, size: int, repeats: int) -> dict[str, Any]:
    upload_s, download_s = [], []
    for _ in range(repeats):
        data = os.urandom(size)
        started = time.perf_counter()
        mxc = await client.upload(data, "application/octet-stream")
        upload_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        got = await client.get("/_matrix/client/v1/media/download/" + mxc.removeprefix("mxc://"))
        download_s.append(time.perf_counter() - started)
        if got != size:
            raise RuntimeError(f"downloaded {got} bytes of {size}")
    return {"upload_mb_s": size / MB / statistics.median(upload_s),
            "download_mb_s": size / MB / statistics.median(download_s), "repeats": repeats}


async def thumbnail_phase(client: MediaClient, repeats: int) -> dict[str, Any]:
    totals, thumbs = [], []
    for seed in range(repeats):
        jpeg = random_jpeg(seed)
        started = time.perf_counter()
        mxc = await client.upload(jpeg, "image/jpeg")
        uploaded = time.perf_counter()
        await client.get("/_matrix/client/v1/media/thumbnail/" + mxc.removeprefix("mxc://"),
                         {"width": "320", "height": "240", "method": "scale"})
        done = time.perf_counter()
        totals.append((done - started) * 1000)
        thumbs.append((done - uploaded) * 1000)
    return {"upload_and_thumbnail_ms": statistics.median(totals),
            "thumbnail_request_ms": statistics.median(thumbs), "repeats": repeats}


async def bench_server(kind: str, db: str, repeats: dict[str, int]) -> dict[str, Any]:
    print(f"{kind} ({db}): starting", file=sys.stderr, flush=True)
    with servers.start_server(kind, db) as server:
        rss = servers.PeakRss(server.pid)

        async def sample() -> None:
            while True:
                rss.sample()
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample())
        phases: dict[str, Any] = {}
        try:
            timeout = aiohttp.ClientTimeout(total=600)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                client = MediaClient(session, server.url, await register(session, server.url, server.shared_secret))
                for name, size in SIZES.items():
                    print(f"{kind}: {name} transfers", file=sys.stderr, flush=True)
                    phases[name] = await transfer_phase(client, size, repeats[name])
                print(f"{kind}: thumbnails", file=sys.stderr, flush=True)
                phases["thumbnail"] = await thumbnail_phase(client, repeats["thumbnail"])
        except Exception as error:  # a failing phase still reports the ones before it
            phases["error"] = f"{type(error).__name__}: {error}"
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
            rss.sample()
        return {"phases": phases, "peak_rss_mib": rss.peak_mib}


FIGURES = [
    messaging.Figure("up1", "upload 1 MB (MB/s)", "higher", 1.0, ("phases", "1mb", "upload_mb_s")),
    messaging.Figure("down1", "download 1 MB (MB/s)", "higher", 1.0, ("phases", "1mb", "download_mb_s")),
    messaging.Figure("up50", "upload 50 MB (MB/s)", "higher", 1.0, ("phases", "50mb", "upload_mb_s")),
    messaging.Figure("down50", "download 50 MB (MB/s)", "higher", 1.0, ("phases", "50mb", "download_mb_s")),
    messaging.Figure("thumb", "4000x3000 JPEG upload + thumbnail (ms)", "lower", 1.0,
                     ("phases", "thumbnail", "upload_and_thumbnail_ms")),
    messaging.Figure("rss", "peak RSS of server process tree (MiB)", "lower", None, ("peak_rss_mib",)),
]


async def bench(args: argparse.Namespace) -> int:
    repeats = {"1mb": 5, "50mb": 1, "thumbnail": 2} if args.quick else {"1mb": 20, "50mb": 3, "thumbnail": 5}
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    results = {kind: await bench_server(kind, args.db, repeats) for kind in kinds}
    ours, synapse = results.get("ours", {}), results.get("synapse", {})
    rows = [messaging.compare(f, messaging.dig(ours, f.path), messaging.dig(synapse, f.path)) for f in FIGURES]
    print(f"\nmedia benchmark, {args.db}, repeats {repeats}\n")
    print(messaging.render_table(rows))
    for kind, result in results.items():
        if "error" in result["phases"]:
            print(f"\n{kind}: {result['phases']['error']}")
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / ".gitignore").write_text("*\n")
    out = args.out or RESULTS_DIR / f"media-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps({"db": args.db, "repeats": repeats, "figures": rows, "servers": results}, indent=2))
    print(f"\nresults: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, for a smoke run")
    parser.add_argument("--db", choices=servers.DB_KINDS, default="sqlite")
    parser.add_argument("--servers", default="ours,synapse", help="comma-separated, run in this order")
    parser.add_argument("--out", type=Path, help="results JSON (default bench/results/media-<time>.json)")
    return asyncio.run(bench(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
