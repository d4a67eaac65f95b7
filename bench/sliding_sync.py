"""Simplified sliding sync benchmark: ours and Synapse in one run, same workload.

    .venv/bin/python bench/sliding_sync.py [--quick] [--db sqlite|postgres] [--servers ours,synapse]

For each server in turn (fresh database, rate limits off, loopback only):
  1. setup: register two users; the subject creates `rooms` named rooms and sends one message in
     each; a second user joins the last room; then 5 s for background work to settle
  2. first response: a new connection (fresh conn_id each time) asks for one list, range 0-19,
     timeline_limit 1, with the required_state Element X's room list asks for; first and median
     of `repeats`
  3. new-message latency: the subject holds an open connection long-polling (`pos`, timeout 30 s);
     the second user sends a message; time from the send until the long poll returns with it,
     `messages` times; p50 and p95
The table goes to stdout and the results to bench/results/sliding_sync-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402
import servers  # noqa: E402
from messaging import CLIENT, Api, User, bounded, percentile, q, shared_secret_mac  # noqa: E402

SLIDING = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
SETTLE_SECONDS = 5.0
REQUIRED_STATE = [["m.room.name", ""], ["m.room.avatar", ""], ["m.room.encryption", ""],
                  ["m.room.create", ""], ["m.room.member", "$LAZY"], ["m.room.member", "$ME"]]


@dataclass(frozen=True)
class Workload:
    rooms: int = 500
    repeats: int = 10
    messages: int = 30
    concurrency: int = 8


QUICK = Workload(rooms=50, repeats=3, messages=10)


def list_body(conn_id: str) -> dict[str, Any]:
    return {"conn_id": conn_id, "lists": {"all": {"ranges": [[0, 19]], "timeline_limit": 1,
                                                  "required_state": REQUIRED_STATE}}}


class Run:
    def __init__(self, api: Api, secret: str, w: Workload):
        self.api = api
        self.secret = secret
        self.w = w
        self.subject: User | None = None
        self.sender: User | None = None
        self.rooms: list[str] = []
        self.pos = ""
        self.tag = str(int(time.time()))

    async def register(self, index: int) -> User:
        localpart, password = f"slide{index}", f"pw-{self.tag}-{index}"
        nonce = (await self.api.call("GET", "/_synapse/admin/v1/register"))["nonce"]
        body = {"nonce": nonce, "username": localpart, "password": password, "admin": False,
                "mac": shared_secret_mac(self.secret, nonce, localpart, password)}
        reply = await self.api.call("POST", "/_synapse/admin/v1/register", body=body)
        return User(index, localpart, reply["user_id"], reply["access_token"], password)

    async def setup(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.subject, self.sender = await self.register(0), await self.register(1)
        subject = self.subject

        async def make(i: int) -> str:
            room = await self.api.call("POST", CLIENT + "/createRoom", token=subject.token,
                                       body={"name": f"room {i}", "preset": "public_chat"})
            room_id = room["room_id"]
            await self.api.call("PUT", f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/s{i}",
                                token=subject.token, body={"msgtype": "m.text", "body": f"hello {i}"})
            return room_id

        self.rooms = await bounded(self.w.concurrency, [lambda i=i: make(i) for i in range(self.w.rooms)])
        await self.api.call("POST", f"{CLIENT}/join/{q(self.rooms[-1])}", token=self.sender.token, body={})
        # Both servers finish their background work on the setup (push evaluation, caches) before timing.
        await asyncio.sleep(SETTLE_SECONDS)
        return {"seconds": time.perf_counter() - started, "rooms": len(self.rooms)}

    async def first_response(self) -> dict[str, Any]:
        assert self.subject is not None
        times = []
        rooms_seen = 0
        for i in range(self.w.repeats):
            elapsed, body = await self.api.timed("POST", SLIDING, token=self.subject.token,
                                                 body=list_body(f"bench-first-{i}"))
            times.append(elapsed * 1000)
            rooms_seen = len(body.get("rooms", {}))
            if body.get("lists", {}).get("all", {}).get("count") != self.w.rooms:
                raise RuntimeError(f"list count {body.get('lists')} != {self.w.rooms}")
        return {"first_ms": times[0], "median_ms": statistics.median(times), "rooms_in_response": rooms_seen}

    async def _wait_for(self, token: str, body: dict[str, Any], room_id: str, marker: str) -> float:
        """Long-poll from `self.pos` until `marker` arrives in the room; when it arrived."""
        while True:
            reply = await self.api.call("POST", SLIDING, token=token, body=body,
                                        params={"pos": self.pos, "timeout": "30000"})
            self.pos = reply["pos"]
            timeline = reply.get("rooms", {}).get(room_id, {}).get("timeline", [])
            if any(e.get("content", {}).get("body") == marker for e in timeline):
                return time.perf_counter()

    async def latency(self) -> dict[str, Any]:
        assert self.subject is not None and self.sender is not None
        subject, sender, room_id = self.subject, self.sender, self.rooms[-1]
        body = list_body("bench-live")
        self.pos = (await self.api.call("POST", SLIDING, token=subject.token, body=body))["pos"]
        samples = []
        for i in range(self.w.messages):
            marker = f"live {i} {self.tag}"
            poller = asyncio.create_task(self._wait_for(subject.token, body, room_id, marker))
            await asyncio.sleep(0.2)  # let the long poll settle into waiting
            sent_at = time.perf_counter()
            await self.api.call("PUT", f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/l{i}-{self.tag}",
                                token=sender.token, body={"msgtype": "m.text", "body": marker})
            delivered_at = await asyncio.wait_for(poller, 60)
            samples.append((delivered_at - sent_at) * 1000)
        return {"p50_ms": percentile(samples, 0.5), "p95_ms": percentile(samples, 0.95), "samples": len(samples)}


async def bench_server(kind: str, db: str, w: Workload) -> dict[str, Any]:
    print(f"{kind} ({db}): starting", file=sys.stderr, flush=True)
    result: dict[str, Any] = {}
    try:
        with servers.start_server(kind, db) as server:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as session:
                run = Run(Api(session, server.url), server.shared_secret, w)
                for phase in ("setup", "first_response", "latency"):
                    print(f"{kind}: {phase}", file=sys.stderr, flush=True)
                    try:
                        result[phase] = await getattr(run, phase)()
                    except Exception as error:  # one failed phase still reports the others
                        result[phase] = {"error": f"{type(error).__name__}: {error}"}
                        if phase == "setup":
                            break
            result["alive_at_end"] = server.alive()
    except Exception as error:
        result["error"] = f"{type(error).__name__}: {error}"
    return result


def figures(w: Workload) -> list[report.Figure]:
    return [
        (f"first response, {w.rooms} rooms, median (ms)", ("first_response", "median_ms"), "<= 0.3x"),
        (f"first response, {w.rooms} rooms, first (ms)", ("first_response", "first_ms"), ""),
        ("new message -> open connection p50 (ms)", ("latency", "p50_ms"), "<= 0.5x"),
        ("new message -> open connection p95 (ms)", ("latency", "p95_ms"), ""),
        ("setup (s)", ("setup", "seconds"), ""),
    ]


async def bench(args: argparse.Namespace) -> int:
    w = QUICK if args.quick else Workload()
    if args.rooms:
        w = replace(w, rooms=args.rooms)
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    results = {kind: await bench_server(kind, args.db, w) for kind in kinds}
    table, rows = report.render(results, figures(w))
    print(f"\nsliding sync benchmark, {args.db}, workload {asdict(w)}\n\n{table}")
    for kind, result in results.items():
        for phase, r in result.items():
            if isinstance(r, dict) and "error" in r:
                print(f"  {kind}: {phase}: {r['error']}")
        if "error" in result:
            print(f"  {kind}: {result['error']}")
    report.save_results("sliding_sync", {"db": args.db, "workload": asdict(w), "figures": rows,
                                         "servers": results}, args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="50 rooms, fewer repeats")
    parser.add_argument("--db", choices=servers.DB_KINDS, default="sqlite")
    parser.add_argument("--servers", default="ours,synapse", help="comma-separated, run in this order")
    parser.add_argument("--rooms", type=int, help=f"default {Workload.rooms}")
    parser.add_argument("--out", type=Path, help="results JSON (default bench/results/sliding_sync-<time>.json)")
    args = parser.parse_args(argv)
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
