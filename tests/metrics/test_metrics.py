"""Metric values move with the traffic that should move them, on a real server over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import quote

import aiohttp

from tests.metrics.scrape import Scrape, scrape
from tests.push.helpers import PushGateway, pusher_body
from tests.support.rooms import new_user


async def scrape_until(hs, done: Callable[[Scrape], bool], timeout: float = 10.0) -> Scrape:
    """Scrape until `done(scrape)` holds; the last scrape is returned either way for the assertion."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        exported = await scrape(hs)
        if done(exported) or loop.time() > deadline:
            return exported
        await asyncio.sleep(0.05)


async def test_a_request_is_counted_under_its_route_pattern_never_its_path(hs, client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    route = "/_matrix/client/v3/rooms/{roomId}/state"
    before = await scrape(hs)
    await alice.call("GET", f"/rooms/{quote(room_id)}/state")
    after = await scrape(hs)
    assert after.value("http_requests_total", method="GET", route=route, status="200") == \
        before.value("http_requests_total", method="GET", route=route, status="200") + 1
    assert after.value("http_request_duration_seconds_count", method="GET", route=route) >= 1
    routes = after.label_values("http_requests_total", "route")
    assert not any(room_id in r or alice.user_id in r for r in routes)


async def test_a_held_sync_shows_as_an_active_long_poll_until_news_wakes_it(hs, client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    since = (await alice.call("GET", "/sync"))["next_batch"]
    assert (await scrape(hs)).value("sync_long_polls_active") == 0
    held = asyncio.create_task(alice.call("GET", "/sync", since=since, timeout="30000"))
    waiting = await scrape_until(hs, lambda s: s.value("sync_long_polls_active") == 1)
    assert waiting.value("sync_long_polls_active") == 1
    await alice.send(room_id, "wake up")
    body = await asyncio.wait_for(held, 10)
    assert room_id in body["rooms"]["join"]
    after = await scrape_until(hs, lambda s: s.value("sync_long_polls_active") == 0)
    assert after.value("sync_long_polls_active") == 0
    assert after.value("sync_wait_seconds_count", outcome="woken") >= 1
    assert after.value("sync_wait_seconds_count", outcome="timeout") == 0


async def test_a_long_poll_that_times_out_is_counted_as_a_timeout(hs, client):
    alice = await new_user(client, "alice")
    since = (await alice.call("GET", "/sync"))["next_batch"]
    # The first incremental syncs may still carry news of the new account (presence, device lists).
    for _ in range(5):
        since = (await alice.call("GET", "/sync", since=since, timeout="200"))["next_batch"]
        exported = await scrape(hs)
        if exported.value("sync_wait_seconds_count", outcome="timeout"):
            break
    assert exported.value("sync_wait_seconds_count", outcome="timeout") == 1
    assert exported.value("sync_wait_seconds_sum", outcome="timeout") > 0


async def test_a_push_for_a_down_gateway_shows_in_the_queue_until_delivered(make_homeserver):
    hs = await make_homeserver(outbound={"min_retry_interval_s": 0.1, "max_retry_interval_s": 0.2})
    gateway = PushGateway()
    gateway.answer = lambda body: (503, {"error": "down"})
    await gateway.start()
    try:
        async with aiohttp.ClientSession(hs.base_url("client")) as client:
            alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
            room_id = await alice.create_room(preset="public_chat")
            await bob.join(room_id)
            await bob.call("POST", "/pushers/set", pusher_body(gateway.url))
            await alice.send(room_id, "are you there?")
            queued = await scrape_until(hs, lambda s: s.value("outbound_queue_items", kind="pusher") == 1
                                        and s.value("outbound_failures_total", kind="pusher") >= 1)
            assert queued.value("outbound_queue_items", kind="pusher") == 1
            assert queued.value("outbound_failures_total", kind="pusher") >= 1
            gateway.answer = lambda body: (200, {"rejected": []})
            drained = await scrape_until(hs, lambda s: s.value("outbound_queue_items", kind="pusher") == 0
                                         and s.value("outbound_items_total", kind="pusher", outcome="sent") == 1)
            assert drained.value("outbound_queue_items", kind="pusher") == 0
            assert drained.value("outbound_items_total", kind="pusher", outcome="sent") == 1
            assert drained.value("outbound_last_success_timestamp_seconds", kind="pusher") > 0
    finally:
        await gateway.stop()


async def test_sending_moves_persistence_database_and_cache_metrics(hs, client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    before = await scrape(hs)
    event_id = await alice.send(room_id, "counted")
    for _ in range(2):
        await alice.call("GET", f"/rooms/{quote(room_id)}/event/{quote(event_id)}")
    after = await scrape(hs)
    assert after.value("event_persist_batch_size_sum") >= before.value("event_persist_batch_size_sum") + 1
    assert after.value("event_persist_seconds_count") > before.value("event_persist_seconds_count")
    assert after.value("cache_hits_total", cache="events") > before.value("cache_hits_total", cache="events")
    assert after.value("cache_hits_total", cache="access_tokens") > before.value("cache_hits_total",
                                                                                 cache="access_tokens")
    assert after.value("cache_entries", cache="events") >= 1
    assert after.value("db_transactions_total") > before.value("db_transactions_total")
    assert after.value("db_transaction_duration_seconds_count", kind="write") > \
        before.value("db_transaction_duration_seconds_count", kind="write")
    assert after.value("db_statements_total") > before.value("db_statements_total")
    assert after.value("db_pool_connections") >= 1
    assert after.value("process_resident_memory_bytes") > 0
    assert after.label_values("stream_stage_lag_events", "stage") >= {"push_evaluation", "pusher_handoff"}


async def test_registered_and_active_users_are_counted(hs, client):
    users = [await new_user(client, name) for name in ("alice", "bob", "carol")]
    await users[0].call("POST", "/account/deactivate", {"auth": {"type": "m.login.password",
                                                                 "user": users[0].user_id, "password": "correct horse"}})
    for user in users[1:]:
        await user.call("GET", "/account/whoami")
    await hs.auth.flush_last_seen()
    exported = await scrape(hs)
    assert exported.value("users_registered") == 2
    assert exported.value("users_daily_active") == 3
    assert exported.value("users_monthly_active") == 3

