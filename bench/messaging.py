"""Messaging benchmark: our homeserver and Synapse, side by side, same seeded workload, one run.

    .venv/bin/python bench/messaging.py [--quick] [--db sqlite|postgres] [--servers ours,synapse]

For each server in turn (fresh database, rate limits off, loopback only):
  1. register users with the shared-secret admin API; create rooms, invite and join members
  2. send throughput: concurrent senders, messages per second
  3. send->sync delivery latency: receivers long-poll /sync while paced senders send; p50/p95/p99
  4. top the rooms up to the history size, then time an initial /sync of the user in every room
  5. time GET /rooms/{id}/messages?dir=b back through `page` events of the busiest room
  6. peak RSS of the server's process tree
Only the client-server API as the spec defines it is used, so a server that lacks an endpoint
gets "n/a" for the figures that need it instead of stopping the run. A table goes to stdout and
the full results to bench/results/messaging-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import hmac
import json
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parent))
import servers  # noqa: E402  (bench/ is a script directory, not a package)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CLIENT = "/_matrix/client/v3"
PHASE_TIMEOUT_SECONDS = 900.0
REQUEST_TIMEOUT_SECONDS = 120.0
SYNC_TIMEOUT_MS = 30_000
DELIVERY_GRACE_SECONDS = 20.0
SETUP_CONCURRENCY = 10


@dataclass(frozen=True)
class Workload:
    users: int = 50
    rooms: int = 10
    min_members: int = 10
    max_members: int = 50
    senders: int = 20
    messages: int = 2000
    latency_senders: int = 5
    latency_receivers: int = 3
    latency_messages: int = 200
    latency_interval: float = 0.05
    history: int = 5000
    page: int = 1000
    repeats: int = 3
    room_version: str = "10"
    seed: int = 1


QUICK = dataclasses.replace(
    Workload(), users=20, rooms=5, min_members=5, max_members=20, senders=10, messages=300,
    latency_messages=50, history=600, page=300,
)


# --- the plan: pure, seeded, identical for both servers -------------------------------------------


@dataclass(frozen=True)
class RoomPlan:
    creator: int
    members: tuple[int, ...]  # user indices, creator included


def plan_rooms(w: Workload) -> list[RoomPlan]:
    """Room 0 holds every user (so all can send, and it is the busy room); user 0 is in every
    room (the initial-sync subject); the others get a seeded size in [min_members, max_members]."""
    rng = random.Random(w.seed)
    everyone = tuple(range(w.users))
    plans = [RoomPlan(0, everyone)]
    top = min(w.max_members, w.users)
    for _ in range(1, w.rooms):
        size = rng.randint(min(w.min_members, top), top)
        members = (0, *sorted(rng.sample(everyone[1:], size - 1)))
        plans.append(RoomPlan(rng.choice(members), members))
    return plans


def rooms_of_users(plans: list[RoomPlan], users: int) -> list[list[int]]:
    rooms: list[list[int]] = [[] for _ in range(users)]
    for index, plan in enumerate(plans):
        for member in plan.members:
            rooms[member].append(index)
    return rooms


def send_schedule(senders: list[int], user_rooms: list[list[int]], total: int) -> list[list[int]]:
    """Split ``total`` messages over ``senders`` as evenly as possible; each sender goes round its
    own rooms, starting at a different room so that the senders do not all pile into room 0."""
    schedule = []
    for position, sender in enumerate(senders):
        count = total // len(senders) + (1 if position < total % len(senders) else 0)
        rooms = user_rooms[sender]
        schedule.append([rooms[(position + i) % len(rooms)] for i in range(count)])
    return schedule


def fill_schedule(
    senders: list[int], user_rooms: list[list[int]], total: int, busy_room: int, busy_deficit: int
) -> list[list[int]]:
    """Top-up sends: first ``busy_deficit`` into ``busy_room`` so that /messages has a full page,
    then the rest of ``total`` spread as in `send_schedule`."""
    busy_deficit = min(max(busy_deficit, 0), max(total, 0))
    first = send_schedule(senders, [[busy_room]] * len(user_rooms), busy_deficit) if busy_deficit else None
    rest = send_schedule(senders, user_rooms, max(total - busy_deficit, 0))
    return [(first[i] if first else []) + rest[i] for i in range(len(senders))]


def percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = (len(ordered) - 1) * fraction
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def shared_secret_mac(secret: str, nonce: str, username: str, password: str) -> str:
    """HMAC-SHA1 over NUL-joined nonce, username, password and 'notadmin' (Synapse's admin API)."""
    message = "\x00".join([nonce, username, password, "notadmin"]).encode()
    return hmac.new(secret.encode(), message, hashlib.sha1).hexdigest()


# --- HTTP -----------------------------------------------------------------------------------------


class HttpError(Exception):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path.split('?')[0]} -> {status} {body[:200]}")
        self.status = status


