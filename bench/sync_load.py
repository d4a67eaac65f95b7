"""Sync fan-out under load: many long-polling devices while senders keep the rooms busy.

    .venv/bin/python bench/sync_load.py [--quick] [--db sqlite|postgres] [--servers ours,synapse]

For each server in turn (fresh database, rate limits off, loopback only), the same seeded workload:
  1. register `users` users and log each in again until it has `devices` devices (access tokens);
     create `rooms` rooms (room 0 holds everyone, user 0 is in every room, the others are seeded
     sizes) and join their members
  2. every device makes an initial /sync, then long-polls `/sync?since=...&timeout=30000` with the
     default filter, in a loop, for the whole run
  3. `senders` users send messages into their rooms for `duration` seconds: with `pacing` "fixed"
     (the default) each sender starts a send every `send_interval` seconds whether or not the
     previous one was acknowledged, so every server is offered the same load; with "ack" each
     waits for its acknowledgement, then `send_interval`, then sends the next (a slower server
     is then offered less)
  4. after the senders stop, wait up to `grace` seconds for the devices to see the last messages
Figures: delivery latency (send start -> the event is in a device's /sync response, for every
message and every device of every member of its room), send acknowledgement latency, the share of
(message, device) deliveries seen, timelines answered `limited: true` (with the default filter a
limited timeline is a gap the client must fill with /messages), polls that took past their timeout,
and the peak RSS of the server's process tree. A table goes to stdout, results to
bench/results/sync_load-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import messaging  # noqa: E402  (bench/ is a script directory, not a package)
import servers  # noqa: E402
from messaging import CLIENT, Api, HttpError, percentile, q  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SYNC_TIMEOUT_MS = 30_000
# A poll answered later than its timeout plus this has kept the client waiting past the timeout.
POLL_SLACK_S = 5.0
SETUP_CONCURRENCY = 20
INITIAL_SYNC_CONCURRENCY = 20
PHASE_TIMEOUT_S = 900.0
TAG = "load "


@dataclass(frozen=True)
class Workload:
    users: int = 50
    devices: int = 20
    rooms: int = 10
    min_members: int = 10
    max_members: int = 50
    senders: int = 20
    duration: float = 60.0
    send_interval: float = 1.0
    grace: float = 40.0
    room_version: str = "10"
    seed: int = 1
    pacing: str = "fixed"


QUICK = dataclasses.replace(Workload(), users=6, devices=3, rooms=3, min_members=3, max_members=6,
                            senders=3, duration=6.0, send_interval=0.2, grace=15.0)


def room_plan(w: Workload) -> list[messaging.RoomPlan]:
    return messaging.plan_rooms(messaging.Workload(users=w.users, rooms=w.rooms, min_members=w.min_members,
                                                   max_members=w.max_members, seed=w.seed))


@dataclass
class Device:
    index: int
    user: int
    token: str
    since: str = ""


@dataclass
class Stats:
    """What the clients saw; deliveries are (message index, device index)."""

    sent_at: dict[int, float] = dataclasses.field(default_factory=dict)
    room_of: dict[int, int] = dataclasses.field(default_factory=dict)
    acks_ms: list[float] = dataclasses.field(default_factory=list)
    delivered: dict[tuple[int, int], float] = dataclasses.field(default_factory=dict)
    duplicates: int = 0
    limited: int = 0
    responses: int = 0
    late_polls: int = 0
    longest_poll_s: float = 0.0
    sync_errors: int = 0
    send_errors: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)


class LoadRun:
    def __init__(self, api: Api, shared_secret: str, w: Workload) -> None:
        self.api = api
        self.w = w
        self.plans = room_plan(w)
        self.user_rooms = messaging.rooms_of_users(self.plans, w.users)
        self.helper = messaging.Run(api, shared_secret, messaging.Workload(
            users=w.users, rooms=w.rooms, min_members=w.min_members, max_members=w.max_members,
            room_version=w.room_version, seed=w.seed))
        self.devices: list[Device] = []
        self.stats = Stats()

    # --- setup -------------------------------------------------------------------------------
    async def setup(self) -> dict[str, Any]:
        started = time.perf_counter()
        await self.helper.register()
        await self.helper.make_rooms()
        users = self.helper.users

        async def login(user: messaging.User, n: int) -> str:
            body = {"type": "m.login.password", "password": user.password,
                    "identifier": {"type": "m.id.user", "user": user.localpart},
                    "initial_device_display_name": f"load device {n}"}
            return (await self.api.call("POST", f"{CLIENT}/login", body=body))["access_token"]

        extra = [lambda u=u, n=n: login(u, n) for u in users for n in range(1, self.w.devices)]
        tokens = iter(await messaging.bounded(SETUP_CONCURRENCY, extra))
        for user in users:
            for n in range(self.w.devices):
                token = user.token if n == 0 else next(tokens)
                self.devices.append(Device(len(self.devices), user.index, token))

        async def first_sync(device: Device) -> None:
            limit_one = json.dumps({"room": {"timeline": {"limit": 1}}})
            reply = await self.api.call("GET", f"{CLIENT}/sync", token=device.token, params={"filter": limit_one})
            device.since = reply["next_batch"]

        await messaging.bounded(INITIAL_SYNC_CONCURRENCY, [lambda d=d: first_sync(d) for d in self.devices])
        return {"seconds": time.perf_counter() - started, "devices": len(self.devices)}

    # --- the load ----------------------------------------------------------------------------
    def expected_devices(self, room: int) -> list[int]:
        members = set(self.plans[room].members)
        return [d.index for d in self.devices if d.user in members]

    async def poll(self, device: Device) -> None:
        stats = self.stats
        seen_rooms = set(self.helper.room_ids)
        while True:
            started = time.perf_counter()
            try:
                reply = await self.api.call(
                    "GET", f"{CLIENT}/sync", token=device.token,
                    params={"since": device.since, "timeout": str(SYNC_TIMEOUT_MS)},
                    timeout=SYNC_TIMEOUT_MS / 1000 + 120)
            except (HttpError, aiohttp.ClientError, TimeoutError) as error:
                stats.sync_errors += 1
                if len(stats.errors) < 20:
                    stats.errors.append(f"sync: {error}")
                await asyncio.sleep(1.0)
                continue
            now = time.perf_counter()
            took = now - started
            stats.longest_poll_s = max(stats.longest_poll_s, took)
            stats.late_polls += took > SYNC_TIMEOUT_MS / 1000 + POLL_SLACK_S
            stats.responses += 1
            device.since = reply["next_batch"]
            for room_id, room in reply.get("rooms", {}).get("join", {}).items():
                timeline = room.get("timeline", {})
                if timeline.get("limited") and room_id in seen_rooms:
                    stats.limited += 1
                for event in timeline.get("events", []):
                    body = event.get("content", {}).get("body")
                    if not isinstance(body, str) or not body.startswith(TAG):
                        continue
                    index = int(body[len(TAG):])
                    key = (index, device.index)
                    if key in stats.delivered:
                        stats.duplicates += 1
                    elif index in stats.sent_at:
                        stats.delivered[key] = now - stats.sent_at[index]

    async def send_one(self, user: messaging.User, room: int, counter: list[int]) -> None:
        stats = self.stats
        index = counter[0]
        counter[0] += 1
        stats.sent_at[index] = started = time.perf_counter()
        stats.room_of[index] = room
        path = f"{CLIENT}/rooms/{q(self.helper.room_ids[room])}/send/m.room.message/{q(f'load-{index}')}"
        try:
            await self.api.call("PUT", path, token=user.token, body={"msgtype": "m.text", "body": f"{TAG}{index}"})
            stats.acks_ms.append((time.perf_counter() - started) * 1000)
        except (HttpError, aiohttp.ClientError, TimeoutError) as error:
            # Not acknowledged: nobody is owed this message.
            del stats.sent_at[index], stats.room_of[index]
            stats.send_errors += 1
            if len(stats.errors) < 20:
                stats.errors.append(f"send: {error}")

    async def send_loop(self, position: int, sender: int, deadline: float, counter: list[int]) -> None:
        user = self.helper.users[sender]
        rooms = self.user_rooms[sender]
        interval = self.w.send_interval
        n = 0
        if self.w.pacing == "ack":
            while time.perf_counter() < deadline:
                await self.send_one(user, rooms[(position + n) % len(rooms)], counter)
                n += 1
                await asyncio.sleep(interval)
            return
        # Fixed pacing: the senders' starts are spread over one interval, then one send per interval each.
        next_at = time.perf_counter() + interval * position / max(1, self.w.senders)
        sends = []
        while next_at < deadline:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            sends.append(asyncio.create_task(self.send_one(user, rooms[(position + n) % len(rooms)], counter)))
            n += 1
            next_at += interval
        await asyncio.gather(*sends)

    def expected_count(self) -> int:
        per_room = [len(self.expected_devices(r)) for r in range(len(self.plans))]
        return sum(per_room[room] for index, room in self.stats.room_of.items())

    async def load(self) -> dict[str, Any]:
        w, stats = self.w, self.stats
        polls = [asyncio.create_task(self.poll(d)) for d in self.devices]
        try:
            await asyncio.sleep(2.0)  # every device is in its long poll before the first send
            deadline = time.perf_counter() + w.duration
            counter = [0]
            senders = list(range(min(w.senders, w.users)))
            await asyncio.gather(*(self.send_loop(p, s, deadline, counter) for p, s in enumerate(senders)))
            expected = self.expected_count()
            waited_until = time.perf_counter() + w.grace
            while len(stats.delivered) < expected and time.perf_counter() < waited_until:
                await asyncio.sleep(0.25)
        finally:
            for task in polls:
                task.cancel()
            await asyncio.gather(*polls, return_exceptions=True)
        delivery_ms = [v * 1000 for v in stats.delivered.values()]
        out: dict[str, Any] = {
            "messages": len(stats.sent_at), "expected_deliveries": expected, "deliveries": len(delivery_ms),
            "delivered_pct": 100.0 * len(delivery_ms) / expected if expected else None,
            "missed": expected - len(delivery_ms), "duplicates": stats.duplicates,
            "limited_timelines": stats.limited, "sync_responses": stats.responses,
            "late_polls": stats.late_polls, "longest_poll_s": stats.longest_poll_s,
            "sync_errors": stats.sync_errors, "send_errors": stats.send_errors, "errors": stats.errors,
        }
        if delivery_ms:
            out.update(delivery_p50_ms=percentile(delivery_ms, 0.5), delivery_p99_ms=percentile(delivery_ms, 0.99),
                       delivery_max_ms=max(delivery_ms))
        if stats.acks_ms:
            out.update(ack_p50_ms=percentile(stats.acks_ms, 0.5), ack_p99_ms=percentile(stats.acks_ms, 0.99),
                       ack_max_ms=max(stats.acks_ms))
        return out


async def bench_server(kind: str, db: str, w: Workload, keep_workdir: bool,
                       profile: Path | None = None) -> dict[str, Any]:
    print(f"{kind} ({db}): starting", file=sys.stderr, flush=True)
    try:
        context = servers.start_server(kind, db, keep_workdir=keep_workdir, profile=profile)
        server = context.__enter__()
    except Exception as error:  # a server that cannot start still gets a row of n/a
        return {"error": f"start failed: {type(error).__name__}: {error}", "phases": {}}
    print(f"{kind}: pid {server.pid}, {server.url}", file=sys.stderr, flush=True)
    rss = servers.PeakRss(server.pid)

    async def sample_memory() -> None:
        while True:
            rss.sample()
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample_memory())
    phases: dict[str, Any] = {}
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            run = LoadRun(Api(session, server.url), server.shared_secret, w)
            order: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = [
                ("setup", run.setup), ("load", run.load)]
            for name, phase in order:
                print(f"  {name} ...", file=sys.stderr, flush=True)
                try:
                    phases[name] = await asyncio.wait_for(phase(), PHASE_TIMEOUT_S)
                except messaging.ERRORS as error:
                    phases[name] = {"error": f"{type(error).__name__}: {error}"}
                    print(f"  {name} failed: {phases[name]['error']}", file=sys.stderr, flush=True)
                    break
        rss.sample()
        result = {"phases": phases, "peak_rss_mib": rss.peak_mib, "alive_at_end": server.alive(),
                  "workdir": str(server.workdir) if keep_workdir else None}
        if not server.alive():
            result["log_tail"] = server.log_tail()
        return result
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        print(f"{kind}: stopping", file=sys.stderr, flush=True)
        context.__exit__(None, None, None)


def figures_for(w: Workload) -> list[messaging.Figure]:
    F = messaging.Figure
    load = ("phases", "load")
    return [
        F("delivery_p50", "delivery latency p50 (ms)", "lower", None, (*load, "delivery_p50_ms")),
        F("delivery_p99", "delivery latency p99 (ms)", "lower", 0.2, (*load, "delivery_p99_ms")),
        F("delivery_max", "delivery latency max (ms)", "lower", None, (*load, "delivery_max_ms")),
        F("ack_p50", "send ack p50 (ms)", "lower", None, (*load, "ack_p50_ms")),
        F("ack_p99", "send ack p99 (ms; goal < 1000 absolute)", "lower", None, (*load, "ack_p99_ms")),
        F("delivered", "deliveries seen (%)", "higher", 1.0, (*load, "delivered_pct")),
        F("limited", "limited (gapped) timelines", "lower", None, (*load, "limited_timelines")),
        F("late_polls", "polls answered past timeout+5s", "lower", None, (*load, "late_polls")),
        F("messages", f"messages sent in {w.duration:.0f}s", "higher", None, (*load, "messages")),
        F("responses", "sync responses", "higher", None, (*load, "sync_responses")),
        F("peak_rss", "peak RSS of server process tree (MiB)", "lower", 0.3, ("peak_rss_mib",), whole_run=True),
        F("setup", f"setup: {w.users} users x {w.devices} devices (s)", "lower", None,
          ("phases", "setup", "seconds")),
    ]


def completed(result: dict[str, Any]) -> bool:
    phases = result.get("phases", {})
    return "error" not in result and len(phases) == 2 and not any("error" in p for p in phases.values())


def absolute_verdicts(results: dict[str, dict[str, Any]]) -> list[str]:
    """The issue's absolute goals, for our server."""
    load = results.get("ours", {}).get("phases", {}).get("load", {})
    if "delivered_pct" not in load:
        return []

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    lines = [f"send ack p99 < 1000 ms: {verdict(load.get('ack_p99_ms', 1e9) < 1000)}",
             f"delivery max <= {SYNC_TIMEOUT_MS} ms: {verdict(load.get('delivery_max_ms', 1e9) <= SYNC_TIMEOUT_MS)}",
             f"100% delivered, no limited timeline: "
             f"{verdict(load['missed'] == 0 and load['limited_timelines'] == 0)}"]
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small workload, for a smoke run")
    parser.add_argument("--db", choices=servers.DB_KINDS, default="sqlite")
    parser.add_argument("--servers", default="ours,synapse", help="comma-separated, run in this order")
    parser.add_argument("--out", type=Path, help="results JSON (default bench/results/sync_load-<time>.json)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep each server's data dir and log")
    parser.add_argument("--profile-ours", type=Path, metavar="FILE",
                        help="run our server under cProfile, stats to FILE (slows it: not for figures)")
    for field in dataclasses.fields(Workload):
        flag = "--" + field.name.replace("_", "-")
        kind = {"int": int, "float": float, "str": str}[str(field.type)]
        parser.add_argument(flag, type=kind, help=f"default {field.default} (quick: {getattr(QUICK, field.name)})")
    return parser.parse_args(argv)


