"""E2EE key query and server-side search benchmark: ours and Synapse in one run, same seeded workload.

    .venv/bin/python bench/e2ee_search.py [--quick] [--db sqlite|postgres] [--servers ours,synapse]

For each server in turn (fresh database, rate limits off, loopback only):
  1. keys setup: register `users` users with the shared-secret admin API, log each in on `devices`
     devices and upload every device's keys (curve25519 + ed25519), signed with that device's own
     ed25519 key, as a client does
  2. /keys/query: one user asks for every user's devices (`{"device_keys": {user: []}}`), `repeats`
     times; the first (cold) and the median are reported
  3. search setup: `senders` users share `rooms` rooms and send `messages` messages of seeded random
     words, `concurrency` sends in flight; a marker word sits in one message out of `rare_every`, another
     in one out of `common_every`; a last sentinel message tells when the index has caught up
  4. /search (room_events) for the rare word by rank, the common word by rank and by recent, and two
     words together; median of `repeats` each, plus one page of `next_batch` for the common word

`--quick` scales everything down (30 users, 2,000 messages). The table goes to stdout and the results
to bench/results/e2ee_search-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
from nacl.public import PrivateKey
from signedjson.key import encode_verify_key_base64, generate_signing_key
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402  (bench/ is a script directory, not a package)
import servers  # noqa: E402
from messaging import CLIENT, Api, User, bounded, q, shared_secret_mac  # noqa: E402

SETUP_CONCURRENCY = 10
INDEX_WAIT_SECONDS = 600.0
RARE_WORD = "zephyrine"
COMMON_WORD = "marmalade"
SENTINEL_PREFIX = "sentinel"
ALGORITHMS = ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"]


@dataclass(frozen=True)
class Workload:
    users: int = 200
    devices: int = 3
    messages: int = 50_000
    rooms: int = 20
    senders: int = 5
    concurrency: int = 20
    rare_every: int = 1000
    common_every: int = 10
    words_per_message: int = 8
    vocabulary: int = 5000
    repeats: int = 5
    seed: int = 1


QUICK = Workload(users=30, messages=2000, rooms=5, repeats=3)


def make_vocabulary(size: int, rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(4, 9))))
    return sorted(words - {RARE_WORD, COMMON_WORD})


def message_text(n: int, w: Workload, vocabulary: list[str], rng: random.Random) -> str:
    words = [rng.choice(vocabulary) for _ in range(w.words_per_message)]
    if n % w.rare_every == 7:
        words[rng.randrange(len(words))] = RARE_WORD
    if n % w.common_every == 3:
        words[rng.randrange(len(words))] = COMMON_WORD
    return " ".join(words)


def device_keys(user_id: str, device_id: str) -> dict[str, Any]:
    """A device's identity keys, self-signed with its ed25519 key as a real client would upload them."""
    signing_key = generate_signing_key(device_id)
    curve = encode_base64(bytes(PrivateKey.generate().public_key))
    keys = {"user_id": user_id, "device_id": device_id, "algorithms": ALGORITHMS,
            "keys": {f"curve25519:{device_id}": curve,
                     f"ed25519:{device_id}": encode_verify_key_base64(signing_key.verify_key)}}
    return sign_json(keys, user_id, signing_key)


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


