"""Federation destinations (Synapse's admin API): the servers we send to, their retry state, the
rooms they share with us, and resetting a destination's backoff.

Everything comes from the outbound queue's per-destination state for the `federation` kind
(storage/stores/outbound.py), mapped onto Synapse's fields:

- `retry_last_ts`: when the last attempt failed (0 while healthy);
- `retry_interval`: how long after that failure the next attempt is due (0 while healthy, or
  once a retry was brought forward);
- `failure_ts`: when the current run of failures began (null while healthy);
- `last_successful_stream_ordering`: the stream ordering of the newest event the destination
  accepted (null before the first).

Known destinations are the servers we have queued for, plus the servers with a user joined in
one of our rooms (those answer with a healthy, empty state, as Synapse does for a destination it
shares rooms with but never contacted). The list shows the former only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.errors import MatrixError, invalid_param, not_found
from storage.stores.federation_outbound import FEDERATION_KIND, FederationOutboundStore
from storage.stores.outbound import DestinationState, OutboundStore

ORDER_BY = ("destination", "retry_last_ts", "retry_interval", "failure_ts", "last_successful_stream_ordering")

# (kind, destination) -> clear the backoff and deliver what is queued now.
RetryNow = Callable[[str, str], Awaitable[None]]


def destination_json(state: DestinationState | None, destination: str) -> dict[str, Any]:
    if state is None or state.failures <= 0:
        retry_last_ts, retry_interval, failure_ts = 0, 0, None
    else:
        retry_last_ts = int(state.last_failure_ts or 0)
        retry_interval = max(0, int(state.retry_at_ts) - retry_last_ts) if retry_last_ts else 0
        failure_ts = state.failing_since_ts if state.failing_since_ts is not None else state.last_failure_ts
    return {
        "destination": destination,
        "retry_last_ts": retry_last_ts,
        "retry_interval": retry_interval,
        "failure_ts": failure_ts,
        "last_successful_stream_ordering": state.last_stream_ordering if state is not None else None,
    }


def _page(items: list[Any], offset: int, limit: int) -> tuple[list[Any], str | None]:
    page = items[offset:offset + limit]
    return page, (str(offset + len(page)) if offset + len(page) < len(items) else None)


class AdminFederationService:
    def __init__(self, server_name: str, outbound: OutboundStore, federation: FederationOutboundStore,
                 retry_now: RetryNow):
        self._server_name = server_name
        self._outbound = outbound
        self._federation = federation
        self._retry_now = retry_now

    async def _states(self) -> dict[str, DestinationState]:
        return {state.destination: state for state in await self._outbound.destinations(FEDERATION_KIND)
                if state.destination != self._server_name}

    async def _known(self, destination: str) -> tuple[DestinationState | None, list[tuple[str, int]]]:
        """The destination's queue state and shared rooms; 404 when it is neither queued for nor in a room."""
        if destination == self._server_name:
            raise not_found("Unknown destination")
        state = (await self._states()).get(destination)
        rooms = await self._federation.rooms_shared_with(destination)
        if state is None and not rooms:
            raise not_found("Unknown destination")
        return state, rooms

    async def list_destinations(self, *, offset: int, limit: int, order_by: str, backwards: bool,
                                search: str | None) -> dict[str, Any]:
        if order_by not in ORDER_BY:
            raise invalid_param(f"Query parameter 'order_by' must be one of {list(ORDER_BY)}")
        entries = [destination_json(state, name) for name, state in (await self._states()).items()]
        if search:
            needle = search.lower()
            entries = [entry for entry in entries if needle in entry["destination"].lower()]

        def key(entry: dict[str, Any]) -> tuple[Any, ...]:
            value = entry[order_by]
            # Nulls first going forwards (as SQLite sorts them); the name breaks ties.
            return (value is not None, value if value is not None else 0) if order_by != "destination" else (value,)

        entries.sort(key=lambda entry: entry["destination"])
        entries.sort(key=key, reverse=backwards)
        page, next_token = _page(entries, offset, limit)
        answer: dict[str, Any] = {"destinations": page, "total": len(entries)}
        if next_token is not None:
            answer["next_token"] = next_token
        return answer

    async def get_destination(self, destination: str) -> dict[str, Any]:
        state, _ = await self._known(destination)
        return destination_json(state, destination)

    async def destination_rooms(self, destination: str, *, offset: int, limit: int,
                                backwards: bool) -> dict[str, Any]:
        _, rooms = await self._known(destination)
        entries = [{"room_id": room_id, "stream_ordering": ordering} for room_id, ordering in rooms]
        if backwards:
            entries.reverse()
        page, next_token = _page(entries, offset, limit)
        answer: dict[str, Any] = {"rooms": page, "total": len(entries)}
        if next_token is not None:
            answer["next_token"] = next_token
        return answer

    async def reset_connection(self, destination: str) -> None:
        """Forget the destination's backoff and send what is queued for it now; 400 when it is not
        backing off (Synapse's answer)."""
        state, _ = await self._known(destination)
        if not destination_json(state, destination)["retry_last_ts"]:
            raise MatrixError(400, "M_UNKNOWN", "The retry timing does not need to be reset for this destination.")
        await self._retry_now(FEDERATION_KIND, destination)
