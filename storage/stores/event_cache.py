"""Events kept in memory by ID, in two tiers: the newest as objects, the older ones as JSON bytes.

A message event is about 2.9 KiB as Python objects and 0.75 KiB as its JSON, and decoding it back
takes a few microseconds, far less than reading it from the database. So the newest `hot_size`
events stay decoded (what the senders, the auth checks and /sync touch again and again), and
`warm_size` more are kept packed; an event asked for from the warm tier is decoded and becomes hot
again. Both tiers are insertion-ordered: the oldest event of the hot tier is packed into the warm
one, and the oldest of the warm tier is dropped (read back from the database when next asked for).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from sys import intern

from homeserver.events.event import Event
from homeserver.events.room_versions import get_room_version
from homeserver.jsonutil import decode, encode_kept


class EventCache:
    def __init__(self, hot_size: int, warm_size: int):
        self._hot: OrderedDict[str, Event] = OrderedDict()
        self._warm: OrderedDict[str, bytes] = OrderedDict()
        self._hot_size = max(1, hot_size)
        self._warm_size = max(0, warm_size)

    def __len__(self) -> int:
        return len(self._hot) + len(self._warm)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._hot or event_id in self._warm

    def get(self, event_id: str) -> Event | None:
        event = self._hot.get(event_id)
        if event is not None:
            return event
        packed = self._warm.pop(event_id, None)
        if packed is None:
            return None
        event = _unpack(event_id, packed)
        self.put(event)
        return event

    def put(self, event: Event) -> None:
        """Keep an event (just persisted or read from the database) in the hot tier."""
        share_strings(event.pdu)
        event_id = event.event_id
        self._warm.pop(event_id, None)
        self._hot[event_id] = event
        self._hot.move_to_end(event_id)
        while len(self._hot) > self._hot_size:
            old_id, old = self._hot.popitem(last=False)
            packed = _pack(old) if self._warm_size else None
            if packed is not None:
                self._warm[old_id] = packed
        while len(self._warm) > self._warm_size:
            self._warm.popitem(last=False)

    def pop(self, event_id: str) -> None:
        self._hot.pop(event_id, None)
        self._warm.pop(event_id, None)

    def clear(self) -> None:
        self._hot.clear()
        self._warm.clear()


def _pack(event: Event) -> bytes | None:
    """The event and what the store knows of it, as JSON; None for what JSON cannot carry (then the
    event is read back from the database when next asked for)."""
    try:
        return encode_kept((event.room_version.identifier, event.rejected_reason, event.internal_metadata,
                            event.pdu))
    except TypeError:
        return None


def _unpack(event_id: str, packed: bytes) -> Event:
    version, rejected_reason, metadata, pdu = decode(packed)
    event = Event(pdu, get_room_version(version), event_id=event_id, rejected_reason=rejected_reason)
    event.internal_metadata.update(metadata)
    return event


def share_strings(pdu: Mapping[str, object]) -> None:
    """Make a cached event's recurring strings (its room, sender, type, and the IDs of the events it
    points at, which its neighbours point at too) one shared object each: equal values, about a
    fifth less memory per event read from the database, a tenth per event built here."""
    if type(pdu) is not dict:
        return
    for key in ("room_id", "sender", "type"):
        value = pdu.get(key)
        if type(value) is str:
            pdu[key] = intern(value)
    for key in ("auth_events", "prev_events"):
        ids = pdu.get(key)
        # Room versions 1 and 2 list [event ID, hashes] pairs: left as they are.
        if type(ids) is list and all(type(i) is str for i in ids):
            pdu[key] = [intern(i) for i in ids]

