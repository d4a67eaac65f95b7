"""Push benchmark: one big room, every message evaluated for every member; ours and Synapse in one run.

    .venv/bin/python bench/push.py [--quick] [--db sqlite|postgres] [--servers ours,synapse]

For each server in turn (fresh database, rate limits off, loopback only):
  1. register `members` users with the shared-secret admin API; user 0 creates a public room and
     everyone joins; users get mixed push rule sets (defaults, a keyword content rule, a room
     rule with a custom sound, an override rule on "urgent") so evaluation is not all one rule set
  2. send latency: `messages` messages back to back from 5 senders (some mention a member, some
     carry keywords); the latency of every PUT /send, while the server also evaluates the earlier
     messages for every member
  3. drain: time until the last message is listed in a probe member's GET /notifications
  4. notified latency: `probe_messages` messages one at a time; time from the start of the send
     until the probe member's GET /notifications lists it (evaluation included, whether the server
     does it in the send path, like Synapse, or after it, like ours)
  5. our own evaluation time per message, from our metrics listener (`push_evaluation_seconds`)

`--quick` scales everything down (100 members, 100 messages). The table goes to stdout and the
results to bench/results/push-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402  (bench/ is a script directory, not a package)
import servers  # noqa: E402
from messaging import CLIENT, Api, User, bounded, percentile, q, shared_secret_mac  # noqa: E402

SETUP_CONCURRENCY = 10
SENDERS = 5
PROBE_POLL_SECONDS = 0.005
DRAIN_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class Workload:
    members: int = 1000
    messages: int = 1000
    probe_messages: int = 50


QUICK = Workload(members=100, messages=100, probe_messages=20)


def rules_for(index: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, rule_id, body) of the push rules member `index` adds: four mixes of rule sets."""
    mix = index % 4
    if mix == 1:
        return [("content", "deploy", {"pattern": "deploy*", "actions": ["notify", {"set_tweak": "highlight"}]})]
    if mix == 2:
        return [("room", "ROOM", {"actions": ["notify", {"set_tweak": "sound", "value": "ding"}]})]
    if mix == 3:
        return [("override", "urgent", {"conditions": [{"kind": "event_match", "key": "content.body",
                                                         "pattern": "*urgent*"}],
                                         "actions": ["notify", {"set_tweak": "highlight"}]})]
    return []


def message_body(n: int, users: list[User]) -> dict[str, Any]:
    body: dict[str, Any] = {"msgtype": "m.text", "body": f"message {n}"}
    if n % 10 == 3:
        target = users[(n * 7) % len(users)]
        body["body"] += f" for {target.localpart}"
        body["m.mentions"] = {"user_ids": [target.user_id]}
    elif n % 7 == 2:
        body["body"] += " deploying now"
    elif n % 11 == 5:
        body["body"] += " this is urgent"
    return body


