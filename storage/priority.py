"""Which reads may wait: those made in bulk in the background of a client's request queue last.

A wake of a thousand /sync long polls issues thousands of reads at once. Were the reader
connections (SQLite) or read slots (PostgreSQL) handed out first come, first served, a send
arriving just after the wake would queue its own few reads (its transaction ID, its room's
state) behind all of them, and its acknowledgement would wait seconds for sync traffic. Code
that reads in bulk for a long poll marks its task with `bulk_reads()`; the engines hand a freed
connection to a waiting unmarked read first. Marked reads still run whenever nothing else waits,
so they are never refused, only ordered. Tasks inherit the mark from the context that created them.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

_bulk: contextvars.ContextVar[bool] = contextvars.ContextVar("bulk_reads", default=False)


def bulk_reads() -> None:
    """Mark the current task (and the tasks it creates from now on) as reading in bulk."""
    _bulk.set(True)


def reads_in_bulk() -> bool:
    return _bulk.get()


class PriorityPool(Generic[T]):
    """Items (connections, slots) lent out one caller at a time; a freed item goes to the
    longest-waiting unmarked caller, else to the longest-waiting bulk one."""

    def __init__(self, items: Iterable[T] = ()) -> None:
        self._idle: deque[T] = deque(items)
        # Waiters: [0] unmarked (urgent), [1] bulk.
        self._waiters: tuple[deque[asyncio.Future[T]], deque[asyncio.Future[T]]] = (deque(), deque())

    def add(self, item: T) -> None:
        self.release(item)

    def idle_count(self) -> int:
        return len(self._idle)

    def has_waiters(self) -> bool:
        return any(w for queue in self._waiters for w in queue if not w.done())

    async def acquire(self) -> T:
        if self._idle:
            return self._idle.popleft()
        queue = self._waiters[1 if _bulk.get() else 0]
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Handed an item just as the caller went away: pass it on.
                self.release(waiter.result())
            else:
                try:
                    queue.remove(waiter)
                except ValueError:
                    pass
            raise

    def release(self, item: T) -> None:
        for queue in self._waiters:
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(item)
                    return
        self._idle.append(item)