def workload_from(args: argparse.Namespace) -> Workload:
    base = QUICK if args.quick else Workload()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Workload)
                 if getattr(args, f.name) is not None}
    w = dataclasses.replace(base, **overrides)
    if w.pacing not in ("fixed", "ack"):
        raise SystemExit("--pacing: fixed or ack")
    return w


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    w = workload_from(args)
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in servers.SERVER_KINDS]
    if unknown:
        raise SystemExit(f"unknown server(s): {', '.join(unknown)}")
    results = {kind: await bench_server(kind, args.db, w, args.keep_workdir,
                                        args.profile_ours if kind == "ours" else None) for kind in kinds}
    ours, synapse = results.get("ours", {}), results.get("synapse", {})
    both_complete = completed(ours) and completed(synapse)
    rows = [messaging.compare(f, messaging.dig(ours, f.path), messaging.dig(synapse, f.path),
                              both_complete or not f.whole_run) for f in figures_for(w)]
    print(f"\nsync fan-out benchmark, {args.db}, workload {dataclasses.asdict(w)}\n")
    print(messaging.render_table(rows))
    notes = absolute_verdicts(results)
    for kind, result in results.items():
        if "error" in result:
            notes.append(f"{kind}: {result['error']}")
        for name, phase in result.get("phases", {}).items():
            if "error" in phase:
                notes.append(f"{kind} {name}: {phase['error']}")
            for error in phase.get("errors", [])[:5]:
                notes.append(f"{kind} {name}: {error}")
    if notes:
        print("\nnotes:\n  " + "\n  ".join(notes))
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / ".gitignore").write_text("*\n")  # results are per machine; never committed
    out = args.out or RESULTS_DIR / f"sync_load-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    payload = {"db": args.db, "workload": dataclasses.asdict(w), "figures": rows, "servers": results}
    out.write_text(json.dumps(payload, indent=2))
    print(f"\nresults: {out}")
    return payload


def main_payload(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; the results it also writes as JSON."""
    args = parse_args(argv)
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(bench(args))


def main(argv: list[str] | None = None) -> int:
    main_payload(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
