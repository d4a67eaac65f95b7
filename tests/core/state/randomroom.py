"""Random rooms that fork: a shared history, then branches whose servers each accepted
their own events. Every event passed the auth rules where it was sent, as it would
on a real server, so the conflicts are the kind federation produces."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from homeserver.events.room_versions import RoomVersion
from tests.state.statedag import ALICE, BOB, CAROL, DAVE, EVE, Room, StateMap

USERS = [ALICE, BOB, CAROL, DAVE, EVE]


class _Namer:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"e{self.n}"


def _random_levels(rng: random.Random, room: Room) -> dict[str, int]:
    users = USERS if not room.room_version.creator_power_infinite else USERS[1:]
    levels = {u: rng.choice([0, 25, 50, 75, 100]) for u in rng.sample(users, rng.randint(1, len(users)))}
    if not room.room_version.creator_power_infinite and rng.random() < 0.7:
        levels[ALICE] = 100
    return levels


def _random_step(rng: random.Random, room: Room, state: StateMap, name: str) -> StateMap | None:
    sender = rng.choice(USERS)
    target = rng.choice(USERS)
    ts = rng.randint(1, 40) if rng.random() < 0.5 else None
    kind = rng.random()
    if kind < 0.2:
        return room.try_send(name, state, "m.room.topic", sender, {"topic": name}, ts=ts)
    if kind < 0.3:
        return room.try_send(name, state, "m.room.name", sender, {"name": name}, ts=ts)
    if kind < 0.5:
        content: dict[str, Any] = {"users": _random_levels(rng, room)}
        if rng.random() < 0.5:
            content["events"] = {"m.room.topic": rng.choice([0, 50])}
        if rng.random() < 0.3:
            content["ban"] = rng.choice([25, 50, 75])
        return room.try_send(name, state, "m.room.power_levels", sender, content, ts=ts)
    if kind < 0.6:
        rule = rng.choice(["public", "invite"])
        return room.try_send(name, state, "m.room.join_rules", sender, {"join_rule": rule}, ts=ts)
    if kind < 0.75:
        membership = rng.choice(["join", "leave"])
        return room.try_send(name, state, "m.room.member", sender, {"membership": membership}, sender, ts=ts)
    membership = rng.choice(["ban", "leave", "invite"])
    return room.try_send(name, state, "m.room.member", sender, {"membership": membership}, target, ts=ts)


def random_forks(
    seed: int,
    room_version: str,
    *,
    id_factory: Callable[[dict[str, Any], RoomVersion], str] | None = None,
    forks: int | None = None,
) -> tuple[Room, list[StateMap]]:
    """A room and 1-4 state sets that share a history and then diverge."""
    rng = random.Random(seed)
    room = Room(room_version, id_factory=id_factory)
    name = _Namer()
    levels = {u: rng.choice([0, 50, 100]) for u in USERS[1:]}
    state = room.create(
        ALICE,
        users=levels,
        join_rule=rng.choice(["public", "invite"]),
        power_extra={"events": {"m.room.topic": rng.choice([0, 50])}},
    )
    for user in USERS[1:]:
        if rng.random() < 0.8:
            invited = room.try_send(name(), state, "m.room.member", ALICE, {"membership": "invite"}, user)
            state = invited or state
            state = room.try_send(name(), state, "m.room.member", user, {"membership": "join"}, user) or state
    for _ in range(rng.randint(0, 4)):
        state = _random_step(rng, room, state, name()) or state

    count = forks if forks is not None else rng.randint(1, 4)
    tips: list[StateMap] = []
    # Every state some branch passed through, so later branches can fork off mid-way.
    history: list[StateMap] = [state]
    for _ in range(count):
        branch = dict(rng.choice(history)) if rng.random() < 0.5 else dict(state)
        for _ in range(rng.randint(0, 8)):
            branch = _random_step(rng, room, branch, name()) or branch
            history.append(branch)
        tips.append(branch)
    return room, tips
