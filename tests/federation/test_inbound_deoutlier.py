"""An event we hold only as an outlier (fetched as another's auth event, or with a room's state)
that later arrives in the room's DAG, over /send or as a gap filled with get_missing_events, takes
its place in the room: timeline, extremities, state group."""

from __future__ import annotations

from tests.federation.resident import local_room, remote_joins, send_transaction, timeline_bodies


def text(body: str) -> dict:
    return {"msgtype": "m.text", "body": body}


async def test_an_outlier_arriving_over_send_takes_its_place_in_the_room(fed_hs, ca, room_remote):
    view, remote = room_remote
    alice, room_id = await local_room(fed_hs, ca)
    await remote_joins(fed_hs, remote, view, room_id)
    msg = view.build("bob", "m.room.message", text("eerst een uitschieter"))
    view.apply(msg)
    event_id = view.event_id(msg)
    await fed_hs.federation.ingestor.persist_outliers(view.room_version, [msg])
    assert (await fed_hs.event_store.get_event(event_id)).internal_metadata["outlier"] is True

    status, body = await send_transaction(fed_hs, remote, [msg])
    assert (status, body) == (200, {"pdus": {event_id: {}}})
    fed_hs.event_store.drop_cached([event_id])
    stored = await fed_hs.event_store.get_event(event_id)
    assert stored.internal_metadata["outlier"] is False and stored.rejected_reason is None
    assert await fed_hs.event_store.get_forward_extremities(room_id) == [event_id]
    assert await fed_hs.event_store.get_state_group_for_event(event_id) is not None
    assert (view.user("bob"), "eerst een uitschieter") in await timeline_bodies(fed_hs, ca, alice["access_token"],
                                                                                 room_id)


async def test_a_prev_event_held_as_an_outlier_is_fetched_as_a_gap_and_joins_the_timeline(fed_hs, ca, room_remote):
    view, remote = room_remote
    alice, room_id = await local_room(fed_hs, ca)
    await remote_joins(fed_hs, remote, view, room_id)
    first = view.build("bob", "m.room.message", text("een"))
    view.apply(first)
    second = view.build("bob", "m.room.message", text("twee"))
    view.apply(second)
    await fed_hs.federation.ingestor.persist_outliers(view.room_version, [first])

    status, body = await send_transaction(fed_hs, remote, [second])
    assert (status, body) == (200, {"pdus": {view.event_id(second): {}}})
    bodies = await timeline_bodies(fed_hs, ca, alice["access_token"], room_id)
    assert bodies[-2:] == [(view.user("bob"), "een"), (view.user("bob"), "twee")]
    assert await fed_hs.event_store.get_forward_extremities(room_id) == [view.event_id(second)]
