"""Federation benchmark: our server and a second Synapse join the same big room that lives on a
resident Synapse, in one run; then message latency across each pair.

    .venv/bin/python bench/federation_bench.py               # a 2,000-member room
    .venv/bin/python bench/federation_bench.py --quick       # 100 members, a smoke run (CI)
    .venv/bin/python bench/federation_bench.py --members 500 --latency-messages 50

Three servers on loopback, all over TLS with certificates from a throwaway CA that each trusts
(as tests/federation does): the resident Synapse on 127.0.0.2, the joining Synapse on 127.0.0.3,
our server on 127.0.0.1. The resident's room gets `--members` users (registered with the shared
secret, then joined, concurrently) and a little history. Then, one joiner after the other
(`--order`, ours first by default, so that ours pays for any cache the resident warms):

* join: `POST /join/{roomId}?server_name=<resident>` from the joiner's client until it answers.
* first usable /sync: from the start of the join until the joiner's `/sync` long poll (lazy-loaded
  members, as clients do; Synapse lists rooms it joined with partial state only to such filters)
  first shows the room among its joined rooms (federation part 2's goal: <= 0.3x Synapse's
  faster join; both joiners join with partial state, Synapse since 1.7x by default).
* first message: from the start of the join until a message that a resident member sends as soon
  as the join has answered shows in the joiner's `/sync` long poll.

Then, per pair (resident <-> ours, resident <-> joining Synapse), both directions, each paced
message timed from the start of its send until it shows in the other side's `/sync` long poll:

* message latency: `m.room.message`;
* encrypted latency: what end-to-end encryption puts on the servers, `m.room.encrypted` room events
  (Megolm-shaped, opaque ciphertext) and `m.room.encrypted` to-device messages (Olm-shaped, as room
  keys travel) to the other side's user's device. No client crypto is timed: the servers never see
  plaintext, so their share of the latency is this.

Figures are ours over Synapse; the goals are join and first message <= 0.5x, first usable /sync
<= 0.3x.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import hmac
import json
import secrets
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402
import servers  # noqa: E402

ROOT = servers.ROOT
sys.path.insert(0, str(ROOT))
from tests.support.synapse_federation import start_federating_synapse  # noqa: E402
from tests.support.tls_ca import TestCA  # noqa: E402

PASSWORD = "bench password"
SYNC_FILTER = json.dumps({
    "room": {"state": {"lazy_load_members": True},
             "timeline": {"limit": 50, "types": ["m.room.message", "m.room.encrypted"]},
             "ephemeral": {"types": []}, "account_data": {"types": []}},
    "presence": {"types": []}, "account_data": {"types": []},
})


@dataclass(frozen=True)
class Workload:
    members: int = 2000
    history: int = 20  # messages in the room before anyone joins
    latency_messages: int = 30  # per direction and pair
    latency_interval: float = 0.2  # seconds between paced sends
    concurrency: int = 20  # concurrent registrations and joins while building the room
    join_timeout: float = 600.0
    delivery_timeout: float = 30.0  # how long a latency phase waits for its last messages


QUICK = Workload(members=100, history=5, latency_messages=8, latency_interval=0.1, delivery_timeout=10.0)


# --- HTTP -----------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str  # "resident", "ours" or "synapse"
    server_name: str
    url: str
    shared_secret: str
    stop: Any
    log_tail: Any


@dataclass
class User:
    user_id: str
    token: str
    server: Server
    device_id: str = ""


class Client:
    def __init__(self, session: aiohttp.ClientSession):
        self.session = session

    async def call(self, server: Server, method: str, path: str, token: str | None = None, body: Any = None,
                   params: dict[str, str] | None = None, timeout: float = 120.0) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(method, server.url + path, json=body, params=params, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            try:
                answer = await resp.json(content_type=None)
            except (ValueError, aiohttp.ContentTypeError):
                answer = await resp.text()
            return resp.status, answer

    async def ok(self, server: Server, method: str, path: str, token: str | None = None, body: Any = None,
                 params: dict[str, str] | None = None, timeout: float = 120.0) -> Any:
        status, answer = await self.call(server, method, path, token, body, params, timeout)
        if status != 200:
            raise RuntimeError(f"{server.name}: {method} {path} -> {status} {answer}\n{server.log_tail()}")
        return answer

    async def register(self, server: Server, localpart: str) -> User:
        """A user made with the shared-secret admin registration API (both servers serve it)."""
        nonce = (await self.ok(server, "GET", "/_synapse/admin/v1/register"))["nonce"]
        mac = hmac.new(server.shared_secret.encode(), b"\x00".join(
            [nonce.encode(), localpart.encode(), PASSWORD.encode(), b"notadmin"]), hashlib.sha1).hexdigest()
        answer = await self.ok(server, "POST", "/_synapse/admin/v1/register", body={
            "nonce": nonce, "username": localpart, "password": PASSWORD, "admin": False, "mac": mac})
        return User(answer["user_id"], answer["access_token"], server, answer.get("device_id", ""))

    async def send(self, user: User, room_id: str, body: str) -> str:
        answer = await self.ok(user.server, "PUT", f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/"
                               f"m.room.message/{secrets.token_hex(8)}", user.token, {"msgtype": "m.text", "body": body})
        return answer["event_id"]

    async def send_encrypted(self, user: User, room_id: str, marker: str) -> str:
        """A Megolm-shaped `m.room.encrypted` event whose ciphertext is `marker`."""
        content = {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": marker, "sender_key": "bench-sender-key",
                   "session_id": "bench-session", "device_id": user.device_id or "BENCH"}
        answer = await self.ok(user.server, "PUT", f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/"
                               f"m.room.encrypted/{secrets.token_hex(8)}", user.token, content)
        return answer["event_id"]

    async def send_to_device(self, user: User, to: User, marker: str) -> None:
        """An Olm-shaped `m.room.encrypted` to-device message (as a room key travels) to `to`'s device."""
        content = {"algorithm": "m.olm.v1.curve25519-aes-sha2", "sender_key": "bench-sender-key",
                   "ciphertext": {"bench-recipient-key": {"type": 0, "body": marker}}}
        await self.ok(user.server, "PUT", f"/_matrix/client/v3/sendToDevice/m.room.encrypted/{secrets.token_hex(8)}",
                      user.token, {"messages": {to.user_id: {to.device_id: content}}})


