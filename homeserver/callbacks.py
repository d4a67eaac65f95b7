"""Notifying listeners after a committed change: sync or async callbacks, failures only logged."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)


async def notify_listeners(callbacks: Iterable[Callable[..., Any]], *args: Any, what: str) -> None:
    """Call each callback with `args`, awaiting those that are coroutines.

    The change is already committed when listeners hear of it, so a failing listener is
    logged and must not turn the change into an error for the client.
    """
    for callback in callbacks:
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("%s callback %r failed for %r", what, callback, args[0] if args else None)
