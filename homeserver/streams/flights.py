"""Sharing one read among the callers that want the same answer at the same moment.

A message in a busy room wakes every device of every member at once. Most of what those wakes
compute is the same for all devices of a user waiting at the same token (the rooms, their
timelines, account data), and the stream positions are the same for everyone. `Flights` runs
such a computation once per key and hands its result to every caller that asked for it — but
only to callers for whom it is fresh enough: a caller holds a ticket taken after it registered
with the notifier, and may only join a run that began after that ticket. Anything committed
before a run began is in its result; anything committed after wakes the caller again. A run that
began earlier (it may have missed a commit the caller must see) is not joined; a new one starts.

/sync uses it for the current token and for the user-wide part of a response shared by the
user's devices; the key counts of all a user's devices are read once the same way.

Runs execute as their own tasks, so a caller that goes away (client disconnected) does not
cancel the others' result.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class _Run:
    __slots__ = ("started", "task")

    def __init__(self) -> None:
        # The ticket current when the run began reading; None until its task first runs.
        self.started: int | None = None
        self.task: asyncio.Task[Any] | None = None


class Flights:
    def __init__(self) -> None:
        self._tickets = itertools.count(1)
        self._runs: dict[Hashable, _Run] = {}

    def ticket(self) -> int:
        """A ticket for a caller that has just registered for wake-ups."""
        return next(self._tickets)

    async def run(self, key: Hashable, ticket: int, compute: Callable[[], Awaitable[T]]) -> T:
        """`compute()`'s result, shared with every caller of `key` whose ticket the run postdates."""
        current = self._runs.get(key)
        if current is None or (current.started is not None and current.started <= ticket):
            current = _Run()
            current.task = asyncio.ensure_future(self._execute(key, current, compute))
            # Every caller may have gone: the error is then logged by nobody, so mark it seen here.
            current.task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._runs[key] = current
        assert current.task is not None
        return await asyncio.shield(current.task)

    async def _execute(self, key: Hashable, run: _Run, compute: Callable[[], Awaitable[T]]) -> T:
        run.started = next(self._tickets)
        try:
            return await compute()
        finally:
            if self._runs.get(key) is run:
                del self._runs[key]

    def in_flight(self) -> int:
        return len(self._runs)