class SyncWatcher:
    """Long-polls `/sync` for one user and notes when each message body first shows in a room."""

    def __init__(self, client: Client, user: User, room_id: str):
        self.client, self.user, self.room_id = client, user, room_id
        self.arrivals: dict[str, float] = {}
        self.room_seen: float | None = None  # when the room first showed among the joined rooms
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.errors = 0

    async def start(self) -> None:
        answer = await self.client.ok(self.user.server, "GET", "/_matrix/client/v3/sync", self.user.token,
                                      params={"filter": SYNC_FILTER, "timeout": "0"})
        self._note(answer)
        self._task = asyncio.create_task(self._loop(answer["next_batch"]))

    async def _loop(self, since: str) -> None:
        while True:
            try:
                status, answer = await self.client.call(
                    self.user.server, "GET", "/_matrix/client/v3/sync", self.user.token,
                    params={"filter": SYNC_FILTER, "timeout": "30000", "since": since}, timeout=90)
            except (TimeoutError, aiohttp.ClientError):
                status, answer = 0, None
            if status != 200:
                self.errors += 1
                await asyncio.sleep(0.2)
                continue
            self._note(answer)
            since = answer["next_batch"]

    def _note(self, answer: dict[str, Any]) -> None:
        now = time.monotonic()
        for event in answer.get("to_device", {}).get("events", []):
            for part in (event.get("content", {}).get("ciphertext") or {}).values():
                if isinstance(part, dict) and isinstance(part.get("body"), str):
                    self.arrivals.setdefault(part["body"], now)
        room = answer.get("rooms", {}).get("join", {}).get(self.room_id)
        if room is not None and self.room_seen is None:
            self.room_seen = now
        for event in (room or {}).get("timeline", {}).get("events", []):
            content = event.get("content", {})
            body = content.get("body") if event.get("type") == "m.room.message" else content.get("ciphertext")
            if isinstance(body, str):
                self.arrivals.setdefault(body, now)
        asyncio.get_running_loop().create_task(self._notify())

    async def wait_for_room(self, timeout: float) -> float:
        """When the room first showed among the joined rooms (monotonic seconds)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.room_seen is not None), timeout)
        assert self.room_seen is not None
        return self.room_seen

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def arrival(self, body: str, timeout: float) -> float:
        """When `body` first showed (monotonic seconds); TimeoutError when it did not in time."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: body in self.arrivals), timeout)
        return self.arrivals[body]

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


