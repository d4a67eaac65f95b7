"""Diagnosing a test that hangs: every pending asyncio task's stack, logged.

A request that never answers fails a test by timeout with a traceback of the waiting client
only; the stacks of the server's tasks show what it waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator

logger = logging.getLogger(__name__)


def await_chain(task: asyncio.Task) -> list[str]:
    """Where a task waits: each coroutine it awaits, innermost last, then what that one awaits.
    (asyncio's own `print_stack` shows only a suspended task's outermost frame.)"""
    lines = []
    awaitable: object = task.get_coro()
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is None:
            lines.append(f"  awaiting {awaitable!r:.300}")
            break
        lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
    return lines


def log_pending_tasks(reason: str) -> None:
    out = io.StringIO()
    tasks = [task for task in asyncio.all_tasks() if not task.done()]
    for task in tasks:
        state = "cancelling" if task.cancelling() else "pending"
        print(f"--- {task.get_name()} ({state})", file=out)
        print("\n".join(await_chain(task)), file=out)
    logger.error("%s; %d pending task(s):\n%s", reason, len(tasks), out.getvalue())


@contextlib.asynccontextmanager
async def dump_tasks_on_timeout(seconds: float, what: str) -> AsyncIterator[None]:
    """Raise TimeoutError after `seconds`, having logged every pending task's stack."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        log_pending_tasks(f"{what} took over {seconds:.0f}s")
        raise