class Run:
    def __init__(self, api: Api, secret: str, w: Workload) -> None:
        self.api = api
        self.secret = secret
        self.w = w
        self.users: list[User] = []
        self.room_ids: list[str] = []
        self.tag = os.urandom(4).hex()

    async def register_one(self, index: int) -> User:
        localpart = f"e2ee{index:04d}"
        password = f"pw-{self.tag}-{index}"
        nonce = (await self.api.call("GET", "/_synapse/admin/v1/register"))["nonce"]
        body = {"nonce": nonce, "username": localpart, "password": password, "admin": False,
                "mac": shared_secret_mac(self.secret, nonce, localpart, password)}
        reply = await self.api.call("POST", "/_synapse/admin/v1/register", body=body)
        return User(index, localpart, reply["user_id"], reply["access_token"], password)

    async def add_device(self, user: User, number: int) -> None:
        device_id = f"BENCH{number}{self.tag.upper()}"
        login = await self.api.call("POST", f"{CLIENT}/login", body={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.localpart},
            "password": user.password, "device_id": device_id})
        reply = await self.api.call("POST", f"{CLIENT}/keys/upload", token=login["access_token"],
                                    body={"device_keys": device_keys(user.user_id, login["device_id"])})
        if not isinstance(reply.get("one_time_key_counts"), dict):
            raise RuntimeError(f"/keys/upload answered {reply}")

    async def keys_setup(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.users = await bounded(SETUP_CONCURRENCY, [lambda i=i: self.register_one(i) for i in range(self.w.users)])
        registered = time.perf_counter()
        await bounded(SETUP_CONCURRENCY, [lambda u=u, d=d: self.add_device(u, d)
                                          for u in self.users for d in range(self.w.devices)])
        return {"register_s": registered - started, "devices_s": time.perf_counter() - registered}

    async def keys_query(self) -> dict[str, Any]:
        body = {"device_keys": {u.user_id: [] for u in self.users}}
        times: list[float] = []
        for _ in range(self.w.repeats):
            elapsed, reply = await self.api.timed("POST", f"{CLIENT}/keys/query", token=self.users[0].token,
                                                  body=body)
            devices = sum(len(d) for d in reply.get("device_keys", {}).values())
            if devices != self.w.users * self.w.devices:
                raise RuntimeError(f"/keys/query listed {devices} devices, expected {self.w.users * self.w.devices}")
            times.append(elapsed)
        return {"first_ms": times[0] * 1000, "median_ms": median_ms(times), "devices": self.w.users * self.w.devices}

    async def search_setup(self) -> dict[str, Any]:
        senders = self.users[:self.w.senders]
        owner = senders[0]
        started = time.perf_counter()
        for _ in range(self.w.rooms):
            room = await self.api.call("POST", f"{CLIENT}/createRoom", token=owner.token,
                                       body={"preset": "public_chat"})
            self.room_ids.append(room["room_id"])
        await bounded(SETUP_CONCURRENCY, [
            lambda u=u, r=r: self.api.call("POST", f"{CLIENT}/join/{q(r)}", token=u.token, body={})
            for u in senders[1:] for r in self.room_ids])
        rng = random.Random(self.w.seed)
        vocabulary = make_vocabulary(self.w.vocabulary, rng)
        texts = [message_text(n, self.w, vocabulary, rng) for n in range(self.w.messages)]
        joined = time.perf_counter()
        done = 0

        async def send(n: int) -> None:
            nonlocal done
            sender = senders[(n // self.w.rooms) % len(senders)]
            room_id = self.room_ids[n % self.w.rooms]
            path = f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/{q(f'{self.tag}-{n}')}"
            await self.api.call("PUT", path, token=sender.token, body={"msgtype": "m.text", "body": texts[n]})
            done += 1
            if done % 5000 == 0:
                print(f"  sent {done}/{self.w.messages}", file=sys.stderr, flush=True)

        await bounded(self.w.concurrency, [lambda n=n: send(n) for n in range(self.w.messages)])
        sent = time.perf_counter()
        sentinel = f"{SENTINEL_PREFIX}{self.tag}"
        await self.api.call("PUT", f"{CLIENT}/rooms/{q(self.room_ids[0])}/send/m.room.message/{q(sentinel)}",
                            token=owner.token, body={"msgtype": "m.text", "body": sentinel})
        deadline = time.perf_counter() + INDEX_WAIT_SECONDS
        while not (await self.search(sentinel))[1]["results"]:
            if time.perf_counter() > deadline:
                raise RuntimeError("the sentinel message never became searchable")
            await asyncio.sleep(0.05)
        return {"join_s": joined - started, "send_s": sent - joined,
                "messages_per_s": self.w.messages / (sent - joined), "indexed_after_send_s": time.perf_counter() - sent}

    async def search(self, term: str, order_by: str = "rank", next_batch: str | None = None
                     ) -> tuple[float, dict[str, Any]]:
        body = {"search_categories": {"room_events": {"search_term": term, "order_by": order_by}}}
        params = {"next_batch": next_batch} if next_batch else None
        elapsed, reply = await self.api.timed("POST", f"{CLIENT}/search", token=self.users[0].token, body=body,
                                              params=params)
        return elapsed, reply["search_categories"]["room_events"]

    async def search_queries(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        expected_rare = sum(1 for n in range(self.w.messages) if n % self.w.rare_every == 7)
        for name, term, order in (("rare_rank", RARE_WORD, "rank"), ("common_rank", COMMON_WORD, "rank"),
                                  ("common_recent", COMMON_WORD, "recent"),
                                  ("two_words_rank", f"{COMMON_WORD} {RARE_WORD}", "rank")):
            times, count = [], None
            for _ in range(self.w.repeats):
                elapsed, result = await self.search(term, order)
                times.append(elapsed)
                count = result.get("count")
                if not result["results"] and name != "two_words_rank":
                    raise RuntimeError(f"search for {term!r} found nothing")
            out[name] = {"median_ms": median_ms(times), "count": count}
        out["rare_rank"]["expected"] = expected_rare
        _, first = await self.search(COMMON_WORD, "recent")
        if first.get("next_batch"):
            times = []
            for _ in range(self.w.repeats):
                elapsed, _ = await self.search(COMMON_WORD, "recent", first["next_batch"])
                times.append(elapsed)
            out["common_recent_page2"] = {"median_ms": median_ms(times)}
        return out


async def bench_server(kind: str, db: str, w: Workload) -> dict[str, Any]:
    print(f"{kind} ({db}): starting", file=sys.stderr, flush=True)
    result: dict[str, Any] = {}
    try:
        with servers.start_server(kind, db) as server:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
                run = Run(Api(session, server.url), server.shared_secret, w)
                for phase in ("keys_setup", "keys_query", "search_setup", "search_queries"):
                    print(f"{kind}: {phase}", file=sys.stderr, flush=True)
                    try:
                        result[phase] = await getattr(run, phase)()
                    except Exception as error:  # one failed phase still reports the others
                        result[phase] = {"error": f"{type(error).__name__}: {error}"}
                        if phase in ("keys_setup", "search_setup"):
                            break
            result["alive_at_end"] = server.alive()
    except Exception as error:
        result["error"] = f"{type(error).__name__}: {error}"
    return result




FIGURES = [
    ("/keys/query all devices, median (ms)", ("keys_query", "median_ms"), "<= 0.5x"),
    ("/keys/query all devices, first (ms)", ("keys_query", "first_ms"), ""),
    ("/search rare word, rank (ms)", ("search_queries", "rare_rank", "median_ms"), "<= 0.5x"),
    ("/search common word, rank (ms)", ("search_queries", "common_rank", "median_ms"), "<= 0.5x"),
    ("/search common word, recent (ms)", ("search_queries", "common_recent", "median_ms"), "<= 0.5x"),
    ("/search common word, recent, page 2 (ms)", ("search_queries", "common_recent_page2", "median_ms"), ""),
    ("/search rare+common words, rank (ms)", ("search_queries", "two_words_rank", "median_ms"), ""),
    ("setup: register (s)", ("keys_setup", "register_s"), ""),
    ("setup: log in + upload keys (s)", ("keys_setup", "devices_s"), ""),
    ("setup: send messages/s", ("search_setup", "messages_per_s"), ""),
    ("setup: indexed after last send (s)", ("search_setup", "indexed_after_send_s"), ""),
]


def render(results: dict[str, dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    return report.render(results, FIGURES)


async def bench(args: argparse.Namespace) -> int:
    w = QUICK if args.quick else Workload()
    overrides = {k: v for k, v in (("users", args.users), ("messages", args.messages), ("repeats", args.repeats))
                 if v}
    w = replace(w, **overrides)
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    results = {kind: await bench_server(kind, args.db, w) for kind in kinds}
    table, rows = render(results)
    print(f"\ne2ee/search benchmark, {args.db}, workload {asdict(w)}\n\n{table}")
    for kind, result in results.items():
        for phase, r in result.items():
            if isinstance(r, dict) and "error" in r:
                print(f"  {kind}: {phase}: {r['error']}")
        if "error" in result:
            print(f"  {kind}: {result['error']}")
        counts = {name: r.get("count") for name, r in result.get("search_queries", {}).items()
                  if isinstance(r, dict) and "count" in r}
        if counts:
            print(f"  {kind} search counts: {counts}")
    report.save_results("e2ee_search", {"db": args.db, "workload": asdict(w), "figures": rows, "servers": results},
                        args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 users, 2,000 messages")
    parser.add_argument("--db", choices=servers.DB_KINDS, default="sqlite")
    parser.add_argument("--servers", default="ours,synapse", help="comma-separated, run in this order")
    parser.add_argument("--users", type=int, help=f"default {Workload.users}")
    parser.add_argument("--messages", type=int, help=f"default {Workload.messages}")
    parser.add_argument("--repeats", type=int, help=f"timed repeats of each query (default {Workload.repeats},"
                        f" {QUICK.repeats} with --quick); more give steadier medians on a busy machine")
    parser.add_argument("--out", type=Path, help="results JSON (default bench/results/e2ee_search-<time>.json)")
    args = parser.parse_args(argv)
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