# --- servers --------------------------------------------------------------------------------------


def start_ours_tls(workdir: Path, ca: TestCA, profile: Path | None = None
                   ) -> tuple[Server, subprocess.Popen[bytes]]:
    """Our server named 127.0.0.1:PORT on a TLS listener from the CA, trusting that CA outbound
    and allowed to reach loopback (the config tests/federation/helpers.py gives in-process); with
    ``profile``, under cProfile (written there when the server exits on SIGTERM)."""
    port = servers.run_synapse.free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "homeserver", "generate-config", "--server-name", f"127.0.0.1:{port}",
                    "--data-dir", str(workdir), "--generate-keys"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    config_path = workdir / "homeserver.yaml"
    config = yaml.safe_load(config_path.read_text())
    cert = ca.issue("127.0.0.1")
    config["listeners"] = [{"host": "127.0.0.1", "port": port, "resources": ["client", "federation", "admin"],
                            "tls": {"certificate_path": cert.certificate_path,
                                    "private_key_path": cert.private_key_path}}]
    config.setdefault("registration", {})["enabled"] = True
    config.setdefault("rate_limits", {})["enabled"] = False
    config.setdefault("passwords", {})["bcrypt_rounds"] = servers.BCRYPT_ROUNDS
    config.setdefault("federation", {}).update({"ca_bundle_path": ca.ca_path, "allow_loopback": True})
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / "server.log"
    with log_path.open("ab") as log:
        profiler = ["-m", "cProfile", "-o", str(profile.resolve())] if profile else []
        process = subprocess.Popen([sys.executable, *profiler, "-m", "homeserver", "run", "--config", str(config_path)],
                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"https://127.0.0.1:{port}"

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_tail(chars: int = 3000) -> str:
        return log_path.read_text(errors="replace")[-chars:] if log_path.exists() else ""

    context = ssl.create_default_context(cafile=ca.ca_path)
    deadline = time.monotonic() + servers.STARTUP_TIMEOUT_SECONDS
    import urllib.request
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            stop()
            raise RuntimeError(f"our server did not start:\n{log_tail()}")
        try:
            with urllib.request.urlopen(f"{url}/_matrix/client/versions", timeout=2, context=context) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.1)
    secret = config["registration"]["shared_secret"]
    return Server("ours", f"127.0.0.1:{port}", url, secret, stop, log_tail), process


def start_synapse_tls(workdir: Path, ca: TestCA, name: str, host: str) -> Server:
    synapse = start_federating_synapse(workdir, ca, host, overrides={"bcrypt_rounds": servers.BCRYPT_ROUNDS})
    return Server(name, synapse.server_name, synapse.url, synapse.shared_secret, synapse.stop, synapse.log_tail)


# --- phases ---------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"count": len(ms), "p50_ms": percentile(ms, 0.5), "p95_ms": percentile(ms, 0.95),
            "max_ms": max(ms), "mean_ms": statistics.fmean(ms)}


