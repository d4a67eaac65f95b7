"""One mechanism for "after this commits, tell whoever cares".

Services receive the bus in their constructor and `publish` an update (see `updates`) once
the change is durable. `homeserver/server.py` — and only it — decides who hears what with
`subscribe`, so the services that publish never know their consumers and construction order
never changes behaviour. Consumers run in subscription order, one after another; a failing
consumer is logged and the others still run, because the change is already committed.
"""

from __future__ import annotations

import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

U = TypeVar("U")
Consumer = Callable[[U], "Awaitable[None] | None"]


class StreamBus:
    def __init__(self) -> None:
        self._consumers: dict[type, list[Consumer[Any]]] = defaultdict(list)

    def subscribe(self, kind: type[U], consumer: Consumer[U]) -> None:
        """Call `consumer(update)` for every published update of class `kind`."""
        self._consumers[kind].append(consumer)

    def has_consumers(self, kind: type) -> bool:
        return bool(self._consumers.get(kind))

    async def publish(self, update: object) -> None:
        """Hand a committed update to its consumers, in subscription order."""
        for consumer in self._consumers.get(type(update), ()):
            try:
                result = consumer(update)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("consumer %r failed for %r", consumer, type(update).__name__)
