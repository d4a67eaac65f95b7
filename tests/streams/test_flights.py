"""Flights: one read shared by the callers it is fresh enough for, and only by them."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.streams.flights import Flights


class CountingRead:
    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self) -> int:
        self.calls += 1
        value = self.calls
        await self.release.wait()
        return value


async def test_callers_arriving_together_share_one_read():
    flights, read = Flights(), CountingRead()
    tickets = [flights.ticket() for _ in range(5)]
    waiting = [asyncio.create_task(flights.run("k", t, read)) for t in tickets]
    await asyncio.sleep(0)
    read.release.set()
    assert await asyncio.gather(*waiting) == [1] * 5
    assert read.calls == 1
    assert flights.in_flight() == 0


async def test_a_caller_never_joins_a_read_that_began_before_its_ticket():
    flights, read = Flights(), CountingRead()
    early = asyncio.create_task(flights.run("k", flights.ticket(), read))
    await asyncio.sleep(0.01)  # the first read has begun
    late = asyncio.create_task(flights.run("k", flights.ticket(), read))
    await asyncio.sleep(0.01)
    read.release.set()
    assert await early == 1
    assert await late == 2
    assert read.calls == 2


async def test_different_keys_do_not_share():
    flights, read = Flights(), CountingRead()
    ticket = flights.ticket()
    both = asyncio.gather(flights.run("a", ticket, read), flights.run("b", ticket, read))
    await asyncio.sleep(0)
    read.release.set()
    assert sorted(await both) == [1, 2]


async def test_a_cancelled_caller_does_not_cancel_the_read_for_the_others():
    flights, read = Flights(), CountingRead()
    ticket = flights.ticket()
    leaving = asyncio.create_task(flights.run("k", ticket, read))
    staying = asyncio.create_task(flights.run("k", ticket, read))
    await asyncio.sleep(0.01)
    leaving.cancel()
    await asyncio.sleep(0.01)
    read.release.set()
    assert await staying == 1
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_an_error_reaches_every_caller_and_the_next_read_starts_afresh():
    flights = Flights()

    async def failing() -> int:
        await asyncio.sleep(0)
        raise RuntimeError("database gone")

    ticket = flights.ticket()
    results = await asyncio.gather(flights.run("k", ticket, failing), flights.run("k", ticket, failing),
                                   return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert flights.in_flight() == 0

    async def working() -> int:
        return 7

    assert await flights.run("k", flights.ticket(), working) == 7
