"""Time, injected into services so tests and the pure core never read the wall clock themselves."""

from __future__ import annotations

import time


class Clock:
    def time_ms(self) -> int:
        return int(time.time() * 1000)

    def monotonic(self) -> float:
        return time.monotonic()