@dataclass
class User:
    index: int
    localpart: str
    user_id: str
    token: str
    password: str


class Api:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def timed(
        self, method: str, path: str, *, token: str | None = None, body: Any = None,
        params: dict[str, str] | None = None, timeout: float = REQUEST_TIMEOUT_SECONDS,
    ) -> tuple[float, Any]:
        """Seconds from sending the request until its body is fully read, and the parsed body."""
        url = URL(self.base_url + path, encoded=True)
        if params:
            url = url.update_query(params)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        started = time.perf_counter()
        async with self.session.request(method, url, json=body, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            raw = await response.read()
            elapsed = time.perf_counter() - started
            if response.status >= 300:
                raise HttpError(method, path, response.status, raw.decode(errors="replace"))
        return elapsed, json.loads(raw) if raw else {}

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.timed(method, path, **kwargs))[1]


def q(segment: str) -> str:
    return quote(segment, safe="")


async def bounded(limit: int, jobs: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs))


# --- phases ---------------------------------------------------------------------------------------


class Run:
    """One server's run: the API, the plan, and what earlier phases produced."""

    def __init__(self, api: Api, shared_secret: str, w: Workload) -> None:
        self.api = api
        self.secret = shared_secret
        self.w = w
        self.plans = plan_rooms(w)
        self.user_rooms = rooms_of_users(self.plans, w.users)
        self.users: list[User] = []
        self.room_ids: list[str] = []
        self.sent_per_room = [0] * w.rooms
        self.run_tag = f"{w.seed}-{int(time.time())}"

    async def register_one(self, index: int) -> User:
        localpart = f"bench{index:03d}"
        password = f"pw-{self.run_tag}-{index}"
        nonce = (await self.api.call("GET", "/_synapse/admin/v1/register"))["nonce"]
        body = {"nonce": nonce, "username": localpart, "password": password, "admin": False,
                "mac": shared_secret_mac(self.secret, nonce, localpart, password)}
        reply = await self.api.call("POST", "/_synapse/admin/v1/register", body=body)
        return User(index, localpart, reply["user_id"], reply["access_token"], password)

    async def register(self) -> dict[str, Any]:
        started = time.perf_counter()
        jobs = [lambda i=i: self.register_one(i) for i in range(self.w.users)]
        self.users = await bounded(SETUP_CONCURRENCY, jobs)
        return {"seconds": time.perf_counter() - started, "users": len(self.users)}

    async def make_rooms(self) -> dict[str, Any]:
        started = time.perf_counter()

        async def create(plan: RoomPlan) -> str:
            creator = self.users[plan.creator]
            invites = [self.users[m].user_id for m in plan.members if m != plan.creator]
            body = {"preset": "private_chat", "room_version": self.w.room_version, "invite": invites}
            room_id = (await self.api.call("POST", f"{CLIENT}/createRoom", token=creator.token,
                                           body=body))["room_id"]
            return room_id

        self.room_ids = await bounded(SETUP_CONCURRENCY, [lambda p=p: create(p) for p in self.plans])
        joins = [
            lambda m=m, r=r: self.api.call("POST", f"{CLIENT}/rooms/{q(self.room_ids[r])}/join",
                                           token=self.users[m].token, body={})
            for r, plan in enumerate(self.plans) for m in plan.members if m != plan.creator
        ]
        await bounded(SETUP_CONCURRENCY, joins)
        return {"seconds": time.perf_counter() - started, "rooms": len(self.room_ids),
                "joins": len(joins), "members": [len(p.members) for p in self.plans]}

    async def send(self, user: User, room: int, body: str, txn: str) -> None:
        path = f"{CLIENT}/rooms/{q(self.room_ids[room])}/send/m.room.message/{q(txn)}"
        await self.api.call("PUT", path, token=user.token, body={"msgtype": "m.text", "body": body})
        self.sent_per_room[room] += 1

    async def send_all(self, phase: str, senders: list[int], schedule: list[list[int]]) -> dict[str, Any]:
        """Every sender sends its rooms' messages one after another, all senders at once."""

        async def sender(position: int) -> None:
            user = self.users[senders[position]]
            for i, room in enumerate(schedule[position]):
                await self.send(user, room, f"{phase} {position}/{i}", f"{phase}-{self.run_tag}-{i}")

        started = time.perf_counter()
        await asyncio.gather(*(sender(p) for p in range(len(senders))))
        elapsed = time.perf_counter() - started
        total = sum(len(s) for s in schedule)
        return {"messages": total, "seconds": elapsed, "per_second": total / elapsed if elapsed else None}

    def throughput_senders(self) -> list[int]:
        return list(range(min(self.w.senders, self.w.users)))

    async def throughput(self) -> dict[str, Any]:
        senders = self.throughput_senders()
        return await self.send_all("tput", senders, send_schedule(senders, self.user_rooms, self.w.messages))

    async def latency(self, phase: str = "lat") -> dict[str, Any]:
        w = self.w
        receivers = [self.users[i] for i in range(min(w.latency_receivers, w.users))]
        senders = list(range(w.users - 1, w.users - 1 - w.latency_senders, -1))
        if not senders or senders[-1] < len(receivers):
            raise ValueError("not enough users for distinct latency senders and receivers")
        schedule = send_schedule(senders, self.user_rooms, w.latency_messages)
        started_at: dict[str, float] = {}
        expected = {
            (f"{phase}-{p}-{i}", r.index)
            for p, rooms in enumerate(schedule) for i, room in enumerate(rooms)
            for r in receivers if room in self.user_rooms[r.index]
        }
        delivered: dict[tuple[str, int], float] = {}
        complete = asyncio.Event()
        stats = {"limited_timelines": 0, "sync_errors": 0}
        sync_filter = json.dumps({"room": {"timeline": {"limit": 200}}})

        async def first_since(user: User) -> str:
            limit_one = json.dumps({"room": {"timeline": {"limit": 1}}})
            return (await self.api.call("GET", f"{CLIENT}/sync", token=user.token,
                                        params={"filter": limit_one}))["next_batch"]

        async def receive(user: User, since: str) -> None:
            errors = 0
            while errors < 5:
                try:
                    reply = await self.api.call(
                        "GET", f"{CLIENT}/sync", token=user.token,
                        params={"since": since, "timeout": str(SYNC_TIMEOUT_MS), "filter": sync_filter},
                        timeout=SYNC_TIMEOUT_MS / 1000 + 30)
                except (HttpError, aiohttp.ClientError, TimeoutError):
                    errors += 1
                    stats["sync_errors"] += 1
                    await asyncio.sleep(0.5)
                    continue
                now = time.perf_counter()
                since = reply["next_batch"]
                for room in reply.get("rooms", {}).get("join", {}).values():
                    timeline = room.get("timeline", {})
                    stats["limited_timelines"] += bool(timeline.get("limited"))
                    for event in timeline.get("events", []):
                        tag = event.get("content", {}).get("body", "")
                        if tag in started_at and (tag, user.index) not in delivered:
                            delivered[(tag, user.index)] = now - started_at[tag]
                if len(delivered) >= len(expected):
                    complete.set()
            raise RuntimeError(f"{user.user_id}'s /sync failed 5 times")

        async def sender(position: int) -> None:
            user = self.users[senders[position]]
            for i, room in enumerate(schedule[position]):
                tag = f"{phase}-{position}-{i}"
                started_at[tag] = time.perf_counter()
                await self.send(user, room, tag, f"{phase}-{self.run_tag}-{i}")
                await asyncio.sleep(w.latency_interval)

        tokens = await asyncio.gather(*(first_since(r) for r in receivers))
        receiving = [asyncio.create_task(receive(r, t)) for r, t in zip(receivers, tokens, strict=True)]
        try:
            await asyncio.sleep(0.5)  # let every receiver get into its long poll first
            await asyncio.gather(*(sender(p) for p in range(len(senders))))
            waiter = asyncio.create_task(complete.wait())
            await asyncio.wait([waiter, *receiving], timeout=DELIVERY_GRACE_SECONDS,
                               return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            for task in receiving:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in receiving:
                task.cancel()
            await asyncio.gather(*receiving, return_exceptions=True)
        latencies_ms = [delivered[key] * 1000 for key in sorted(delivered)]
        if not latencies_ms:
            raise RuntimeError("no message reached any receiver's /sync")
        return {
            "messages": sum(len(s) for s in schedule), "expected_deliveries": len(expected),
            "deliveries": len(latencies_ms), "missed": len(expected) - len(delivered),
            "p50_ms": percentile(latencies_ms, 0.50), "p95_ms": percentile(latencies_ms, 0.95),
            "p99_ms": percentile(latencies_ms, 0.99), "max_ms": max(latencies_ms), **stats,
        }

    async def latency_under_load(self) -> dict[str, Any]:
        """The same delivery measurement while the throughput senders keep every room busy."""
        senders = self.throughput_senders()
        load = asyncio.create_task(self.send_all("load", senders,
                                                 send_schedule(senders, self.user_rooms, self.w.messages)))
        try:
            await asyncio.sleep(0.5)  # the load is running before the first measured message
            measured = await self.latency("loadlat")
        finally:
            loaded = await load
        return {**measured, "load_messages_per_second": loaded["per_second"]}

    async def fill_history(self) -> dict[str, Any]:
        senders = self.throughput_senders()
        missing = self.w.history - sum(self.sent_per_room)
        busy_deficit = self.w.page - self.sent_per_room[0]
        schedule = fill_schedule(senders, self.user_rooms, missing, 0, busy_deficit)
        result = await self.send_all("fill", senders, schedule)
        return {**result, "total_messages": sum(self.sent_per_room), "per_room": list(self.sent_per_room)}

    async def initial_sync(self) -> dict[str, Any]:
        """User 0 is in every room. Each repetition logs in a new device, as a new client would,
        which also keeps servers from answering from a per-device response cache."""
        user = self.users[0]
        timings, notes = [], []
        rooms_seen = size = timeline_events = state_events = 0
        for attempt in range(self.w.repeats):
            token = user.token
            try:
                login = {"type": "m.login.password", "password": user.password,
                         "identifier": {"type": "m.id.user", "user": user.localpart},
                         "initial_device_display_name": f"bench initial sync {attempt}"}
                token = (await self.api.call("POST", f"{CLIENT}/login", body=login))["access_token"]
            except HttpError as error:
                notes.append(f"login failed, reused the registration token: {error}")
            elapsed, reply = await self.api.timed("GET", f"{CLIENT}/sync", token=token)
            timings.append(elapsed * 1000)
            joined = reply.get("rooms", {}).get("join", {})
            rooms_seen, size = len(joined), len(json.dumps(reply))
            # Servers pick their own default timeline limit; these show how much each one sent.
            timeline_events = sum(len(r.get("timeline", {}).get("events", [])) for r in joined.values())
            state_events = sum(len(r.get("state", {}).get("events", [])) for r in joined.values())
        if rooms_seen != len(self.room_ids):
            notes.append(f"initial sync listed {rooms_seen} joined rooms, expected {len(self.room_ids)}")
        return {"median_ms": statistics.median(timings), "runs_ms": timings, "joined_rooms": rooms_seen,
                "timeline_events": timeline_events, "state_events": state_events, "response_bytes": size, "notes": notes}

    async def messages(self) -> dict[str, Any]:
        """Back from the end of room 0 until `page` events (or the room's start), in pages of at most
        `page`; servers may cap the limit (Synapse caps at 1000), hence the loop."""
        user, room_id = self.users[0], self.room_ids[0]
        timings, counts = [], []
        for _ in range(self.w.repeats):
            collected, requests, elapsed_total = 0, 0, 0.0
            params = {"dir": "b", "limit": str(self.w.page)}
            while collected < self.w.page and requests < 100:
                elapsed, reply = await self.api.timed(
                    "GET", f"{CLIENT}/rooms/{q(room_id)}/messages", token=user.token, params=params)
                elapsed_total += elapsed
                requests += 1
                chunk = reply.get("chunk", [])
                collected += len(chunk)
                if not chunk or not reply.get("end"):
                    break
                params = {**params, "from": reply["end"], "limit": str(self.w.page - collected)}
            timings.append(elapsed_total * 1000)
            counts.append(collected)
        return {"median_ms": statistics.median(timings), "runs_ms": timings, "events": counts[-1],
                "requests_last_run": requests}


ERRORS = (HttpError, aiohttp.ClientError, TimeoutError, KeyError, ValueError, RuntimeError)


PHASES = ("register", "rooms", "throughput", "latency", "latency_under_load", "history", "initial_sync", "messages")
PHASE_NEEDS = {"rooms": ("register",), "throughput": ("rooms",), "latency": ("rooms",),
               "latency_under_load": ("rooms",), "history": ("rooms",), "initial_sync": ("history",),
               "messages": ("history",)}


def with_prerequisites(selected: set[str]) -> set[str]:
    """The selected phases and every phase they need, transitively."""
    chosen, pending = set(), list(selected)
    while pending:
        name = pending.pop()
        if name not in chosen:
            chosen.add(name)
            pending.extend(PHASE_NEEDS.get(name, ()))
    return chosen


async def run_phases(run: Run, only: set[str] | None = None) -> dict[str, Any]:
    """Each phase's result or its error; a phase whose prerequisites failed is skipped.

    `only` runs just those phases (and what they need); the others are left out of the result.
    """
    phases: dict[str, Any] = {}
    chosen = with_prerequisites(only) if only is not None else set(PHASES)
    order: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]], tuple[str, ...]]] = [
        ("register", run.register, ()),
        ("rooms", run.make_rooms, ("register",)),
        ("throughput", run.throughput, ("rooms",)),
        ("latency", run.latency, ("rooms",)),
        ("latency_under_load", run.latency_under_load, ("rooms",)),
        ("history", run.fill_history, ("rooms",)),
        ("initial_sync", run.initial_sync, ("history",)),
        ("messages", run.messages, ("history",)),
    ]
    for name, phase, needs in order:
        if name not in chosen:
            continue
        failed = [n for n in needs if "error" in phases[n] or "skipped" in phases[n]]
        if failed:
            phases[name] = {"skipped": f"needs {', '.join(failed)}"}
            continue
        print(f"  {name} ...", file=sys.stderr, flush=True)
        try:
            phases[name] = await asyncio.wait_for(phase(), PHASE_TIMEOUT_SECONDS)
        except ERRORS as error:
            phases[name] = {"error": f"{type(error).__name__}: {error}"}
            print(f"  {name} failed: {phases[name]['error']}", file=sys.stderr, flush=True)
    return phases


