"""State resolution, ours against Synapse's, on the same forked 10,000-member room.

    SYNAPSE_PYTHON=/path/to/synapse-venv/bin/python .venv/bin/python bench/state_res.py \\
        [--members 10000] [--conflicted 200] [--room-version 10] [--rounds 3] [--repeat 5]

Synapse is not a dependency of the project: its side runs in a subprocess under the
Python `run_synapse.find_synapse_python` names ($SYNAPSE_PYTHON, this one, or .venv-synapse), fed the
very same events and state sets as JSON. Both sides get an in-memory store and the
same auth chain difference algorithm (Synapse's real one is a database query), so
what is compared is the resolution itself. The results must be identical.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import operator
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVER = "example.com"
ALICE = f"@alice:{SERVER}"


# --- the room ------------------------------------------------------------------------


def build_room(members: int, conflicted: int, room_version_id: str) -> dict[str, Any]:
    """Create a room, join `members` users, then fork it into two branches of
    `conflicted` / 2 state events each; returns the PDUs and the two state sets."""
    sys.path.insert(0, str(ROOT))
    from homeserver.event_auth import auth_types_for_event
    from homeserver.events.event import Event
    from homeserver.events.hashing import compute_event_id
    from homeserver.events.room_versions import get_room_version

    rv = get_room_version(room_version_id)
    pdus: list[dict[str, Any]] = []
    ids: list[str] = []
    clock = [1_700_000_000_000]
    room_id = f"!bench:{SERVER}"

    def send(state: dict, event_type: str, sender: str, content: dict, state_key: str = "") -> dict:
        nonlocal room_id
        clock[0] += 1
        pdu: dict[str, Any] = {
            "type": event_type,
            "sender": sender,
            "content": content,
            "state_key": state_key,
            "origin_server_ts": clock[0],
            "depth": len(pdus) + 1,
            "hashes": {"sha256": "aGFzaA"},
            "signatures": {},
            "prev_events": [ids[-1]] if ids else [],
        }
        is_create = event_type == "m.room.create"
        if not (is_create and rv.room_id_from_create_event):
            pdu["room_id"] = room_id
        probe = Event(pdu, rv, event_id="$probe")
        auth = [] if is_create else [state[k] for k in sorted(auth_types_for_event(probe, rv)) if k in state]
        if not is_create and not rv.room_id_from_create_event and state[("m.room.create", "")] not in auth:
            auth.insert(0, state[("m.room.create", "")])
        pdu["auth_events"] = auth
        if rv.event_id_in_event:
            event_id = f"${len(pdus)}:{SERVER}"
            pdu["event_id"] = event_id
        else:
            event_id = compute_event_id(pdu, rv)
        if is_create and rv.room_id_from_create_event:
            room_id = "!" + event_id[1:]
        pdus.append(pdu)
        ids.append(event_id)
        after = dict(state)
        after[(event_type, state_key)] = event_id
        return after

    users = [f"@user{i}:{SERVER}" for i in range(members)]
    mods = users[:5]
    create_content: dict[str, Any] = {"room_version": room_version_id}
    if not rv.implicit_room_creator:
        create_content["creator"] = ALICE
    state = send({}, "m.room.create", ALICE, create_content)
    state = send(state, "m.room.member", ALICE, {"membership": "join"}, ALICE)
    levels = {m: 50 for m in mods}
    if not rv.creator_power_infinite:
        levels[ALICE] = 100
    state = send(state, "m.room.power_levels", ALICE, {"users": levels})
    state = send(state, "m.room.join_rules", ALICE, {"join_rule": "public"})
    for user in users:
        state = send(state, "m.room.member", user, {"membership": "join", "displayname": user[1:7]}, user)

    # Fork A: the room admin reshuffles moderators and kicks people. Fork B: the
    # moderators ban others, people leave, the topic changes. Each branch touches
    # its own members, so nearly every event it sends ends up conflicted.
    per_fork = conflicted // 2
    fork_a, fork_b = dict(state), dict(state)
    targets_a = users[100 : 100 + per_fork]
    targets_b = users[100 + per_fork : 100 + 2 * per_fork]
    for i, target in enumerate(targets_a):
        if i % 20 == 0:
            levels = {**levels, mods[i // 20 % len(mods)]: 50 + i // 20}
            fork_a = send(fork_a, "m.room.power_levels", ALICE, {"users": levels})
        elif i % 25 == 1:
            fork_a = send(fork_a, "m.room.topic", ALICE, {"topic": f"topic A{i}"})
        else:
            fork_a = send(fork_a, "m.room.member", ALICE, {"membership": "leave"}, target)
    for i, target in enumerate(targets_b):
        mod = mods[i % len(mods)]
        if i % 30 == 0:
            fork_b = send(fork_b, "m.room.topic", mod, {"topic": f"topic B{i}"})
        elif i % 3 == 0:
            fork_b = send(fork_b, "m.room.member", target, {"membership": "leave"}, target)
        else:
            fork_b = send(fork_b, "m.room.member", mod, {"membership": "ban"}, target)

    def encode(state_map: dict) -> list:
        return sorted([t, k, e] for (t, k), e in state_map.items())

    return {
        "room_version": room_version_id,
        "room_id": room_id,
        "pdus": pdus,
        "ids": ids,
        "state_sets": [encode(fork_a), encode(fork_b)],
    }


def _decode(state_map: list) -> dict[tuple[str, str], str]:
    return {(t, k): e for t, k, e in state_map}


# --- our side ------------------------------------------------------------------------


def run_ours(room: dict[str, Any], repeat: int) -> tuple[list[float], dict]:
    sys.path.insert(0, str(ROOT))
    from homeserver.events.event import Event
    from homeserver.events.room_versions import get_room_version
    from homeserver.state import InMemoryStateResStore, resolve_state

    rv = get_room_version(room["room_version"])
    store = InMemoryStateResStore(
        Event(p, rv, event_id=e) for p, e in zip(room["pdus"], room["ids"], strict=True)
    )
    state_sets = [_decode(s) for s in room["state_sets"]]
    times: list[float] = []

    async def timed() -> dict:
        result: dict = {}
        for _ in range(repeat):
            start = time.perf_counter()
            result = await resolve_state(rv, state_sets, store)
            times.append(time.perf_counter() - start)
        return result

    return times, asyncio.run(timed())


# --- Synapse's side (runs under $SYNAPSE_PYTHON) ---------------------------------------


def run_synapse_side(room_path: str, repeat: int) -> None:
    import synapse.event_auth  # noqa: F401  (first: synapse.state and event_auth import each other)
    from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
    from synapse.events import make_event_from_dict
    from synapse.state import v1, v2
    from synapse.storage.databases.main.event_federation import StateDifference

    room = json.loads(Path(room_path).read_text())
    version = KNOWN_ROOM_VERSIONS[room["room_version"]]
    events = {}
    for pdu in room["pdus"]:
        if version.event_format == 1:
            pdu = dict(pdu)
            for field in ("auth_events", "prev_events"):
                pdu[field] = [[e, {"sha256": "aGFzaA"}] for e in pdu[field]]
        event = make_event_from_dict(pdu, version)
        events[event.event_id] = event
    if list(events) != room["ids"]:
        raise SystemExit("Synapse computes different event IDs than we do")

    auth_ids_of = operator.methodcaller("auth_event_ids")

    def walk(start, stop=frozenset()):
        # Layer by layer with map/chain/set, as our own store does.
        seen: set[str] = set()
        frontier = set(start)
        while frontier:
            layer = set(
                itertools.chain.from_iterable(map(auth_ids_of, filter(None, map(events.get, frontier))))
            )
            layer -= seen
            seen |= layer
            frontier = layer - stop
        return seen

    class Store:
        async def get_events(self, event_ids, allow_rejected=False):
            return {e: events[e] for e in event_ids if e in events}

        async def get_auth_chain_difference(self, room_id, state_sets, conflicted, additional):
            # The same algorithm as ours; a set's chain includes its own events.
            common = set(state_sets[0]).intersection(*state_sets[1:])
            shared = walk(common) | common
            extras = [(walk(s - common, shared) | (s - common)) - shared for s in state_sets]
            difference = set.union(*extras) - set.intersection(*extras)
            subgraph = None
            if conflicted is not None:
                # Ancestors of conflicted events that have a conflicted event among
                # their own ancestors, decided bottom-up once per event.
                below = walk(conflicted)
                leads: dict[str, bool] = {c: True for c in conflicted}

                def leads_to_conflict(event_id: str) -> bool:
                    if event_id not in leads:
                        leads[event_id] = False
                        parents = [a for a in events[event_id].auth_event_ids() if a in below]
                        leads[event_id] = any(leads_to_conflict(a) for a in parents)
                    return leads[event_id]

                subgraph = set(conflicted) | {e for e in below if leads_to_conflict(e)}
            return StateDifference(auth_difference=difference, conflicted_subgraph=subgraph)

    class Clock:
        async def sleep(self, duration):
            await asyncio.sleep(0)

    store = Store()
    state_sets = [_decode(s) for s in room["state_sets"]]
    times: list[float] = []

    async def timed() -> dict:
        result: dict = {}
        for _ in range(repeat):
            start = time.perf_counter()
            if room["room_version"] == "1":
                result = await v1.resolve_events_with_store(
                    room["room_id"], version, state_sets, None, store.get_events
                )
            else:
                result = await v2.resolve_events_with_store(
                    Clock(), room["room_id"], version, state_sets, None, store
                )
            times.append(time.perf_counter() - start)
        return dict(result)  # a ChainMap; flattening it is left out of the timing

    result = asyncio.run(timed())
    print(json.dumps({"times": times, "result": sorted([t, k, e] for (t, k), e in result.items())}))


# --- driver ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--conflicted", type=int, default=200)
    parser.add_argument("--room-version", default="10")
    parser.add_argument("--repeat", type=int, default=5, help="resolutions per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--synapse-side", metavar="ROOM_JSON", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.synapse_side:
        run_synapse_side(args.synapse_side, args.repeat)
        return

    sys.path.insert(0, str(ROOT / "scripts" / "synapse"))
    import run_synapse  # a script directory, not a package

    found = run_synapse.find_synapse_python()
    if found is None:
        raise SystemExit("set SYNAPSE_PYTHON to the python of a venv with matrix-synapse installed")
    synapse_python = str(found)

    room = build_room(args.members, args.conflicted, args.room_version)
    # Rounds alternate the two sides so that a busy machine slows both alike.
    ours_times: list[float] = []
    theirs_times: list[float] = []
    same = True
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(room, f)
        f.flush()
        for _ in range(args.rounds):
            times, ours = run_ours(room, args.repeat)
            ours_times += times
            out = subprocess.run(
                [synapse_python, __file__, "--synapse-side", f.name, "--repeat", str(args.repeat)],
                check=True,
                capture_output=True,
                text=True,
            )
            theirs = json.loads(out.stdout.strip().splitlines()[-1])
            theirs_times += theirs["times"]
            same = same and sorted([t, k, e] for (t, k), e in ours.items()) == theirs["result"]

    ours_best, theirs_best = min(ours_times), min(theirs_times)
    print(
        f"room v{args.room_version}: {args.members} members, {len(room['pdus'])} events, "
        f"two forks of {args.conflicted // 2} state events"
    )
    print(f"ours:    best {ours_best * 1000:8.1f} ms   median {statistics.median(ours_times) * 1000:8.1f} ms")
    print(
        f"synapse: best {theirs_best * 1000:8.1f} ms   median {statistics.median(theirs_times) * 1000:8.1f} ms"
    )
    print(f"ratio ours/synapse (best): {ours_best / theirs_best:.2f}   identical results: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