class PushRun:
    def __init__(self, api: Api, secret: str, w: Workload) -> None:
        self.api = api
        self.secret = secret
        self.w = w
        self.users: list[User] = []
        self.room_id = ""
        self.tag = str(int(time.time()))

    @property
    def probe(self) -> User:
        # Member 4 keeps the default rules and never sends, so every message notifies it.
        return self.users[4]

    async def register_one(self, index: int) -> User:
        localpart = f"push{index:04d}"
        password = f"pw-{self.tag}-{index}"
        nonce = (await self.api.call("GET", "/_synapse/admin/v1/register"))["nonce"]
        body = {"nonce": nonce, "username": localpart, "password": password, "admin": False,
                "mac": shared_secret_mac(self.secret, nonce, localpart, password)}
        reply = await self.api.call("POST", "/_synapse/admin/v1/register", body=body)
        return User(index, localpart, reply["user_id"], reply["access_token"], password)

    async def setup(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.users = await bounded(SETUP_CONCURRENCY, [lambda i=i: self.register_one(i)
                                                       for i in range(self.w.members)])
        registered = time.perf_counter()
        owner = self.users[0]
        self.room_id = (await self.api.call("POST", f"{CLIENT}/createRoom", token=owner.token,
                                            body={"preset": "public_chat"}))["room_id"]
        await bounded(SETUP_CONCURRENCY, [
            lambda u=u: self.api.call("POST", f"{CLIENT}/join/{q(self.room_id)}", token=u.token, body={})
            for u in self.users[1:]])
        joined = time.perf_counter()

        async def add_rules(user: User) -> None:
            for kind, rule_id, body in rules_for(user.index):
                rule_id = self.room_id if rule_id == "ROOM" else rule_id
                await self.api.call("PUT", f"{CLIENT}/pushrules/global/{kind}/{q(rule_id)}", token=user.token,
                                    body=body)

        await bounded(SETUP_CONCURRENCY, [lambda u=u: add_rules(u) for u in self.users])
        return {"register_s": registered - started, "join_s": joined - registered,
                "rules_s": time.perf_counter() - joined}

    async def send(self, sender: User, n: int) -> tuple[float, str]:
        path = f"{CLIENT}/rooms/{q(self.room_id)}/send/m.room.message/{q(f'push-{self.tag}-{n}')}"
        elapsed, reply = await self.api.timed("PUT", path, token=sender.token, body=message_body(n, self.users))
        return elapsed, reply["event_id"]

    async def probe_sees(self, event_id: str, timeout: float) -> bool:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            listed = await self.api.call("GET", f"{CLIENT}/notifications", token=self.probe.token,
                                         params={"limit": "5"})
            if any(n["event"]["event_id"] == event_id for n in listed["notifications"]):
                return True
            await asyncio.sleep(PROBE_POLL_SECONDS)
        return False

    async def send_burst(self) -> dict[str, Any]:
        senders = [u for u in self.users[:SENDERS + 1] if u is not self.probe][:SENDERS]
        latencies: list[float] = []
        last_event = ""
        started = time.perf_counter()
        for n in range(self.w.messages):
            elapsed, last_event = await self.send(senders[n % len(senders)], n)
            latencies.append(elapsed)
        sent = time.perf_counter()
        drained = await self.probe_sees(last_event, DRAIN_TIMEOUT_SECONDS)
        return {"p50_ms": percentile(latencies, 0.5) * 1000, "p95_ms": percentile(latencies, 0.95) * 1000,
                "p99_ms": percentile(latencies, 0.99) * 1000, "mean_ms": statistics.fmean(latencies) * 1000,
                "send_s": sent - started, "drain_after_send_s": time.perf_counter() - sent if drained else None}

    async def notified_latency(self) -> dict[str, Any]:
        sender = self.users[1]
        latencies: list[float] = []
        for n in range(self.w.probe_messages):
            started = time.perf_counter()
            _, event_id = await self.send(sender, self.w.messages + n)
            if await self.probe_sees(event_id, 60.0):
                latencies.append(time.perf_counter() - started)
        if not latencies:
            return {"error": "no notification became visible"}
        return {"p50_ms": percentile(latencies, 0.5) * 1000, "p95_ms": percentile(latencies, 0.95) * 1000}


def our_evaluation_metrics(server: servers.RunningServer) -> dict[str, Any] | None:
    """Our `push_evaluation_seconds` histogram from the metrics listener named in our config."""
    try:
        config = yaml.safe_load((server.workdir / "homeserver.yaml").read_text())
        port = next(lst["port"] for lst in config["listeners"] if "metrics" in lst.get("resources", []))
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except (OSError, StopIteration, KeyError, yaml.YAMLError):
        return None

    def value(name: str) -> float | None:
        match = re.search(rf"^{name}(?:{{}})? ([0-9.e+-]+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else None

    total, count = value("push_evaluation_seconds_sum"), value("push_evaluation_seconds_count")
    recipients = value("push_evaluated_recipients_total")
    if not count or total is None:
        return None
    return {"events": count, "mean_ms_per_message": total / count * 1000,
            "mean_us_per_recipient": total / recipients * 1e6 if recipients else None}


async def bench_server(kind: str, db: str, w: Workload) -> dict[str, Any]:
    print(f"{kind} ({db}): starting", file=sys.stderr, flush=True)
    result: dict[str, Any] = {}
    try:
        with servers.start_server(kind, db) as server:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
                run = PushRun(Api(session, server.url), server.shared_secret, w)
                for phase in ("setup", "send_burst", "notified_latency"):
                    print(f"{kind}: {phase}", file=sys.stderr, flush=True)
                    try:
                        result[phase] = await getattr(run, phase)()
                    except Exception as error:  # one failed phase still reports the others
                        result[phase] = {"error": f"{type(error).__name__}: {error}"}
                        if phase == "setup":
                            break
            if kind == "ours":
                result["evaluation"] = our_evaluation_metrics(server)
            result["alive_at_end"] = server.alive()
    except Exception as error:
        result["error"] = f"{type(error).__name__}: {error}"
    return result




FIGURES = [
    ("send latency p50 (ms)", ("send_burst", "p50_ms"), "<= 0.5x"),
    ("send latency p95 (ms)", ("send_burst", "p95_ms"), ""),
    ("send latency p99 (ms)", ("send_burst", "p99_ms"), ""),
    ("all messages sent (s)", ("send_burst", "send_s"), ""),
    ("evaluation drained after last send (s)", ("send_burst", "drain_after_send_s"), ""),
    ("send -> notification listed p50 (ms)", ("notified_latency", "p50_ms"), ""),
    ("send -> notification listed p95 (ms)", ("notified_latency", "p95_ms"), ""),
    ("our evaluation per message (ms)", ("evaluation", "mean_ms_per_message"), ""),
    ("our evaluation per recipient (us)", ("evaluation", "mean_us_per_recipient"), ""),
    ("setup: joins (s)", ("setup", "join_s"), ""),
]


def render(results: dict[str, dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    return report.render(results, FIGURES)


async def bench(args: argparse.Namespace) -> int:
    w = QUICK if args.quick else Workload()
    if args.members or args.messages:
        w = Workload(args.members or w.members, args.messages or w.messages, w.probe_messages)
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    results = {kind: await bench_server(kind, args.db, w) for kind in kinds}
    table, rows = render(results)
    print(f"\npush benchmark, {args.db}, workload {asdict(w)}\n\n{table}")
    for kind, result in results.items():
        errors = [f"{phase}: {r['error']}" for phase, r in result.items() if isinstance(r, dict) and "error" in r]
        if "error" in result:
            errors.append(str(result["error"]))
        for error in errors:
            print(f"  {kind}: {error}")
    report.save_results("push", {"db": args.db, "workload": asdict(w), "figures": rows, "servers": results},
                        args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 members, 100 messages")
    parser.add_argument("--db", choices=servers.DB_KINDS, default="sqlite")
    parser.add_argument("--servers", default="ours,synapse", help="comma-separated, run in this order")
    parser.add_argument("--members", type=int, help=f"default {Workload.members}")
    parser.add_argument("--messages", type=int, help=f"default {Workload.messages}")
    parser.add_argument("--out", type=Path, help="results JSON (default bench/results/push-<time>.json)")
    args = parser.parse_args(argv)
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
