"""The ingestion primitives the joining side builds on (federation/ingest.py): outliers stored from a
remote room's auth chain, and our own join persisted with the state a resident server gave us."""

from __future__ import annotations

import random

from homeserver.events.room_versions import get_room_version

V10 = get_room_version("10")


def remote_room(view, remote):
    """A public room created on the fake remote by bob: create, join, power levels, join rules."""
    view.room_version = V10
    view.room_id = f"!lounge{random.randrange(10**9)}:{remote.server_name}"
    bob = view.user("bob")
    events = [view.build("bob", "m.room.create", {"creator": bob, "room_version": "10"}, state_key="",
                         prev_events=[], depth=1)]
    view.apply(events[-1])
    for event_type, state_key, content in [
            ("m.room.member", bob, {"membership": "join"}),
            ("m.room.power_levels", "", {"users": {bob: 100}, "users_default": 0}),
            ("m.room.join_rules", "", {"join_rule": "public"}),
            ("m.room.name", "", {"name": "Remote lounge"})]:
        events.append(view.build("bob", event_type, content, state_key=state_key))
        view.apply(events[-1])
    return events


async def test_outliers_are_stored_auth_first_and_kept_out_of_timelines(fed_hs, room_remote):
    view, remote = room_remote
    events = remote_room(view, remote)
    ingestor = fed_hs.federation.ingestor
    stored = await ingestor.persist_outliers(V10, list(reversed(events)))
    assert [e.event_id for e in stored] == [view.event_id(p) for p in events]
    for pdu in events:
        event = await fed_hs.event_store.get_event(view.event_id(pdu))
        assert event is not None and event.internal_metadata["outlier"] is True and event.rejected_reason is None
    assert await fed_hs.event_store.get_forward_extremities(view.room_id) == []
    assert await fed_hs.event_store.get_current_state_ids(view.room_id) == {}
    # Stored again: nothing new, the stored copies answered.
    position = await fed_hs.event_store.current_stream_position()
    again = await ingestor.persist_outliers(V10, events)
    assert [e.event_id for e in again] == [e.event_id for e in stored]
    assert await fed_hs.event_store.current_stream_position() == position


async def test_an_outlier_its_auth_events_refuse_is_stored_rejected_and_one_without_them_is_left_out(
        fed_hs, room_remote):
    view, remote = room_remote
    events = remote_room(view, remote)
    rename = view.build("eve", "m.room.name", {"name": "eve was here"}, state_key="")  # eve is no member
    orphan = view.build("bob", "m.room.topic", {"topic": "?"}, state_key="",
                        auth_state={**view.state, ("m.room.power_levels", ""): "$unknown"})
    stored = await fed_hs.federation.ingestor.persist_outliers(V10, [*events, rename, orphan])
    ids = [e.event_id for e in stored]
    assert view.event_id(rename) in ids and view.event_id(orphan) not in ids
    rejected = await fed_hs.event_store.get_event(view.event_id(rename))
    assert rejected.rejected_reason is not None
    assert await fed_hs.event_store.get_event(view.event_id(orphan)) is None
