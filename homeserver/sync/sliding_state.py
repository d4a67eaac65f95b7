"""What a simplified sliding sync connection's client has, and its stored (JSON) form.

A `Position` is the state one response handed out under its `pos`: the response's stream token,
for each room sent so far what the client has of it (`SentRoom`), and the list counts. It is
stored as JSON so that a client continues with its `pos` after a restart. Room configurations
repeat across rooms, so the stored form keeps each distinct one once and rooms refer to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from homeserver.streams.client_tokens import SyncToken, parse_sync_token
from homeserver.sync.sliding_request import RoomConfig

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SentRoom:
    """What a connection's client has of a room: everything up to `upto`, as `config` asked."""

    upto: int
    membership: str
    config: RoomConfig
    members: frozenset[str] = frozenset()
    # The response token when the room was last in view: per-room extensions continue from there.
    seen: SyncToken | None = None


@dataclass(frozen=True)
class Position:
    token: SyncToken
    rooms: Mapping[str, SentRoom]
    counts: Mapping[str, int]


class UnreadableState(ValueError):
    """A stored state this code cannot read (another format version, or damaged)."""


def encode_state(position: Position) -> str:
    """The rooms and counts of `position` as compact JSON (the token is stored beside it)."""
    configs: dict[RoomConfig, int] = {}
    rooms: dict[str, list[Any]] = {}
    for room_id, sent in position.rooms.items():
        index = configs.setdefault(sent.config, len(configs))
        rooms[room_id] = [sent.upto, sent.membership, index, sorted(sent.members),
                          None if sent.seen is None else str(sent.seen)]
    return json.dumps({
        "v": FORMAT_VERSION,
        "configs": [[c.timeline_limit, sorted([t, k] for t, k in c.required_state)] for c in configs],
        "rooms": rooms,
        "counts": dict(position.counts),
    }, separators=(",", ":"))


def decode_position(token: str, state: str) -> Position:
    try:
        data = json.loads(state)
        if data.get("v") != FORMAT_VERSION:
            raise UnreadableState(f"state format {data.get('v')!r}")
        configs = [RoomConfig(int(limit), frozenset((str(t), str(k)) for t, k in pairs))
                   for limit, pairs in data["configs"]]
        rooms = {}
        for room_id, (upto, membership, index, members, seen) in data["rooms"].items():
            rooms[room_id] = SentRoom(int(upto), str(membership), configs[index], frozenset(members),
                                      None if seen is None else parse_sync_token(seen))
        counts = {str(name): int(count) for name, count in data["counts"].items()}
        return Position(parse_sync_token(token), rooms, counts)
    except UnreadableState:
        raise
    except Exception as error:  # noqa: BLE001 - any damage reads as an unknown position
        raise UnreadableState(f"{type(error).__name__}: {error}") from error