async def gather_limited(limit: int, coroutines: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(coroutine: Any) -> Any:
        async with gate:
            return await coroutine

    return await asyncio.gather(*(one(c) for c in coroutines))


async def build_room(client: Client, resident: Server, w: Workload) -> tuple[str, list[User], dict[str, float]]:
    """A public room on the resident with `w.members` joined users and `w.history` messages."""
    started = time.monotonic()
    users = await gather_limited(w.concurrency, [client.register(resident, f"member{i:05d}")
                                                 for i in range(w.members)])
    registered = time.monotonic()
    room_id = (await client.ok(resident, "POST", "/_matrix/client/v3/createRoom", users[0].token,
                               {"preset": "public_chat", "name": f"Big room ({w.members})"}))["room_id"]
    path = f"/_matrix/client/v3/join/{quote(room_id, safe='')}"
    await gather_limited(w.concurrency, [client.ok(resident, "POST", path, u.token, {}) for u in users[1:]])
    joined = time.monotonic()
    for i in range(w.history):
        await client.send(users[i % len(users)], room_id, f"history {i}")
    return room_id, users, {"register_s": registered - started, "join_s": joined - registered,
                            "members_per_s": (w.members - 1) / max(joined - registered, 1e-9)}


async def join_and_first_message(client: Client, resident: Server, joiner: User, sender: User, room_id: str,
                                 w: Workload) -> dict[str, float]:
    watcher = SyncWatcher(client, joiner, room_id)
    await watcher.start()
    try:
        started = time.monotonic()
        await client.ok(joiner.server, "POST", f"/_matrix/client/v3/join/{quote(room_id, safe='')}", joiner.token,
                        {}, params={"server_name": resident.server_name}, timeout=w.join_timeout)
        joined = time.monotonic()
        body = f"welcome {joiner.user_id} {secrets.token_hex(4)}"
        await client.send(sender, room_id, body)
        sent = time.monotonic()
        arrived = await watcher.arrival(body, w.join_timeout)
        usable = await watcher.wait_for_room(w.join_timeout)
        # The member list answers once the joiner holds the room's full state (both servers make
        # /members wait during a partial-state join). Waiting here keeps one joiner's state fetch
        # (thousands of events asked of the resident) out of the next joiner's and the latency figures.
        await client.ok(joiner.server, "GET", f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/members",
                        joiner.token, params={"membership": "join"}, timeout=w.join_timeout)
        full_state = time.monotonic()
    finally:
        await watcher.stop()
    return {"join_ms": (joined - started) * 1000, "first_sync_ms": (usable - started) * 1000,
            "first_message_ms": (arrived - started) * 1000, "delivery_ms": (arrived - sent) * 1000,
            "full_state_ms": (full_state - started) * 1000,
            "sync_errors": watcher.errors}


async def paced_latency(client: Client, sender: User, watcher: SyncWatcher, room_id: str, label: str,
                        w: Workload, kind: str = "message") -> dict[str, Any]:
    """Paced sends from `sender` (`kind`: message, encrypted, to_device), each timed from the start
    of its request until it shows in `watcher`'s sync."""
    starts: dict[str, float] = {}

    async def one(i: int) -> None:
        body = f"{label} {i} {secrets.token_hex(4)}"
        starts[body] = time.monotonic()
        if kind == "encrypted":
            await client.send_encrypted(sender, room_id, body)
        elif kind == "to_device":
            await client.send_to_device(sender, watcher.user, body)
        else:
            await client.send(sender, room_id, body)

    sends = []
    for i in range(w.latency_messages):
        sends.append(asyncio.create_task(one(i)))
        await asyncio.sleep(w.latency_interval)
    await asyncio.gather(*sends)
    latencies, missed = [], 0
    deadline = time.monotonic() + w.delivery_timeout
    for body, start in starts.items():
        try:
            latencies.append(await watcher.arrival(body, max(deadline - time.monotonic(), 0.01)) - start)
        except TimeoutError:
            missed += 1
    result: dict[str, Any] = summary_ms(latencies) if latencies else {"count": 0}
    result["missed"] = missed
    result["sync_errors"] = watcher.errors
    print(f"{label:>12}: p50 {result.get('p50_ms', float('nan')):.0f} ms, {missed} missed", flush=True)
    return result


async def bench(args: argparse.Namespace, w: Workload) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="bench-federation-")).resolve()
    ca = TestCA(base / "ca")
    started: list[Server] = []
    t_start = time.monotonic()
    try:
        with ThreadPoolExecutor(3) as pool:
            futures = {
                "resident": pool.submit(start_synapse_tls, base / "resident", ca, "resident", "127.0.0.2"),
                "synapse": pool.submit(start_synapse_tls, base / "synapse", ca, "synapse", "127.0.0.3"),
                "ours": pool.submit(start_ours_tls, base / "ours", ca, args.profile),
            }
            errors = []
            found: dict[str, Server] = {}
            for name, future in futures.items():
                try:
                    value = future.result()
                except Exception as e:  # noqa: BLE001 - stop the others, then raise
                    errors.append(e)
                    continue
                found[name] = value[0] if isinstance(value, tuple) else value
                started.append(found[name])
            if errors:
                raise errors[0]
        resident, ours, synapse = found["resident"], found["ours"], found["synapse"]
        print(f"resident Synapse {resident.server_name}, joining Synapse {synapse.server_name}, "
              f"ours {ours.server_name}; started in {time.monotonic() - t_start:.1f}s", flush=True)
        context = ssl.create_default_context(cafile=ca.ca_path)
        connector = aiohttp.TCPConnector(ssl=context, limit=200)
        async with aiohttp.ClientSession(connector=connector) as session:
            client = Client(session)
            room_id, members, build = await build_room(client, resident, w)
            print(f"room {room_id}: {w.members} members in {build['register_s']:.1f}s (register) + "
                  f"{build['join_s']:.1f}s (joins)", flush=True)
            joiners = {"ours": await client.register(ours, "joiner"),
                       "synapse": await client.register(synapse, "joiner")}
            results: dict[str, dict[str, Any]] = {"ours": {}, "synapse": {}}
            for kind in args.order.split(","):
                results[kind]["join"] = await join_and_first_message(
                    client, resident, joiners[kind], members[1], room_id, w)
                j = results[kind]["join"]
                print(f"{kind:8} join {j['join_ms']:.0f} ms, first message {j['first_message_ms']:.0f} ms",
                      flush=True)
            resident_watcher = SyncWatcher(client, members[0], room_id)
            await resident_watcher.start()
            try:
                for kind in args.order.split(","):
                    joiner_watcher = SyncWatcher(client, joiners[kind], room_id)
                    await joiner_watcher.start()
                    try:
                        for section, what in (("latency", "message"), ("encrypted", "encrypted"),
                                              ("to_device", "to_device")):
                            results[kind][section] = {
                                "to_joiner": await paced_latency(client, members[0], joiner_watcher, room_id,
                                                                 f"{what} to {kind}", w, what),
                                "from_joiner": await paced_latency(client, joiners[kind], resident_watcher,
                                                                   room_id, f"{what} from {kind}", w, what),
                            }
                    finally:
                        await joiner_watcher.stop()
            finally:
                await resident_watcher.stop()
        return {"workload": dataclasses.asdict(w), "order": args.order, "room_build": build,
                "servers": {"resident": resident.server_name, "ours": ours.server_name,
                            "synapse": synapse.server_name}, "results": results}
    finally:
        for server in reversed(started):
            server.stop()
        if not args.keep_workdir:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"work directories kept under {base}")


