"""A push gateway that is down gets every notification once, in order, when it returns.

Delivery goes through the durable outbound queue, so this holds across a restart of our server
too. The outage is a few seconds with a short retry interval (several failed attempts each),
which exercises the same path as a minute with the default interval.
"""

from __future__ import annotations

import asyncio

import aiohttp

from homeserver.config import parse_config
from homeserver.server import HomeServer
from tests.conftest import make_test_config
from tests.push.helpers import PushGateway, pusher_body
from tests.support.rooms import new_user

RETRIES = {"min_retry_interval_s": 0.1, "max_retry_interval_s": 0.4}


def down(body):
    return 503, {"error": "down for maintenance"}


async def start_gateway() -> PushGateway:
    gateway = PushGateway()
    gateway.answer = down
    await gateway.start()
    return gateway


async def wait_for_failed_attempts(gateway: PushGateway, count: int) -> None:
    async def enough() -> None:
        while len(gateway.received) < count:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(enough(), 20)


def delivered_once_in_order(gateway: PushGateway, attempts_while_down: int) -> list[str]:
    return [n["notification"]["event_id"] for n in gateway.received[attempts_while_down:]]


async def test_a_gateway_down_for_a_while_gets_every_notification_once_in_order(make_homeserver):
    hs = await make_homeserver(outbound=RETRIES)
    gateway = await start_gateway()
    try:
        async with aiohttp.ClientSession(hs.base_url("client")) as client:
            alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
            room_id = await alice.create_room(preset="public_chat")
            await bob.join(room_id)
            await bob.call("POST", "/pushers/set", pusher_body(gateway.url))
            sent = [await alice.send(room_id, f"while down {i}") for i in range(5)]
            await wait_for_failed_attempts(gateway, 4)
            attempts = len(gateway.received)
            assert {n["notification"]["event_id"] for n in gateway.received} == {sent[0]}
            gateway.answer = lambda body: (200, {"rejected": []})
            await gateway.wait_for(attempts + 5)
            assert delivered_once_in_order(gateway, attempts) == sent
    finally:
        await gateway.stop()


async def test_notifications_queued_for_a_down_gateway_survive_a_restart(tmp_path, database_config):
    config = parse_config(make_test_config(tmp_path, database_config, outbound=RETRIES))
    gateway = await start_gateway()
    hs = HomeServer(config)
    await hs.start()
    try:
        async with aiohttp.ClientSession(hs.base_url("client")) as client:
            alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
            room_id = await alice.create_room(preset="public_chat")
            await bob.join(room_id)
            await bob.call("POST", "/pushers/set", pusher_body(gateway.url))
            sent = [await alice.send(room_id, f"before restart {i}") for i in range(3)]
            await wait_for_failed_attempts(gateway, 2)
        await hs.stop()

        hs = HomeServer(config)
        await hs.start()
        attempts = len(gateway.received)
        async with aiohttp.ClientSession(hs.base_url("client")) as client:
            alice.client = client
            sent.append(await alice.send(room_id, "after restart"))
            await wait_for_failed_attempts(gateway, attempts + 2)
            attempts = len(gateway.received)
            gateway.answer = lambda body: (200, {"rejected": []})
            await gateway.wait_for(attempts + 4)
            assert delivered_once_in_order(gateway, attempts) == sent
    finally:
        await hs.stop()
        await gateway.stop()
