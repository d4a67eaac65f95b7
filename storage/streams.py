"""Stream positions: monotonically increasing counters kept in the `stream_positions` table.

Positions are allocated inside the writing transaction by bumping the stream's row, which both
engines lock until commit. Transactions that allocate therefore commit in allocation order, so a
reader never sees position N+1 while N is still invisible: the current position of a stream is
simply its row. On PostgreSQL, run allocating interactions with `isolation="read_committed"`:
under the default repeatable-read isolation two concurrent allocators conflict and one is retried.

Backfilled history takes positions from a second counter that runs downwards from 0 (the
`events_backfill` stream), so backfill never disturbs the forward positions clients hold.
"""

from __future__ import annotations

from storage.database import Transaction

EVENTS = "events"
EVENTS_BACKFILL = "events_backfill"


async def allocate_stream_positions(
    txn: Transaction, stream: str, count: int = 1, *, backwards: bool = False
) -> list[int]:
    """Reserve `count` new positions on `stream`, in the order they should be used."""
    if count < 1:
        raise ValueError("count must be at least 1")
    step = -count if backwards else count
    new_position = await txn.fetch_value(
        "INSERT INTO stream_positions (stream_name, position) VALUES (?, ?)"
        " ON CONFLICT (stream_name) DO UPDATE SET position = stream_positions.position + excluded.position"
        " RETURNING position",
        (stream, step),
    )
    if backwards:
        return list(range(new_position + count - 1, new_position - 1, -1))
    return list(range(new_position - count + 1, new_position + 1))


async def get_stream_position(txn: Transaction, stream: str) -> int:
    """The last position allocated on `stream` (0 when none has been)."""
    position = await txn.fetch_value("SELECT position FROM stream_positions WHERE stream_name = ?", (stream,))
    return 0 if position is None else int(position)
