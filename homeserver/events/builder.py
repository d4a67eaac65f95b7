"""Building new local events: assemble the PDU, hash it, sign it.

Pure: the clock (`origin_server_ts`), the DAG position (`prev_event_ids`, `depth`) and,
for room versions 1-2, the randomness of the event ID are all passed in.
"""

from __future__ import annotations

import random as _random
import secrets
import string
from collections.abc import Mapping, Sequence
from typing import Any

from signedjson.key import SigningKey

from homeserver.events.canonical_json import MAX_SAFE_INTEGER
from homeserver.events.event import Event
from homeserver.events.hashing import add_content_hash
from homeserver.events.room_versions import RoomVersion
from homeserver.events.signing import sign_event

# Depth is capped rather than refused so a room at the limit can still take events
# (pdu_v6 "depth": "If the room's depth is already at the limit, the depth must be set
# to the limit"); Synapse uses the same cap for every room version.
MAX_DEPTH = MAX_SAFE_INTEGER

_TOKEN_ALPHABET = string.ascii_letters
_TOKEN_LENGTH = 18


def make_event_id_token(rng: _random.Random | None = None) -> str:
    """A random local part for a v1/v2 event ID; `rng` makes it reproducible."""
    if rng is None:
        return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(_TOKEN_LENGTH))
    return "".join(rng.choice(_TOKEN_ALPHABET) for _ in range(_TOKEN_LENGTH))


def build_event(
    *,
    room_version: RoomVersion,
    event_type: str,
    sender: str,
    content: Mapping[str, Any],
    room_id: str | None,
    prev_event_ids: Sequence[str],
    auth_event_ids: Sequence[str],
    depth: int,
    origin_server_ts: int,
    origin: str,
    signing_key: SigningKey,
    state_key: str | None = None,
    redacts: str | None = None,
    unsigned: Mapping[str, Any] | None = None,
    event_hashes: Mapping[str, Mapping[str, str]] | None = None,
    event_id_token: str | None = None,
    rng: _random.Random | None = None,
) -> Event:
    """A new, hashed and signed local event.

    `origin` is this server's name (it signs the event and, in v1/v2, names the event
    ID's domain). `room_id` must be None for a v12 `m.room.create` and is required
    otherwise. `event_hashes` supplies the `{"sha256": ...}` of referenced events for
    v1/v2's `[event_id, hashes]` references (missing ones get `{}`). For v1/v2 the event
    ID's local part is `event_id_token`, else drawn from `rng`, else from `secrets`.
    `content` is copied shallowly; the caller keeps ownership of its nested values.
    """
    is_v12_create = room_version.room_id_from_create_event and event_type == "m.room.create"
    if is_v12_create:
        if room_id is not None:
            raise ValueError("a room version 12 m.room.create event has no room_id")
    elif room_id is None:
        raise ValueError("room_id is required")

    if room_version.event_id_in_event:
        hashes = event_hashes or {}
        prev_events: list[Any] = [[e, dict(hashes.get(e, {}))] for e in prev_event_ids]
        auth_events: list[Any] = [[e, dict(hashes.get(e, {}))] for e in auth_event_ids]
    else:
        prev_events = list(prev_event_ids)
        auth_events = list(auth_event_ids)

    pdu: dict[str, Any] = {
        "type": event_type,
        "sender": sender,
        "content": dict(content),
        "prev_events": prev_events,
        "auth_events": auth_events,
        "depth": min(depth, MAX_DEPTH),
        "origin_server_ts": origin_server_ts,
    }
    if room_id is not None:
        pdu["room_id"] = room_id
    if state_key is not None:
        pdu["state_key"] = state_key
    if redacts is not None:
        if room_version.redacts_in_content:
            pdu["content"].setdefault("redacts", redacts)
        else:
            pdu["redacts"] = redacts
    if room_version.event_id_in_event:
        token = event_id_token if event_id_token is not None else make_event_id_token(rng)
        pdu["event_id"] = f"${token}:{origin}"
    if unsigned:
        pdu["unsigned"] = dict(unsigned)

    signed = sign_event(add_content_hash(pdu), room_version, origin, signing_key)
    return Event(signed, room_version)
