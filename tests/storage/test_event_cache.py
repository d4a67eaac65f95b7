"""EventCache: the newest events as objects, older ones packed as JSON, the oldest dropped."""

from __future__ import annotations

from homeserver.events.event import Event
from homeserver.events.room_versions import get_room_version
from storage.stores.event_cache import EventCache


def _event(n: int, **metadata: object) -> Event:
    pdu = {"type": "m.room.message", "room_id": "!r:x", "sender": "@u:x", "depth": n,
           "prev_events": [f"$p{n}"], "auth_events": ["$create", "$pl"], "content": {"body": f"m{n}"},
           "hashes": {"sha256": "h"}, "signatures": {"x": {"ed25519:a": "s"}}, "origin_server_ts": n}
    event = Event(pdu, get_room_version("10"), event_id=f"$e{n}", rejected_reason="auth" if n == 2 else None)
    event.internal_metadata.update({"stream_ordering": n, "state_group": 100 + n, **metadata})
    return event


def test_an_event_pushed_out_of_the_hot_tier_comes_back_equal_from_the_warm_one():
    cache = EventCache(hot_size=2, warm_size=10)
    originals = [_event(n, txn_id=f"t{n}") for n in range(5)]
    for event in originals:
        cache.put(event)
    assert len(cache) == 5
    again = cache.get("$e2")
    assert again is not originals[2]
    assert again.event_id == "$e2"
    assert dict(again.pdu) == dict(originals[2].pdu)
    assert again.room_version is originals[2].room_version
    assert again.rejected_reason == "auth"
    assert again.internal_metadata == {"stream_ordering": 2, "state_group": 102, "txn_id": "t2"}
    # Asked for again, it is hot: the same object.
    assert cache.get("$e2") is again
    assert cache.get("$e4") is originals[4]


def test_the_oldest_packed_events_are_dropped_beyond_the_warm_size():
    cache = EventCache(hot_size=2, warm_size=3)
    for n in range(10):
        cache.put(_event(n))
    assert len(cache) == 5
    assert [n for n in range(10) if f"$e{n}" in cache] == [5, 6, 7, 8, 9]
    assert cache.get("$e4") is None


def test_popped_events_are_gone_from_both_tiers():
    cache = EventCache(hot_size=1, warm_size=5)
    for n in range(3):
        cache.put(_event(n))
    cache.pop("$e0")
    cache.pop("$e2")
    assert "$e0" not in cache and "$e2" not in cache and cache.get("$e0") is None
    assert cache.get("$e1") is not None
    cache.clear()
    assert len(cache) == 0


def test_an_event_json_cannot_carry_stays_hot_only():
    cache = EventCache(hot_size=1, warm_size=5)
    cache.put(_event(0, odd={1, 2}))  # a set: not JSON
    cache.put(_event(1))
    assert "$e0" not in cache
    assert cache.get("$e1") is not None
