"""The legacy read endpoints older clients, bots and test tools still call, as Synapse serves them.

- `GET /events`: the event stream since a token, long-polling up to `timeout`; with `room_id`
  it peeks one room (a member's, or any world-readable one).
- `GET /events/{eventId}`: one event, if the requester may see it.
- `GET /initialSync`: every room the user is joined to or invited to (and left, with
  `archived=true`) with recent messages and state, plus global account data and receipts.
- `GET /rooms/{roomId}/initialSync`: the same snapshot for one room; former members see the
  room as it was when they left, anyone may peek a world-readable room.

Everything is built from the services /sync and /messages use: sync tokens name positions
(so `end` of /initialSync is a valid `from` for /events, and `messages.start` a valid `from`
for /messages), history visibility decides what is shown, and the notifier wakes a waiting
/events call. The event stream carries room events, then typing and receipt events (each
with its `room_id`); presence changes reach clients through /sync (the snapshots include the
presence of users sharing a room, as an initial /sync would).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from homeserver.requester import Requester
from homeserver.errors import MatrixError, not_found
from homeserver.events.event import Event
from homeserver.events.sync_filter import EventFilter
from homeserver.rooms.history import HistoryVisibilityFilter, RoomHistory
from homeserver.rooms.serialize import ClientEventSerializer
from homeserver.streams.notifier import Notifier
from homeserver.streams.sources import EphemeralSource, TopLevelSource
from homeserver.streams.client_tokens import PaginationToken, SyncToken, parse_sync_token
from storage.stores.account_data import TAG_TYPE, AccountDataStore
from storage.stores.events import EventStore
from storage.stores.timeline import Bound, TimelineRow, TimelineStore

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 60_000
# The beginning of every room: paginating backwards from here finds nothing.
ROOM_START = str(PaginationToken(0, 0))

CurrentToken = Callable[[], Awaitable[SyncToken]]
# (user_id, room_ids, from_position or None, to_position) -> {room_id: [m.receipt events]}
ReceiptsForRooms = Callable[[str, Sequence[str], int | None, int], Awaitable[dict[str, list[dict[str, Any]]]]]
# room_id -> whether it is published in the room directory
IsPublished = Callable[[str], Awaitable[bool | None]]
# (room_ids, after, upto) -> {room_id: newest stream position} for the rooms with events in the range
RoomsWithNewEvents = Callable[[Sequence[str], int, int], Awaitable[dict[str, int]]]


class LegacyRoomViews:
    def __init__(self, events: EventStore, timeline: TimelineStore, history: RoomHistory,
                 visibility: HistoryVisibilityFilter, serializer: ClientEventSerializer,
                 account_data: AccountDataStore, notifier: Notifier, current_token: CurrentToken,
                 receipts_for_rooms: ReceiptsForRooms, is_published: IsPublished,
                 rooms_with_new_events: RoomsWithNewEvents, presence: TopLevelSource | None = None,
                 ephemeral: Sequence[EphemeralSource] = ()):
        self._events = events
        self._timeline = timeline
        self._history = history
        self._visibility = visibility
        self._serializer = serializer
        self._account_data = account_data
        self._notifier = notifier
        self._current_token = current_token
        self._receipts_for_rooms = receipts_for_rooms
        self._is_published = is_published
        self._rooms_with_new_events = rooms_with_new_events
        self._presence = presence
        self._ephemeral = list(ephemeral)

    # --- GET /events/{eventId} ---------------------------------------------------------
    async def get_event(self, requester: Requester, event_id: str) -> dict[str, Any]:
        """One event the requester may see; 404 alike for unknown and hidden events."""
        event = await self._events.get_event(event_id)
        if event is None or event.rejected_reason is not None:
            raise not_found("Event not found")
        try:
            await self._history.check_can_read(requester.user_id, event.room_id)
        except MatrixError:
            raise not_found("Event not found") from None
        if not await self._visibility.filter(requester.user_id, [event]):
            raise not_found("Event not found")
        return await self._serializer.serialize_one(event, requester)

    # --- GET /events ---------------------------------------------------------------------
    async def event_stream(self, requester: Requester, *, from_token: str | None, timeout_ms: int,
                           room_id: str | None, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
        """Events after `from` (default: now) in the user's joined rooms, or in the one peeked room."""
        user_id = requester.user_id
        since = parse_sync_token(from_token, "from") if from_token else await self._current_token()
        limit = max(1, min(limit, MAX_LIMIT))
        if room_id is not None:
            await self._history.check_can_read(user_id, room_id)  # a member's room or a world-readable one
            rooms = [room_id]
        else:
            rooms = sorted(await self._events.get_rooms_for_user(user_id, ("join",)))
        timeout_s = max(0, min(timeout_ms, MAX_TIMEOUT_MS)) / 1000
        # Listen before looking, so an event landing between the look and the wait still wakes us.
        async with self._notifier.listen(user_id, rooms) as listener:
            chunk, end = await self._stream_page(requester, rooms, since, limit)
            if not chunk and timeout_s > 0 and await listener.wait(timeout_s):
                chunk, end = await self._stream_page(requester, rooms, since, limit)
        return {"chunk": chunk, "start": str(since), "end": str(end)}

    async def _stream_page(self, requester: Requester, rooms: Sequence[str], since: SyncToken,
                           limit: int) -> tuple[list[dict[str, Any]], SyncToken]:
        now = await self._current_token()
        ephemeral = await self._ephemeral_events(requester.user_id, rooms, since, now)
        start, upto = since.get("events"), now.get("events")
        if upto <= start or not rooms:
            return ephemeral, now if upto >= start else since
        per_room: dict[str, list[TimelineRow]] = {}
        end_stream = upto
        for room_id in sorted(await self._rooms_with_new_events(rooms, start, upto)):
            rows = await self._timeline.paginate(room_id, backwards=False, limit=limit,
                                                 from_bound=Bound(None, start), to_bound=Bound(None, upto))
            rows = [r for r in rows if start < r.stream_ordering <= upto]
            if rows:
                per_room[room_id] = rows
                if len(rows) >= limit:
                    # Later events of this room were not read: the page must end before them.
                    end_stream = min(end_stream, rows[-1].stream_ordering)
        merged = sorted((row for rows in per_room.values() for row in rows), key=lambda r: r.stream_ordering)
        merged = [row for row in merged if row.stream_ordering <= end_stream]
        if len(merged) > limit:
            merged = merged[:limit]
            end_stream = merged[-1].stream_ordering
        wanted = {row.event_id for row in merged}
        visible: list[Event] = []
        for rows in per_room.values():
            visible += await self._history.load_visible(requester.user_id, [r for r in rows if r.event_id in wanted])
        visible.sort(key=lambda e: e.internal_metadata.get("stream_ordering", 0))
        end = now.replace(events=end_stream) if end_stream < upto else now
        return await self._serializer.serialize(visible, requester) + ephemeral, end

    async def _ephemeral_events(self, user_id: str, rooms: Sequence[str], since: SyncToken,
                                now: SyncToken) -> list[dict[str, Any]]:
        """Typing and receipt events of the rooms that moved between the tokens, each naming its room."""
        out: list[dict[str, Any]] = []
        for source in self._ephemeral:
            before, after = since.get(source.stream), now.get(source.stream)
            if not rooms or after <= before:
                continue
            by_room = await source.get_events(user_id, rooms, before, after)
            out += [{**event, "room_id": room_id} for room_id in sorted(by_room) for event in by_room[room_id]]
        return out

    async def _presence_snapshot(self, user_id: str) -> list[dict[str, Any]]:
        """The m.presence events an initial /sync would carry: users sharing a room, not offline."""
        if self._presence is None:
            return []
        position = await self._presence.current_position()
        sections = await self._presence.get_sections(user_id, None, None, position)
        return list(sections.get("presence", {}).get("events", []))

    # --- GET /rooms/{roomId}/initialSync -------------------------------------------------
    async def room_initial_sync(self, requester: Requester, room_id: str, limit: int = DEFAULT_LIMIT
                                ) -> dict[str, Any]:
        user_id = requester.user_id
        membership, member_event_id = await self._events.get_membership(room_id, user_id)
        if membership not in ("join", "leave", "ban"):
            membership = None  # invited, knocking or never there: only a world-readable peek
        if membership is None:
            if await self._events.get_room_version_id(room_id) is None:
                raise not_found(f"Unknown room {room_id}")
            await self._history.check_can_read(user_id, room_id)  # 403 unless world-readable
        now = await self._current_token()
        result = await self._room_snapshot(requester, room_id, membership, member_event_id, now, limit)
        receipts = await self._receipts_for_rooms(user_id, [room_id], None, now.get("receipts"))
        result["receipts"] = [{**event, "room_id": room_id} for event in receipts.get(room_id, [])]
        result["presence"] = []
        if membership == "join":
            members = set(await self._events.get_members(room_id))
            result["presence"] = [e for e in await self._presence_snapshot(user_id) if e.get("sender") in members]
        changes = await self._account_data.get_changes(user_id, 0)
        result["account_data"] = _room_account_data(changes.room_data.get(room_id, {}))
        return result

    async def _room_snapshot(self, requester: Requester, room_id: str, membership: str | None,
                             member_event_id: str | None, now: SyncToken, limit: int) -> dict[str, Any]:
        """room_id, membership (absent when peeking), messages {chunk, start, end} and state."""
        left = membership in ("leave", "ban") and member_event_id is not None
        if left:
            assert member_event_id is not None
            state_ids = await self._events.get_state_after_event(member_event_id)
        else:
            state_ids = await self._events.get_current_state_ids(room_id)
        page = await self._history.messages(requester, room_id, from_token=None, to_token=None, direction="b",
                                            limit=max(0, min(limit, MAX_LIMIT)), event_filter=EventFilter())
        chunk = list(reversed(page["chunk"]))
        end = str(now)
        if left:
            position = await self._timeline.get_position(member_event_id or "")
            if position is not None:
                end = str(PaginationToken(*position[1]))
        state = await self._events.get_events(state_ids.values())
        ordered = [state[eid] for eid in sorted(state_ids.values()) if eid in state]
        snapshot: dict[str, Any] = {
            "room_id": room_id,
            "messages": {"chunk": chunk, "start": page.get("end", ROOM_START), "end": end},
            "state": await self._serializer.serialize(ordered, requester, bundle=False),
        }
        if membership is not None:
            snapshot["membership"] = membership
        return snapshot

    # --- GET /initialSync ------------------------------------------------------------------
    async def initial_sync(self, requester: Requester, *, limit: int = DEFAULT_LIMIT,
                           archived: bool = False) -> dict[str, Any]:
        user_id = requester.user_id
        memberships = ("join", "invite", "leave", "ban") if archived else ("join", "invite")
        rooms = await self._events.get_rooms_for_user(user_id, memberships)
        now = await self._current_token()
        changes = await self._account_data.get_changes(user_id, 0)
        joined = sorted(room for room, membership in rooms.items() if membership == "join")
        receipts = await self._receipts_for_rooms(user_id, joined, None, now.get("receipts"))
        out: list[dict[str, Any]] = []
        for room_id, membership in sorted(rooms.items()):
            entry: dict[str, Any] = {"room_id": room_id, "membership": membership,
                                     "visibility": "public" if await self._is_published(room_id) else "private"}
            if membership == "invite":
                _, invite_id = await self._events.get_membership(room_id, user_id)
                invite = await self._events.get_event(invite_id) if invite_id else None
                if invite is not None:
                    entry["inviter"] = invite.sender
                    entry["invite"] = await self._serializer.serialize_one(invite, requester, bundle=False)
                out.append(entry)
                continue
            _, member_event_id = await self._events.get_membership(room_id, user_id)
            entry.update(await self._room_snapshot(requester, room_id, membership, member_event_id, now, limit))
            entry["account_data"] = _room_account_data(changes.room_data.get(room_id, {}))
            out.append(entry)
        return {
            "rooms": out,
            "presence": await self._presence_snapshot(user_id),
            "account_data": [{"type": t, "content": c} for t, c in sorted(changes.global_data.items())],
            "receipts": [{**event, "room_id": room_id} for room_id in joined for event in receipts.get(room_id, [])],
            "end": str(now),
        }


def _room_account_data(room_data: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """A room's account data events, tags first (as Synapse lists them)."""
    ordered = sorted(room_data.items(), key=lambda item: (item[0] != TAG_TYPE, item[0]))
    return [{"type": data_type, "content": content} for data_type, content in ordered]
