"""Event stages follow the events stream in order and resume from their persisted position."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from homeserver.events.event import Event
from homeserver.streams.stages import EventStage
from homeserver.streams.updates import EventPersisted
from storage.stores.stages import StagePositionStore
from tests.support.rooms import new_user


class Recorder:
    def __init__(self, fail_times: int = 0) -> None:
        self.seen: list[str] = []
        self.fail_times = fail_times
        self.calls = 0

    async def handle(self, events: Sequence[Event], upto: int) -> bool:
        self.calls += 1
        if self.calls <= self.fail_times:
            raise RuntimeError("not yet")
        self.seen.extend(e.event_id for e in events)
        return False


async def start_stage(hs, name: str, recorder: Recorder, **kwargs) -> EventStage:
    stage = EventStage(name, hs.event_store, StagePositionStore(hs.db), recorder.handle, **kwargs)
    hs.bus.subscribe(EventPersisted, stage.on_event_persisted)
    await stage.start()
    return stage


async def test_a_new_stage_starts_at_the_live_end_and_sees_later_events_in_order(hs, client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    await alice.send(room_id, "before")
    recorder = Recorder()
    stage = await start_stage(hs, "test_live", recorder)
    try:
        sent = [await alice.send(room_id, f"m{i}") for i in range(5)]
        assert await stage.wait_for_live(5)
        assert recorder.seen == sent
    finally:
        await stage.stop()


async def test_a_stage_resumes_after_its_saved_position_without_repeating(hs, client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    first = Recorder()
    stage = await start_stage(hs, "test_resume", first)
    early = [await alice.send(room_id, f"a{i}") for i in range(3)]
    assert await stage.wait_for_live(5)
    await stage.stop()  # saves the position it reached
    missed = [await alice.send(room_id, f"b{i}") for i in range(3)]

    second = Recorder()
    stage = await start_stage(hs, "test_resume", second)
    try:
        assert await stage.wait_for_live(5)
        assert first.seen == early
        assert second.seen == missed
    finally:
        await stage.stop()


async def test_a_failing_batch_is_retried_and_never_skipped(hs, client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    recorder = Recorder(fail_times=1)
    stage = await start_stage(hs, "test_retry", recorder)
    try:
        sent = await alice.send(room_id, "once")
        assert await stage.wait_for_live(10)
        assert recorder.seen == [sent]
        assert recorder.calls == 2
    finally:
        await stage.stop()


async def test_a_stage_never_runs_ahead_of_its_upstream(hs, client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    gate = asyncio.Event()
    upstream_seen: list[str] = []

    async def slow(events: Sequence[Event], upto: int) -> bool:
        await gate.wait()
        upstream_seen.extend(e.event_id for e in events)
        return False

    upstream = EventStage("test_upstream", hs.event_store, StagePositionStore(hs.db), slow)
    hs.bus.subscribe(EventPersisted, upstream.on_event_persisted)
    await upstream.start()
    follower = Recorder()
    downstream = await start_stage(hs, "test_downstream", follower, upstream=upstream)
    try:
        sent = await alice.send(room_id, "gated")
        await asyncio.sleep(0.3)
        assert follower.seen == []
        gate.set()
        assert await downstream.wait_until(upstream.position or 1, 5)
        assert await downstream.wait_for_live(5)
        assert upstream_seen == [sent] and follower.seen == [sent]
    finally:
        await downstream.stop()
        await upstream.stop()