async def bench_server(
    kind: str, db: str, w: Workload, keep_workdir: bool, profile: Path | None = None,
    only: set[str] | None = None,
) -> dict[str, Any]:
    print(f"{kind} ({db}): starting", file=sys.stderr, flush=True)
    try:
        context = servers.start_server(kind, db, keep_workdir=keep_workdir, profile=profile)
        server = context.__enter__()
    except Exception as error:  # a server that cannot start still gets a row of n/a
        return {"error": f"start failed: {type(error).__name__}: {error}", "phases": {}}
    rss = servers.PeakRss(server.pid)

    async def sample_memory() -> None:
        while True:
            rss.sample()
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample_memory())
    try:
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=connector) as session:
            phases = await run_phases(Run(Api(session, server.url), server.shared_secret, w), only)
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


# --- report ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    better: str  # "higher" or "lower"
    goal: float | None  # the ratio ours/Synapse the issue asks for
    path: tuple[str, ...]
    whole_run: bool = False  # only comparable when both servers completed every phase


def figures_for(w: Workload) -> list[Figure]:
    return [
        Figure("throughput", f"send throughput, {w.senders} senders (msg/s)", "higher", 3.0,
               ("phases", "throughput", "per_second")),
        Figure("latency_p50", "send->sync latency, idle, p50 (ms)", "lower", 0.3, ("phases", "latency", "p50_ms")),
        Figure("latency_p95", "send->sync latency p95 (ms)", "lower", None, ("phases", "latency", "p95_ms")),
        Figure("latency_p99", "send->sync latency p99 (ms)", "lower", None, ("phases", "latency", "p99_ms")),
        Figure("load_latency_p50", "send->sync latency, under load, p50 (ms)", "lower", 0.5,
               ("phases", "latency_under_load", "p50_ms")),
        Figure("load_latency_p99", "send->sync latency, under load, p99 (ms)", "lower", None,
               ("phases", "latency_under_load", "p99_ms")),
        Figure("initial_sync", f"initial /sync, {w.rooms} rooms, {w.history} msgs (ms)", "lower", 0.2,
               ("phases", "initial_sync", "median_ms")),
        Figure("messages", f"/messages back {w.page} events (ms)", "lower", 0.2,
               ("phases", "messages", "median_ms")),
        Figure("peak_rss", "peak RSS of server process tree (MiB)", "lower", 0.35, ("peak_rss_mib",),
               whole_run=True),
        Figure("register", f"register {w.users} users (s)", "lower", None, ("phases", "register", "seconds")),
        Figure("rooms", f"create {w.rooms} rooms + invites/joins (s)", "lower", None,
               ("phases", "rooms", "seconds")),
    ]


