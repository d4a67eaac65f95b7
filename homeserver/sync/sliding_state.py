"""What a simplified sliding sync connection's client has, and its stored (per-room) form.

A `Position` is the state one response handed out under its `pos`: the response's stream token,
for each room sent so far what the client has of it (`SentRoom`), and the list counts. `gen`
orders a connection's positions. The database keeps one row per position and, per room, a row
at each generation where what the client has of the room changed (`room_changes`); the state at
a position is, per room, the newest row at or below its generation (`fold_rooms`). So a response
writes only the rooms it changed, and a client continues with its `pos` after a restart.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from homeserver.streams.client_tokens import SyncToken, parse_sync_token
from homeserver.sync.sliding_request import RoomConfig
from storage.stores.sliding_sync import RoomRow


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
    gen: int = 0


class UnreadableState(ValueError):
    """A stored state this code cannot read (damaged)."""


@functools.lru_cache(maxsize=1024)
def encode_config(config: RoomConfig) -> str:
    """The stored JSON of a room configuration (a connection's rooms share a few: cached)."""
    return json.dumps([config.timeline_limit, sorted([t, k] for t, k in config.required_state)],
                      separators=(",", ":"))


def encode_counts(counts: Mapping[str, int]) -> str:
    return json.dumps(dict(counts), separators=(",", ":"))


def _is_live(sent: SentRoom, token: SyncToken | None) -> bool:
    """Whether the room was in view at the position of `token` and is had up to it: then its row
    need not name the position (`RoomRow.live`), and a room that stays in view is not rewritten."""
    return token is not None and sent.seen == token and sent.upto == token.get("events")


def _stored_key(sent: SentRoom, token: SyncToken | None) -> tuple[Any, ...]:
    moving: tuple[Any, ...] = ("live",) if _is_live(sent, token) else (sent.upto, sent.seen)
    return (*moving, sent.membership, sent.config, sent.members)


def room_changes(before: Mapping[str, SentRoom], before_token: SyncToken | None, after: Mapping[str, SentRoom],
                 after_token: SyncToken, gen: int) -> list[RoomRow]:
    """The rows to write at `gen` so that the stored state `before` (of the position of
    `before_token`) reads as `after` at the position of `after_token`."""
    rows: list[RoomRow] = []
    for room_id, sent in after.items():
        old = before.get(room_id)
        if old is not None and _stored_key(old, before_token) == _stored_key(sent, after_token):
            continue
        live = _is_live(sent, after_token)
        rows.append(RoomRow(room_id, gen, 0 if live else sent.upto, sent.membership, encode_config(sent.config),
                            json.dumps(sorted(sent.members), separators=(",", ":")) if sent.members else "[]",
                            None if live or sent.seen is None else str(sent.seen), live))
    rows.extend(RoomRow(room_id, gen, 0, None, "", "[]", None, False) for room_id in before if room_id not in after)
    return rows


def fold_rooms(rows: Iterable[RoomRow], token: SyncToken) -> dict[str, SentRoom]:
    """The state the stored rows (all at or below one generation) describe at the position of `token`."""
    newest: dict[str, RoomRow] = {}
    for row in rows:
        current = newest.get(row.room_id)
        if current is None or row.gen > current.gen:
            newest[row.room_id] = row
    configs: dict[str, RoomConfig] = {}
    out: dict[str, SentRoom] = {}
    events = token.get("events")
    try:
        for room_id, row in newest.items():
            if row.membership is None:
                continue
            config = configs.get(row.config)
            if config is None:
                limit, pairs = json.loads(row.config)
                config = configs[row.config] = RoomConfig(int(limit), frozenset((str(t), str(k)) for t, k in pairs))
            members = frozenset(json.loads(row.members))
            if row.live:
                out[room_id] = SentRoom(events, row.membership, config, members, token)
            else:
                out[room_id] = SentRoom(int(row.upto), row.membership, config, members,
                                        None if row.seen is None else parse_sync_token(row.seen))
    except Exception as error:  # noqa: BLE001 - any damage reads as an unknown position
        raise UnreadableState(f"{type(error).__name__}: {error}") from error
    return out


def decode_position(token: str, counts: str, gen: int, rows: Iterable[RoomRow]) -> Position:
    try:
        parsed_counts: Any = json.loads(counts)
        decoded = {str(name): int(count) for name, count in parsed_counts.items()}
        parsed = parse_sync_token(token)
        return Position(parsed, fold_rooms(rows, parsed), decoded, int(gen))
    except UnreadableState:
        raise
    except Exception as error:  # noqa: BLE001
        raise UnreadableState(f"{type(error).__name__}: {error}") from error