FIGURES: list[report.Figure] = [
    ("join (ms)", ("join", "join_ms"), "<= 0.5x"),
    ("join to first usable /sync (ms)", ("join", "first_sync_ms"), "<= 0.3x"),
    ("join to first message (ms)", ("join", "first_message_ms"), "<= 0.5x"),
    ("join to full member list (ms)", ("join", "full_state_ms"), "lower"),
    ("resident -> joiner p50 (ms)", ("latency", "to_joiner", "p50_ms"), "lower"),
    ("resident -> joiner p95 (ms)", ("latency", "to_joiner", "p95_ms"), "lower"),
    ("joiner -> resident p50 (ms)", ("latency", "from_joiner", "p50_ms"), "lower"),
    ("joiner -> resident p95 (ms)", ("latency", "from_joiner", "p95_ms"), "lower"),
    ("encrypted resident -> joiner p50 (ms)", ("encrypted", "to_joiner", "p50_ms"), "lower"),
    ("encrypted joiner -> resident p50 (ms)", ("encrypted", "from_joiner", "p50_ms"), "lower"),
    ("to-device resident -> joiner p50 (ms)", ("to_device", "to_joiner", "p50_ms"), "lower"),
    ("to-device joiner -> resident p50 (ms)", ("to_device", "from_joiner", "p50_ms"), "lower"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small room, for a smoke run")
    parser.add_argument("--order", default="ours,synapse", choices=["ours,synapse", "synapse,ours"],
                        help="which server joins first (default ours: it pays for the resident's cold caches)")
    parser.add_argument("--out", type=Path, help="results JSON (default bench/results/federation-<time>.json)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the servers' data dirs and logs")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="run our server under cProfile, stats to FILE (slows it: not for figures)")
    for f in dataclasses.fields(Workload):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default),
                            help=f"default {f.default} (quick: {getattr(QUICK, f.name)})")
    return parser.parse_args(argv)


def workload_from(args: argparse.Namespace) -> Workload:
    w = QUICK if args.quick else Workload()
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Workload) if getattr(args, f.name) is not None}
    return dataclasses.replace(w, **given)


def main_payload(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    w = workload_from(args)
    payload = asyncio.run(bench(args, w))
    table, rows = report.render(payload["results"], FIGURES)
    print()
    print(f"federation: a {w.members}-member room on a resident Synapse; ours vs a second Synapse")
    print(table)
    payload["table"] = rows
    report.save_results("federation", payload, args.out)
    return payload


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    main_payload(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