def dig(result: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = result
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


def completed(result: dict[str, Any]) -> bool:
    phases = result.get("phases", {})
    return "error" not in result and bool(phases) and not any(
        "error" in phase or "skipped" in phase for phase in phases.values())


def compare(figure: Figure, ours: float | None, synapse: float | None, comparable: bool = True) -> dict[str, Any]:
    """One table row; ``comparable`` is False for a whole-run figure when a run stopped short."""
    ratio = ours / synapse if ours is not None and synapse and comparable else None
    met = None
    if ratio is not None and figure.goal is not None:
        met = ratio >= figure.goal if figure.better == "higher" else ratio <= figure.goal
    return {"label": figure.label, "better": figure.better, "ours": ours, "synapse": synapse,
            "ratio": ratio, "goal": figure.goal, "goal_met": met}


def render_table(rows: list[dict[str, Any]]) -> str:
    def number(value: float | None) -> str:
        if value is None:
            return "n/a"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"

    header = f"{'figure':<46} {'ours':>10} {'synapse':>10} {'ours/syn':>9}  {'better':<7} goal"
    lines = [header, "-" * len(header)]
    for row in rows:
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        goal = ""
        if row["goal"] is not None:
            sign = ">=" if row["better"] == "higher" else "<="
            verdict = {True: "met", False: "MISSED", None: "?"}[row["goal_met"]]
            goal = f"{sign} {row['goal']:g}x {verdict}"
        lines.append(f"{row['label']:<46} {number(row['ours']):>10} {number(row['synapse']):>10} "
                     f"{ratio:>9}  {row['better']:<7} {goal}")
    return "\n".join(lines)


def failures(results: dict[str, dict[str, Any]]) -> list[str]:
    notes = []
    for kind, result in results.items():
        if "error" in result:
            notes.append(f"{kind}: {result['error']}")
        for name, phase in result.get("phases", {}).items():
            for key in ("error", "skipped"):
                if key in phase:
                    notes.append(f"{kind} {name} {key}: {phase[key]}")
            for note in phase.get("notes", []):
                notes.append(f"{kind} {name}: {note}")
            if phase.get("missed"):
                notes.append(f"{kind} {name}: {phase['missed']} of {phase['expected_deliveries']} "
                             "deliveries never seen")
    return notes


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small workload, for a smoke run")
    parser.add_argument("--db", choices=servers.DB_KINDS, default="sqlite")
    parser.add_argument("--servers", default="ours,synapse", help="comma-separated, run in this order")
    parser.add_argument("--out", type=Path, help="results JSON (default bench/results/messaging-<time>.json)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep each server's data dir and log")
    parser.add_argument("--profile-ours", type=Path, metavar="FILE",
                        help="run our server under cProfile, stats to FILE (slows it: not for figures)")
    parser.add_argument("--phases", help="comma-separated phases to run (with the ones they need), e.g."
                        f" messages,initial_sync; default all of {','.join(PHASES)}")
    for field in dataclasses.fields(Workload):
        flag = "--" + field.name.replace("_", "-")
        kind = {"int": int, "float": float, "str": str}[str(field.type)]
        parser.add_argument(flag, type=kind, help=f"default {field.default} (quick: {getattr(QUICK, field.name)})")
    return parser.parse_args(argv)


def workload_from(args: argparse.Namespace) -> Workload:
    base = QUICK if args.quick else Workload()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Workload)
                 if getattr(args, f.name) is not None}
    return dataclasses.replace(base, **overrides)


