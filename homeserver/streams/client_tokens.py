"""Sync and pagination tokens.

A sync token is the vector of every stream's position, `s{events}_{account_data}_...`
in the order of `STREAMS`; missing trailing parts read as 0 so new streams can be
appended without invalidating tokens clients hold. A pagination token is
`t{depth}-{stream}` (a position in the room's topological order), and /messages also
accepts a sync token, which names a stream position only.
"""

from __future__ import annotations

import dataclasses

from homeserver.client_input import parse_int_text
from homeserver.errors import MatrixError, invalid_param

STREAMS = ("events", "account_data", "receipts", "typing", "to_device", "device_lists", "presence", "push_rules")


@dataclasses.dataclass(frozen=True)
class SyncToken:
    positions: tuple[int, ...]

    def get(self, stream: str) -> int:
        return self.positions[STREAMS.index(stream)]

    def replace(self, **changes: int) -> SyncToken:
        values = list(self.positions)
        for stream, value in changes.items():
            values[STREAMS.index(stream)] = value
        return SyncToken(tuple(values))

    def __str__(self) -> str:
        return "s" + "_".join(str(p) for p in self.positions)

    @classmethod
    def zero(cls) -> SyncToken:
        return cls((0,) * len(STREAMS))


def parse_sync_token(text: str, field: str = "since") -> SyncToken:
    if not isinstance(text, str) or not text.startswith("s"):
        raise invalid_param(f"{field}: not a valid sync token")
    try:
        values = [parse_int_text(part, field, minimum=0) for part in text[1:].split("_")]
    except MatrixError:
        raise invalid_param(f"{field}: not a valid sync token") from None
    if len(values) > len(STREAMS) or any(v < 0 for v in values):
        raise invalid_param(f"{field}: not a valid sync token")
    values += [0] * (len(STREAMS) - len(values))
    return SyncToken(tuple(values))


@dataclasses.dataclass(frozen=True)
class PaginationToken:
    """A position in a room: topological (depth), then stream. `depth` None means 'stream only'."""

    depth: int | None
    stream: int

    def __str__(self) -> str:
        if self.depth is None:
            return f"s{self.stream}"
        return f"t{self.depth}-{self.stream}"


def parse_pagination_token(text: str, field: str = "from") -> PaginationToken:
    if text.startswith("t"):
        depth_text, sep, stream_text = text[1:].partition("-")
        try:
            if not sep:
                raise ValueError
            # The stream part is negative for history backfilled from other servers (events_backfill).
            return PaginationToken(parse_int_text(depth_text, field), parse_int_text(stream_text, field))
        except (ValueError, MatrixError):
            raise invalid_param(f"{field}: not a valid pagination token") from None
    return PaginationToken(None, parse_sync_token(text, field).get("events"))


def parse_stream_position(text: str, field: str = "at") -> int:
    return parse_pagination_token(text, field).stream
