"""Free ports for test servers, chosen so that parallel test processes never pick the same one.

A port found by binding to port 0 comes from the kernel's ephemeral range, which every outgoing
connection draws from too; between finding it and the server binding it, another process (or a
client socket) may take it. Ports here come from below the ephemeral range (Linux: 32768-60999),
from a block of its own for each pytest-xdist worker, and are checked free before use.
"""

from __future__ import annotations

import os
import random
import socket

_BLOCK = 2500
_FIRST = 20000


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = worker[2:] if worker.startswith("gw") else "0"
    return int(digits) if digits.isdigit() else 0


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now, from this test process's own block."""
    start = _FIRST + (_worker_index() % 4) * _BLOCK
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        port = random.randrange(start, start + _BLOCK)
        with socket.socket(family) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}-{start + _BLOCK} on {host}")