async def bench(args: argparse.Namespace) -> int:
    w = workload_from(args)
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in servers.SERVER_KINDS]
    if unknown:
        print(f"unknown server(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    only = None
    if args.phases:
        only = {p.strip() for p in args.phases.split(",") if p.strip()}
        if only - set(PHASES):
            print(f"unknown phase(s): {', '.join(sorted(only - set(PHASES)))}", file=sys.stderr)
            return 2
    results = {
        kind: await bench_server(kind, args.db, w, args.keep_workdir,
                                 args.profile_ours if kind == "ours" else None, only)
        for kind in kinds
    }
    ours, synapse = results.get("ours", {}), results.get("synapse", {})
    both_complete = completed(ours) and completed(synapse)
    rows = [compare(f, dig(ours, f.path), dig(synapse, f.path), both_complete or not f.whole_run)
            for f in figures_for(w)]
    print(f"\nmessaging benchmark, {args.db}, workload {dataclasses.asdict(w)}\n")
    print(render_table(rows))
    notes = failures(results)
    if not both_complete and len(results) > 1:
        notes.append("peak RSS not compared: a run stopped short, so the two did different work")
    if notes:
        print("\nnotes:\n  " + "\n  ".join(notes))
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / ".gitignore").write_text("*\n")  # results are per machine; never committed
    out = args.out or RESULTS_DIR / f"messaging-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps({"db": args.db, "workload": dataclasses.asdict(w), "figures": rows,
                               "servers": results}, indent=2))
    print(f"\nresults: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
