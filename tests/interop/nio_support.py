"""matrix-nio clients for the interop scenarios: creation, registration and condition waits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import quote

import nio

PASSWORD = "correct horse battery staple"
# Every wait is bounded so that a server which never delivers fails the test instead of hanging it.
WAIT_SECONDS = 15.0

T = TypeVar("T")


def unique_localpart(prefix: str) -> str:
    """Localparts unique per run, because Synapse is shared by the whole session."""
    return f"{prefix}-{secrets.token_hex(4)}"


def client_config() -> nio.AsyncClientConfig:
    # No E2EE: these scenarios exercise rooms, sync and accounts; the crypto store would only add
    # key uploads that our server does not serve yet. Few retries: a server error must surface as one.
    return nio.AsyncClientConfig(
        encryption_enabled=False, store_sync_tokens=False, max_timeouts=2, max_limit_exceeded=0,
        request_timeout=30,
    )


@asynccontextmanager
async def nio_client(base_url: str) -> AsyncIterator[nio.AsyncClient]:
    """A nio client that is always closed, even when the scenario fails half-way."""
    client = nio.AsyncClient(base_url, config=client_config())
    try:
        yield client
    finally:
        await client.close()


def expect(response: Any, kind: type[T], action: str) -> T:
    """Return the response if nio parsed it as `kind`, or fail naming the action and the server's answer."""
    if not isinstance(response, kind):
        transport = getattr(response, "transport_response", None)
        status = getattr(transport, "status", "?")
        # nio turns a body it cannot validate into an "unknown error"; the body itself says why.
        # aiohttp keeps the body it already read on the response, there is no public getter.
        body = getattr(transport, "_body", None)
        shown = body.decode(errors="replace")[:500] if isinstance(body, bytes) else "?"
        raise AssertionError(
            f"{action}: nio wanted {kind.__name__} but made {type(response).__name__} "
            f"({getattr(response, 'message', '')}) of HTTP {status} {shown}"
        )
    return response


async def register_user(client: nio.AsyncClient, prefix: str) -> nio.RegisterResponse:
    """Register through nio's own flow (m.login.dummy on the first request) and stay logged in."""
    localpart = unique_localpart(prefix)
    response = await client.register(localpart, PASSWORD, device_name=f"{prefix} nio")
    return expect(response, nio.RegisterResponse, f"register {localpart}")


def user_path(user_id: str, *parts: str) -> str:
    quoted = "/".join(quote(part, safe="") for part in (user_id, *parts))
    return f"/_matrix/client/v3/user/{quoted}"


async def raw_json(client: nio.AsyncClient, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A request on the client's own HTTP session and token, for endpoints nio has no method for."""
    headers = {"Authorization": f"Bearer {client.access_token}", "Content-Type": "application/json"}
    data = None if body is None else json.dumps(body)
    response = await client.send(method, path, data, headers=headers)
    async with response:
        return response.status, await response.json(content_type=None)


class Observed:
    """What one client's sync loop has seen, with waits on conditions over it.

    Items are `(kind, room_id, event)` with kind one of "timeline", "invite", "ephemeral", "left",
    "synced" (one per sync response), and "sync-error" or "loop-died" (a sync failed or the loop raised;
    every wait then fails).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.items: list[tuple[str, str | None, Any]] = []
        self._changed = asyncio.Condition()

    def mark(self) -> int:
        """A position to wait from, so that only what is seen afterwards counts."""
        return len(self.items)

    async def record(self, kind: str, room_id: str | None, item: Any) -> None:
        async with self._changed:
            self.items.append((kind, room_id, item))
            self._changed.notify_all()

    async def wait_for(
        self,
        description: str,
        predicate: Callable[[str, str | None, Any], bool],
        since: int = 0,
        timeout: float = WAIT_SECONDS,
    ) -> Any:
        """The first item from position `since` matching the predicate; fails after `timeout` seconds."""
        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    while True:
                        for kind, room_id, item in self.items[since:]:
                            if kind in ("loop-died", "sync-error"):
                                raise AssertionError(f"{self.name}'s sync loop failed: {item}")
                            if predicate(kind, room_id, item):
                                return item
                        await self._changed.wait()
            except TimeoutError:
                seen = [(kind, type(item).__name__) for kind, _, item in self.items[-12:]]
                raise AssertionError(
                    f"{self.name} did not see {description} within {timeout:.0f}s; last seen: {seen}"
                ) from None


class SyncingClient:
    """A nio client whose own `sync_forever` loop feeds an `Observed` through nio's callbacks."""

    def __init__(self, name: str, client: nio.AsyncClient) -> None:
        self.name = name
        self.client = client
        self.seen = Observed(name)
        self._loop: asyncio.Task[None] | None = None
        self._death_note: asyncio.Task[None] | None = None
        client.add_event_callback(self._on_room_event, (nio.Event, nio.InviteEvent))
        client.add_ephemeral_callback(self._on_ephemeral, (nio.EphemeralEvent,))
        client.add_response_callback(self._on_sync, (nio.SyncResponse, nio.SyncError))

    async def _on_room_event(self, room: nio.MatrixRoom, event: Any) -> None:
        kind = "invite" if isinstance(room, nio.MatrixInvitedRoom) else "timeline"
        await self.seen.record(kind, room.room_id, event)

    async def _on_ephemeral(self, room: nio.MatrixRoom, event: Any) -> None:
        await self.seen.record("ephemeral", room.room_id, event)

    async def _on_sync(self, response: Any) -> None:
        if isinstance(response, nio.SyncError):
            # nio retries a failed sync at once, forever; against a working server there are none, so
            # the first one fails every wait instead of spinning until the timeout.
            status = getattr(response.transport_response, "status", "?")
            await self.seen.record("sync-error", None, f"HTTP {status} {response.status_code} {response.message}")
            return
        for room_id in response.rooms.leave:
            await self.seen.record("left", room_id, response.rooms.leave[room_id])
        await self.seen.record("synced", None, response.next_batch)

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # A done-callback cannot await; the recording task wakes any waiter so it fails at once.
            self._death_note = asyncio.get_running_loop().create_task(
                self.seen.record("loop-died", None, task.exception())
            )

    async def start(self, poll_timeout_ms: int = 10_000) -> None:
        """Start the sync loop and return once its first (initial) sync has been handled."""
        self._loop = asyncio.create_task(self.client.sync_forever(timeout=poll_timeout_ms))
        self._loop.add_done_callback(self._loop_ended)
        await self.seen.wait_for("its initial sync", lambda kind, _room, _item: kind == "synced")

    async def stop(self) -> None:
        if self._loop is None:
            return
        self._loop.cancel()
        # A loop that died has already failed the scenario through `seen`; re-raising here would
        # only hide that first failure behind this one.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._loop
