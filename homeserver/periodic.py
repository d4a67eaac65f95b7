"""Background housekeeping: one loop for every "delete what is older than N, every hour" job."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


async def prune_periodically(prune: Callable[[], Awaitable[int]], what: str, interval_s: float, *,
                             first_delay_s: float = 0.0) -> None:
    """Run `prune()` every `interval_s` seconds (the first after `first_delay_s`), logging how many
    `what` it removed; a failed round is logged and the next one tries again. Runs until cancelled."""
    await asyncio.sleep(first_delay_s)
    while True:
        try:
            removed = await prune()
            if removed:
                logger.info("Pruned %d %s", removed, what)
        except Exception:
            logger.exception("Could not prune %s", what)
        await asyncio.sleep(interval_s)
