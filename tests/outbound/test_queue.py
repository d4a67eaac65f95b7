"""The durable outbound queue over real storage: order, transactions, retries, restarts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from homeserver.clock import Clock
from homeserver.outbound.queue import OutboundQueue, PermanentDeliveryError
from storage.stores.outbound import OutboundStore

KIND = "test"


class RecordingCourier:
    """Records every transaction attempt; fails while `failing` names the destination."""

    def __init__(self, max_items: int = 3) -> None:
        self.max_items = max_items
        self.attempts: list[tuple[str, str, list[Any]]] = []
        self.delivered: list[tuple[str, str, list[Any]]] = []
        self.failing: set[str] = set()
        self.refusing: set[str] = set()
        self.arrived = asyncio.Event()
        self.hold: asyncio.Event | None = None  # when set, attempts wait for it

    async def deliver(self, destination: str, txn_id: str, items: list[dict[str, Any]]) -> None:
        self.attempts.append((destination, txn_id, [i["n"] for i in items]))
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        if destination in self.refusing:
            raise PermanentDeliveryError("refused")
        if destination in self.failing:
            raise ConnectionError("down")
        self.delivered.append((destination, txn_id, [i["n"] for i in items]))

    async def wait_delivered(self, count: int, timeout: float = 10.0) -> None:
        async def enough() -> None:
            while sum(len(items) for _, _, items in self.delivered) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)


def new_queue(hs, courier: RecordingCourier) -> OutboundQueue:
    return OutboundQueue(OutboundStore(hs.db), Clock(), {KIND: courier}, min_retry_s=0.05, max_retry_s=0.2)


@pytest.fixture
async def queue_and_courier(hs):
    courier = RecordingCourier()
    queue = new_queue(hs, courier)
    await queue.start()
    yield queue, courier
    await queue.stop()


async def test_items_arrive_in_order_in_transactions_of_at_most_max_items(queue_and_courier):
    queue, courier = queue_and_courier
    for n in range(7):
        await queue.enqueue(KIND, "a.example", [{"n": n}])
    await courier.wait_delivered(7)
    delivered = [n for _, _, items in courier.delivered for n in items]
    assert delivered == list(range(7))
    assert all(len(items) <= 3 for _, _, items in courier.delivered)
    txn_ids = [txn for _, txn, _ in courier.delivered]
    assert len(set(txn_ids)) == len(txn_ids)


async def test_a_failed_transaction_is_retried_with_the_same_id_and_items(queue_and_courier):
    queue, courier = queue_and_courier
    courier.failing.add("b.example")
    await queue.enqueue(KIND, "b.example", [{"n": 1}, {"n": 2}])
    while len(courier.attempts) < 3:
        courier.arrived.clear()
        await asyncio.wait_for(courier.arrived.wait(), 5)
    await queue.enqueue(KIND, "b.example", [{"n": 3}])
    courier.failing.clear()
    await courier.wait_delivered(3)
    first_txn = courier.attempts[0][1]
    assert {txn for _, txn, items in courier.attempts if items == [1, 2]} == {first_txn}
    assert [items for _, _, items in courier.delivered] == [[1, 2], [3]]


async def test_a_restarted_queue_resends_the_unfinished_transaction_under_its_id(hs):
    courier = RecordingCourier()
    courier.failing.add("c.example")
    queue = new_queue(hs, courier)
    await queue.start()
    await queue.enqueue(KIND, "c.example", [{"n": 1}, {"n": 2}])
    while not courier.attempts:
        courier.arrived.clear()
        await asyncio.wait_for(courier.arrived.wait(), 5)
    await queue.stop()
    first_txn = courier.attempts[0][1]

    after_restart = RecordingCourier()
    queue = new_queue(hs, after_restart)
    await queue.start()
    try:
        await after_restart.wait_delivered(2)
    finally:
        await queue.stop()
    assert after_restart.delivered == [("c.example", first_txn, [1, 2])]


async def test_a_failing_destination_does_not_hold_up_another(queue_and_courier):
    queue, courier = queue_and_courier
    courier.failing.add("down.example")
    await queue.enqueue(KIND, "down.example", [{"n": 1}])
    await queue.enqueue(KIND, "up.example", [{"n": 2}])
    await courier.wait_delivered(1)
    assert courier.delivered == [("up.example", courier.delivered[0][1], [2])]


async def test_a_permanent_refusal_drops_the_transaction_and_delivery_moves_on(queue_and_courier, hs):
    queue, courier = queue_and_courier
    courier.refusing.add("d.example")
    await queue.enqueue(KIND, "d.example", [{"n": 1}, {"n": 2}, {"n": 3}])
    await queue.enqueue(KIND, "d.example", [{"n": 4}])
    while len(courier.attempts) < 2:
        courier.arrived.clear()
        await asyncio.wait_for(courier.arrived.wait(), 5)
    assert [items for _, _, items in courier.attempts] == [[1, 2, 3], [4]]
    await asyncio.sleep(0.2)
    assert await OutboundStore(hs.db).queue_length(KIND, "d.example") == 0


async def test_backoff_and_last_success_are_recorded_per_destination(queue_and_courier, hs):
    queue, courier = queue_and_courier
    courier.failing.add("e.example")
    await queue.enqueue(KIND, "e.example", [{"n": 1}])
    while len(courier.attempts) < 2:
        courier.arrived.clear()
        await asyncio.wait_for(courier.arrived.wait(), 5)
    states = {s.destination: s for s in await OutboundStore(hs.db).destinations(KIND)}
    assert states["e.example"].failures >= 1 and states["e.example"].last_error == "down"
    assert states["e.example"].queued == 1
    courier.failing.clear()
    await courier.wait_delivered(1)
    await asyncio.sleep(0.1)
    states = {s.destination: s for s in await OutboundStore(hs.db).destinations(KIND)}
    assert states["e.example"].failures == 0 and states["e.example"].last_success_ts is not None
    assert states["e.example"].queued == 0


async def test_retry_now_ends_a_long_backoff_at_once(hs):
    courier = RecordingCourier()
    queue = OutboundQueue(OutboundStore(hs.db), Clock(), {KIND: courier}, min_retry_s=3600, max_retry_s=3600)
    await queue.start()
    try:
        courier.failing.add("f.example")
        await queue.enqueue(KIND, "f.example", [{"n": 1}])
        await asyncio.wait_for(courier.arrived.wait(), 5)
        while (await OutboundStore(hs.db).get_backoff(KIND, "f.example"))[0] == 0:
            await asyncio.sleep(0.01)  # the failure is being recorded
        courier.failing.clear()
        await queue.retry_now(KIND, "f.example")
        await courier.wait_delivered(1, timeout=5)
    finally:
        await queue.stop()


async def test_retry_now_neither_waits_for_nor_doubles_a_transaction_in_flight(queue_and_courier):
    queue, courier = queue_and_courier
    courier.hold = asyncio.Event()
    await queue.enqueue(KIND, "g.example", [{"n": 1}])
    await asyncio.wait_for(courier.arrived.wait(), 5)
    # The destination calls us while our transaction to it is still on its way.
    await asyncio.wait_for(queue.retry_now(KIND, "g.example"), 5)
    await asyncio.sleep(0.1)
    assert len(courier.attempts) == 1
    courier.hold.set()
    await courier.wait_delivered(1)
    await asyncio.sleep(0.1)
    assert [items for _, _, items in courier.delivered] == [[1]]
