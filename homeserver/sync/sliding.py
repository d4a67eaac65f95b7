"""Simplified sliding sync: a windowed, recency-sorted room list over the same streams as /sync.

A request names lists (filtered, sorted by `bump_stamp`, cut to `ranges`), room subscriptions
and extensions. The engine answers each room the client has not seen (or whose configuration
grew) in full, and otherwise only with what happened since the client last had it; a room that
left every window keeps the position it was last sent at, so it is caught up when it comes back.

Per-connection state — which rooms were sent, up to where, with which `required_state` — is
kept in memory and stored in the database behind each response, per room (only the rooms whose
entry changed are written; `sliding_state`), so a client continues after a restart. Positions
not used for `CONNECTION_EXPIRY_MS` are pruned; a position the server does not know is answered
with M_UNKNOWN_POS and the client starts over. Reading timelines, state, invites and ephemeral data reuses the /sync v2
engine's building blocks and the sources registered in `homeserver/server.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from homeserver.clock import Clock
from homeserver.errors import MatrixError, invalid_param
from homeserver.events.event import Event
from homeserver.events.sync_filter import parse_sync_filter
from homeserver.periodic import prune_periodically
from homeserver.push.push_rules import PUSH_RULES_ACCOUNT_DATA_TYPE, PushRulesService
from homeserver.requester import Requester
from homeserver.rooms.serialize import ClientEventSerializer
from homeserver.streams.client_tokens import SyncToken
from homeserver.streams.notifier import Notifier
from homeserver.streams.sources import DELIVERED_UPTO, EphemeralSource, RoomFieldsProvider, TopLevelSource
from homeserver.streams.updates import EventPersisted, RoomPurged
from homeserver.sync import rendering
from homeserver.sync.handler import SyncService
from homeserver.sync.room_list import INVITE, JOIN, KNOCK, LEAVE, RoomSyncEntry
from homeserver.sync.sliding_request import (
    ExtensionConfig,
    ListFilters,
    RoomConfig,
    SlidingSyncBody,
    lazy_members,
    state_key_matches,
    wanted_state_keys,
)
from homeserver.sync.sliding_state import (
    Position,
    SentRoom,
    UnreadableState,
    decode_position,
    encode_counts,
    room_changes,
)
from homeserver.sync.timeline import Timeline, TimelineReader, event_position
from storage.stores.account_data import TAG_TYPE, AccountDataStore
from storage.stores.events import EventStore
from storage.stores.sliding_sync import NewPosition, RoomRow, SlidingSyncStore
from storage.stores.sync import MembershipRow, SyncStore

logger = logging.getLogger(__name__)

# The events that move a room up the list (MSC4186): what people would call activity.
BUMP_EVENT_TYPES = ("m.room.create", "m.room.message", "m.room.encrypted", "m.sticker", "m.call.invite",
                    "m.poll.start", "m.beacon_info")
DIRECT_TYPE = "m.direct"
MAX_CONNECTIONS = 10_000
BUMP_CACHE_ROOMS = 200_000
# Users whose room memberships are remembered between builds (see `_memberships_at`).
MEMBERSHIP_MEMO_USERS = 2_000
MAX_CONNECTIONS_PER_USER = 50
# As Synapse: a connection not used for a week is forgotten.
CONNECTION_EXPIRY_MS = 7 * 24 * 3600 * 1000
PRUNE_INTERVAL_S = 3600.0
FIRST_PRUNE_DELAY_S = 60.0
SECTIONS = {"join": JOIN, "invite": INVITE, "knock": KNOCK, "leave": LEAVE, "ban": LEAVE}


def unknown_pos() -> MatrixError:
    return MatrixError(400, "M_UNKNOWN_POS", "Unknown position; start a new connection")


@dataclass
class _Connection:
    positions: OrderedDict[str, Position] = field(default_factory=OrderedDict)
    used_ms: int = 0
    # Write-behind to the database: `positions` differs from the stored rows while `dirty`;
    # `stored` names the positions already written; `fresh` asks the next write to apply the
    # per-user connection limit (a new connection).
    dirty: bool = False
    fresh: bool = False
    stored: set[str] = field(default_factory=set)
    writer: asyncio.Task[None] | None = None
    # The rooms the stored rows read as at their newest generation: a write adds rows for what
    # differs from it. `reset` (a new connection under this ID) drops every stored row first;
    # `drop_above` drops the rows above a generation (a branch the client left, seen when the
    # connection was loaded from the database at an older position).
    head: Position | None = None
    reset: bool = False
    drop_above: int | None = None
    next_gen: int = 1


@dataclass
class _RoomPlan:
    room_id: str
    row: MembershipRow
    config: RoomConfig
    sent: SentRoom | None
    upto: int
    initial: bool = False
    expanded: bool = False
    added_state: frozenset[tuple[str, str]] = frozenset()
    render: bool = True


@dataclass
class _Context:
    """Per-user facts the list filters and room bodies share, loaded once per request."""

    direct_rooms: frozenset[str] = frozenset()
    room_types: dict[str, str | None] = field(default_factory=dict)
    encrypted: set[str] = field(default_factory=set)
    tags: dict[str, frozenset[str]] = field(default_factory=dict)
    space_children: dict[str, set[str]] = field(default_factory=dict)


class SlidingSyncService:
    def __init__(self, sync: SyncService, events: EventStore, store: SyncStore, sliding_store: SlidingSyncStore,
                 serializer: ClientEventSerializer, account_data: AccountDataStore, push_rules: PushRulesService,
                 notifier: Notifier, *, typing: EphemeralSource, receipts: EphemeralSource,
                 to_device: TopLevelSource, device_lists: TopLevelSource, room_fields: RoomFieldsProvider,
                 clock: Clock):
        self._sync = sync
        self._events = events
        self._store = store
        self._sliding_store = sliding_store
        self._serializer = serializer
        self._account_data = account_data
        self._push_rules = push_rules
        self._notifier = notifier
        self._typing = typing
        self._receipts = receipts
        self._to_device = to_device
        self._device_lists = device_lists
        self._room_fields = room_fields
        self._clock = clock
        self._pruner: asyncio.Task[None] | None = None
        self._timeline_reader = TimelineReader(events, store)
        # Positions name this process so that no position handed out before a restart is handed out again.
        self._instance = secrets.token_hex(4)
        self._counter = itertools.count(1)
        self._connections: OrderedDict[tuple[str, str | None, str], _Connection] = OrderedDict()
        # room_id -> position of its newest bump event, kept current from the events stream;
        # rooms missing here are read from the database once.
        self._bump_cache: OrderedDict[str, int] = OrderedDict()
        # user_id -> (position, memberships as of it): a woken long poll then asks only whether the
        # user's membership changed since, instead of reading every room they are in again.
        self._membership_memo: OrderedDict[str, tuple[int, Mapping[str, MembershipRow]]] = OrderedDict()
        # Bumped whenever current state moves a membership; a read that saw it move meanwhile is not kept.
        self._membership_moves = 0

    def on_room_purged(self, _: RoomPurged) -> None:
        """Bus consumer: a purge deleted memberships outside the persister; nobody's memo holds."""
        self._membership_memo.clear()
        self._membership_moves += 1

    def on_event_persisted(self, update: EventPersisted) -> None:
        """Bus consumer: a new bump event moves its room up every list; a membership that moved in
        current state (a state reset included, which writes no membership event) forgets the memo."""
        position = update.context.stream_ordering
        event = update.event
        for event_type, state_key in update.context.current_state_delta or ():
            if event_type == "m.room.member":
                self._membership_memo.pop(state_key, None)
                self._membership_moves += 1
        if (position <= 0 or event.type not in BUMP_EVENT_TYPES or event.rejected_reason is not None
                or event.internal_metadata.get("outlier")):
            return
        room_id = event.room_id
        self._bump_cache[room_id] = max(self._bump_cache.get(room_id, 0), position)
        self._bump_cache.move_to_end(room_id)
        self._trim_bump_cache()

    def _trim_bump_cache(self) -> None:
        while len(self._bump_cache) > BUMP_CACHE_ROOMS:
            self._bump_cache.popitem(last=False)

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._pruner = asyncio.create_task(prune_periodically(
            self.prune_connections, "sliding sync positions of expired connections", PRUNE_INTERVAL_S,
            first_delay_s=FIRST_PRUNE_DELAY_S))

    async def stop(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            self._pruner = None
        await self.flush()

    async def flush(self) -> None:
        """Wait until every connection's positions are in the database."""
        for key, connection in list(self._connections.items()):
            if connection.writer is not None:
                await asyncio.gather(connection.writer, return_exceptions=True)
            if connection.dirty:
                await self._write(key, connection)

    async def prune_connections(self) -> int:
        """Forget positions older than the connection expiry; returns how many went."""
        await self.flush()
        cutoff = self._clock.time_ms() - CONNECTION_EXPIRY_MS
        for key in [k for k, c in self._connections.items() if c.used_ms < cutoff]:
            del self._connections[key]
        return await self._sliding_store.prune_positions(cutoff)


    # --- connections -------------------------------------------------------------------------
    async def _previous(self, key: tuple[str, str | None, str], pos: str | None) -> Position | None:
        if pos is None:
            # A new connection replaces any old one with the same ID (in the database when it is saved).
            connection = self._connections.get(key)
            if connection is not None:
                connection.positions.clear()
                connection.fresh = connection.reset = True
                connection.drop_above = None
                connection.next_gen = 1
            return None
        connection = self._connections.get(key)
        if connection is not None:
            # Memory is ahead of the database (write-behind): it decides for connections it has.
            if pos not in connection.positions:
                raise unknown_pos()
            return connection.positions[pos]
        stored = await self._sliding_store.get_position(*key, pos)
        if stored is None:
            raise unknown_pos()
        try:
            position = decode_position(stored.token, stored.counts, stored.gen, stored.rooms)
        except UnreadableState as error:
            logger.warning("Unreadable sliding sync state of %s at %s: %s", key, pos, error)
            raise unknown_pos() from None
        connection = self._cache(key, None, pos, position)
        connection.fresh = connection.reset = False
        connection.stored.add(pos)
        # The rows above this position's generation (if any) belong to positions the client is leaving.
        connection.head = position
        connection.drop_above = position.gen
        connection.next_gen = position.gen + 1
        return position

    def _cache(self, key: tuple[str, str | None, str], used: str | None, pos: str, position: Position
               ) -> _Connection:
        """Keep `pos` in memory with the position the request used; drop the connection's others."""
        connection = self._connections.get(key)
        if connection is None:
            # Unknown here: whatever the database holds under this ID is replaced (a load says otherwise).
            connection = self._connections[key] = _Connection(fresh=True, reset=True)
            while len(self._connections) > MAX_CONNECTIONS:
                self._connections.popitem(last=False)
        self._connections.move_to_end(key)
        connection.used_ms = self._clock.time_ms()
        for name in [p for p in connection.positions if p != used]:
            del connection.positions[name]
        connection.positions[pos] = position
        return connection

    def _remember(self, key: tuple[str, str | None, str], used: str | None, position: Position) -> str:
        """Keep the new position, and the one the request used so that a retry still works.

        The database gets them right after the response (write-behind, one write at a time per
        connection, coalesced): a response never waits for a write, and after a crash at most the
        newest positions of a connection are unknown (the client then starts again).
        """
        new_pos = f"{self._instance}.{next(self._counter)}"
        connection = self._connections.get(key)
        gen = connection.next_gen if connection is not None else 1
        connection = self._cache(key, used, new_pos, replace(position, gen=gen))
        connection.next_gen = gen + 1
        connection.dirty = True
        if connection.writer is None:
            connection.writer = asyncio.create_task(self._write_behind(key, connection))
        return new_pos

    async def _write_behind(self, key: tuple[str, str | None, str], connection: _Connection) -> None:
        try:
            while connection.dirty:
                if not await self._write(key, connection):
                    break  # logged; the next response or the flush at shutdown tries again
        finally:
            connection.writer = None

    async def _write(self, key: tuple[str, str | None, str], connection: _Connection) -> bool:
        """Store the connection's kept positions: for each new one, the rooms that differ from
        what the stored rows already read as (usually the few rooms the response sent)."""
        connection.dirty = False
        fresh, connection.fresh = connection.fresh, False
        reset, connection.reset = connection.reset, False
        drop_above, connection.drop_above = connection.drop_above, None
        keep = dict(connection.positions)
        view = None if reset else connection.head
        new: list[NewPosition] = []
        rows: list[RoomRow] = []
        for pos, position in sorted(keep.items(), key=lambda item: item[1].gen):
            if pos in connection.stored and not reset:
                continue
            rows.extend(room_changes({} if view is None else view.rooms, None if view is None else view.token,
                                     position.rooms, position.token, position.gen))
            new.append(NewPosition(pos, position.gen, str(position.token), encode_counts(position.counts)))
            view = position
        user_id, device_id, conn_id = key
        try:
            await self._sliding_store.save_connection(
                user_id, device_id, conn_id, reset=reset, drop_above=drop_above, keep=list(keep), new=new,
                rooms=rows, now_ts=connection.used_ms, max_per_user=MAX_CONNECTIONS_PER_USER if fresh else None)
        except Exception:
            logger.exception("Could not store the sliding sync positions of %s", key)
            connection.dirty = True
            connection.fresh = connection.fresh or fresh
            connection.reset = connection.reset or reset
            if drop_above is not None and connection.drop_above is None:
                connection.drop_above = drop_above
            return False
        if connection.reset:
            return True  # replaced by a new connection meanwhile: its own write starts over
        connection.stored = set(keep)
        connection.head = view
        return True

    async def forget_cached_connections(self) -> None:
        """Drop the in-memory copy of every connection (as a restart does); the database keeps them."""
        await self.flush()
        self._connections.clear()

    # --- the endpoint ------------------------------------------------------------------------
    async def sync(self, requester: Requester, body: SlidingSyncBody, pos: str | None,
                   timeout_ms: int) -> dict[str, Any]:
        key = (requester.user_id, requester.device_id, body.conn_id)
        previous = await self._previous(key, pos)
        if previous is None or timeout_ms <= 0:
            response, position, _, _ = await self._build(requester, body, previous)
            response["pos"] = self._remember(key, pos, position)
            return response
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        user_id = requester.user_id
        listen_rooms = list(await self._events.get_rooms_for_user(user_id, ("join",)))
        while True:
            async with self._notifier.listen(user_id, listen_rooms) as listener:
                response, position, news, joined = await self._build(requester, body, previous)
                remaining = deadline - loop.time()
                if news or remaining <= 0 or not await listener.wait(remaining):
                    connection = self._connections.get(key)
                    if connection is not None and pos not in connection.positions:
                        raise unknown_pos()  # replaced by a new connection while waiting
                    response["pos"] = self._remember(key, pos, position)
                    return response
            # Woken: build again under a fresh listener, which also follows rooms joined meanwhile.
            listen_rooms = joined

    # --- building a response -----------------------------------------------------------------
    async def _build(self, requester: Requester, body: SlidingSyncBody, previous: Position | None
                     ) -> tuple[dict[str, Any], Position, bool, list[str]]:
        user_id = requester.user_id
        # Independent reads run together: on PostgreSQL each is a few round trips.
        now, direct, ignored = await asyncio.gather(
            self._sync.current_token(), self._account_data.get_global(user_id, DIRECT_TYPE),
            self._sync.ignored_users(user_id))
        now_pos = now.get("events")
        since = previous.token if previous is not None else None
        candidates = await self._candidate_rooms(user_id, now_pos, since)
        bump, context = await asyncio.gather(self._bump_stamps(candidates, now_pos),
                                             self._context(user_id, direct, candidates, body.lists.values(), now))

        lists_out: dict[str, Any] = {}
        counts: dict[str, int] = {}
        wanted: dict[str, RoomConfig] = {}
        list_rooms: dict[str, list[str]] = {}
        for name, list_config in body.lists.items():
            matching = [room_id for room_id, row in candidates.items()
                        if self._passes(list_config.filters, room_id, row, context)]
            matching.sort(key=lambda room_id: (-bump.get(room_id, 0), room_id))
            counts[name] = len(matching)
            lists_out[name] = {"count": len(matching), "ops": []}
            in_range: list[str] = []
            for start, end in list_config.ranges or ():
                in_range.extend(r for r in matching[start:end + 1] if r not in in_range)
            list_rooms[name] = in_range
            for room_id in in_range:
                wanted[room_id] = self._merge(wanted.get(room_id), list_config.room, user_id)
        subscribed = []
        for room_id, config in body.room_subscriptions.items():
            if room_id not in candidates:
                # A room the lists leave out (one the user left, say): allowed when they ever were in it.
                candidates.update(await self._membership_rows(user_id, [room_id], now_pos))
            if room_id in candidates:
                subscribed.append(room_id)
                wanted[room_id] = self._merge(wanted.get(room_id), config, user_id)

        sent_before = previous.rooms if previous is not None else {}
        plans = await self._plan_rooms(wanted, candidates, sent_before, now_pos)
        rooms_out = await self._render(requester, plans, since, now, bump, context, ignored)

        new_rooms = dict(sent_before)
        for plan in plans:
            members = frozenset()
            if lazy_members(plan.config.required_state):
                previous_members = plan.sent.members if plan.sent is not None and not plan.initial else frozenset()
                members = previous_members | frozenset(rooms_out.get(plan.room_id, {}).pop("__members__", ()))
            else:
                rooms_out.get(plan.room_id, {}).pop("__members__", None)
            new_rooms[plan.room_id] = SentRoom(plan.upto, plan.row.membership, plan.config, members, now)

        # Per-room extensions continue each room from when it was last in view (None: never).
        seen = {p.room_id: None if p.initial or p.sent is None else p.sent.seen for p in plans}
        extensions, extension_news = await self._extensions(requester, body, since, now, list_rooms,
                                                            subscribed, seen)
        response: dict[str, Any] = {"lists": lists_out, "rooms": rooms_out, "extensions": extensions}
        old_counts = previous.counts if previous is not None else None
        news = bool(rooms_out) or extension_news or counts != old_counts
        joined = [room_id for room_id, row in candidates.items() if row.membership == "join"]
        return response, Position(now, new_rooms, counts), news, joined

    @staticmethod
    def _merge(current: RoomConfig | None, config: RoomConfig, user_id: str) -> RoomConfig:
        resolved = RoomConfig(config.timeline_limit, wanted_state_keys(config.required_state, user_id))
        return resolved if current is None else current.merge(resolved)

    async def _membership_rows(self, user_id: str, room_ids: Sequence[str], now_pos: int
                               ) -> dict[str, MembershipRow]:
        rows = await self._store.get_memberships_before(user_id, list(room_ids), now_pos)
        return {room_id: row for room_id, row in rows.items() if row.membership in SECTIONS}

    async def _candidate_rooms(self, user_id: str, now_pos: int, since: SyncToken | None
                               ) -> dict[str, MembershipRow]:
        """Rooms lists may show: joins, invites, knocks, bans and kicks; rooms the user left
        themselves only when that happened since the connection's position."""
        memberships = await self._memberships_at(user_id, now_pos)
        leaves = [row for row in memberships.values() if row.membership in ("leave", "ban")]
        forgotten = await self._store.get_forgotten_rooms(user_id) if leaves else set()
        leave_events = await self._events.get_events([row.event_id for row in leaves
                                                       if row.membership == "leave"])
        out = {}
        for room_id, row in memberships.items():
            if row.membership not in SECTIONS or room_id in forgotten:
                continue
            if row.membership == "leave":
                event = leave_events.get(row.event_id)
                self_left = event is None or event.sender == user_id
                if self_left and (since is None or row.stream_ordering <= since.get("events")):
                    continue
            out[room_id] = row
        return out

    async def _memberships_at(self, user_id: str, now_pos: int) -> Mapping[str, MembershipRow]:
        """`SyncStore.get_memberships_at`, from the last answer when no membership event of the user
        came since (one small indexed read instead of a row per room)."""
        memo = self._membership_memo.get(user_id)
        if memo is not None and memo[0] <= now_pos:
            position, rows = memo
            if position == now_pos or not await self._store.get_membership_changes(user_id, position, now_pos):
                if self._membership_memo.get(user_id) is memo:
                    self._membership_memo[user_id] = (now_pos, rows)
                    self._membership_memo.move_to_end(user_id)
                return rows
        moves = self._membership_moves
        rows = await self._store.get_memberships_at(user_id, now_pos)
        if moves == self._membership_moves:
            self._membership_memo[user_id] = (now_pos, rows)
            self._membership_memo.move_to_end(user_id)
            while len(self._membership_memo) > MEMBERSHIP_MEMO_USERS:
                self._membership_memo.popitem(last=False)
        return rows

    async def _bump_stamps(self, candidates: Mapping[str, MembershipRow], now_pos: int) -> dict[str, int]:
        inside = [room_id for room_id, row in candidates.items() if row.membership in ("join", "leave", "ban")]
        latest = {room_id: self._bump_cache[room_id] for room_id in inside if room_id in self._bump_cache}
        missing = [room_id for room_id in inside if room_id not in latest]
        if missing:
            found = await self._sliding_store.get_latest_of_types(missing, BUMP_EVENT_TYPES, now_pos)
            for room_id, position in found.items():
                # An event persisted meanwhile may already have raised it.
                latest[room_id] = self._bump_cache[room_id] = max(self._bump_cache.get(room_id, 0), position)
            self._trim_bump_cache()
        out = {}
        for room_id, row in candidates.items():
            if row.membership == "join":
                out[room_id] = latest.get(room_id, row.stream_ordering)
            elif row.membership in ("leave", "ban"):
                out[room_id] = min(latest.get(room_id, row.stream_ordering), row.stream_ordering)
            else:
                out[room_id] = row.stream_ordering
        return out

    async def _context(self, user_id: str, direct: Mapping[str, Any] | None, candidates: Mapping[str, MembershipRow],
                       lists: Any, now: SyncToken) -> _Context:
        """`direct`: the user's `m.direct` account data."""
        lists = list(lists)
        context = _Context(direct_rooms=frozenset(
            room_id for rooms in (direct or {}).values() if isinstance(rooms, list) for room_id in rooms
            if isinstance(room_id, str)))
        filters = [c.filters for c in lists]
        room_ids = list(candidates)
        if any(f.room_types is not None or f.not_room_types or f.is_encrypted is not None for f in filters):
            state = await self._store.get_current_state_event_ids(room_ids, ("m.room.create", "m.room.encryption"))
            creates = await self._events.get_events(
                [ids[("m.room.create", "")] for ids in state.values() if ("m.room.create", "") in ids])
            for room_id, ids in state.items():
                create = creates.get(ids.get(("m.room.create", ""), ""))
                room_type = create.content.get("type") if create is not None else None
                context.room_types[room_id] = room_type if isinstance(room_type, str) else None
                if ("m.room.encryption", "") in ids:
                    context.encrypted.add(room_id)
        if any(f.tags is not None or f.not_tags for f in filters):
            changes = await self._account_data.get_changes(user_id, 0, now.get("account_data"))
            for room_id, data in changes.room_data.items():
                tags = (data.get(TAG_TYPE) or {}).get("tags")
                if isinstance(tags, dict):
                    context.tags[room_id] = frozenset(tags)
        spaces = sorted({s for f in filters for s in f.spaces or ()})
        if spaces:
            children = await self._store.get_current_state_event_ids(spaces, ("m.space.child",))
            loaded = await self._events.get_events([eid for ids in children.values() for eid in ids.values()])
            for space, ids in children.items():
                context.space_children[space] = {
                    state_key for (_, state_key), eid in ids.items()
                    if eid in loaded and isinstance(loaded[eid].content.get("via"), list)
                    and loaded[eid].content["via"]}
        return context

    @staticmethod
    def _passes(filters: ListFilters, room_id: str, row: MembershipRow, context: _Context) -> bool:
        if filters.is_dm is not None and (room_id in context.direct_rooms) != filters.is_dm:
            return False
        if filters.is_invite is not None and (row.membership == "invite") != filters.is_invite:
            return False
        if filters.is_encrypted is not None and (room_id in context.encrypted) != filters.is_encrypted:
            return False
        room_type = context.room_types.get(room_id)
        if filters.room_types is not None and room_type not in filters.room_types:
            return False
        if room_type in filters.not_room_types:
            return False
        tags = context.tags.get(room_id, frozenset())
        if filters.tags is not None and not tags & set(filters.tags):
            return False
        if tags & set(filters.not_tags):
            return False
        if filters.spaces is not None and not any(
                room_id in context.space_children.get(space, ()) for space in filters.spaces):
            return False
        return True

    async def _plan_rooms(self, wanted: Mapping[str, RoomConfig], candidates: Mapping[str, MembershipRow],
                          sent_before: Mapping[str, SentRoom], now_pos: int) -> list[_RoomPlan]:
        """For each wanted room: whether to render it, from where, and as what."""
        plans: list[_RoomPlan] = []
        quiet: list[_RoomPlan] = []
        for room_id, config in sorted(wanted.items()):
            row = candidates[room_id]
            upto = now_pos if row.membership == "join" else row.stream_ordering
            sent = sent_before.get(room_id)
            if sent is None or (sent.membership in ("invite", "knock") and sent.membership != row.membership):
                plans.append(_RoomPlan(room_id, row, config, sent, upto, initial=True, render=True))
                continue
            if sent.membership == row.membership and row.membership in ("invite", "knock"):
                # Nothing of a room changes for its invitee until they answer.
                plans.append(_RoomPlan(room_id, row, config, sent, sent.upto, render=False))
                continue
            expanded = config.timeline_limit > sent.config.timeline_limit
            added = config.required_state - sent.config.required_state
            plan = _RoomPlan(room_id, row, config, sent, upto, expanded=expanded, added_state=added, render=True)
            plans.append(plan)
            if not expanded and not added:
                quiet.append(plan)
        # Rooms the client has, with the same configuration: rendered only when events came since.
        by_after: dict[int, list[_RoomPlan]] = {}
        for plan in quiet:
            assert plan.sent is not None
            by_after.setdefault(plan.sent.upto, []).append(plan)
        for after, group in by_after.items():
            news = await self._store.get_rooms_with_new_events([p.room_id for p in group], after, now_pos)
            for plan in group:
                if plan.room_id not in news:
                    plan.render = False
                    plan.upto = max(plan.upto, after) if plan.row.membership == "join" else after
        return plans

    # --- rendering rooms -----------------------------------------------------------------------
    async def _render(self, requester: Requester, plans: list[_RoomPlan], since: SyncToken | None,
                      now: SyncToken, bump: Mapping[str, int], context: _Context, ignored: frozenset[str]
                      ) -> dict[str, dict[str, Any]]:
        to_render = [plan for plan in plans if plan.render]
        if not to_render:
            return {}
        # Rooms with nothing new since they were sent are dropped after reading their (empty) gap.
        invites = [p for p in to_render if p.row.membership in ("invite", "knock")]
        inside = [p for p in to_render if p.row.membership not in ("invite", "knock")]
        out: dict[str, dict[str, Any]] = {}
        entries = [RoomSyncEntry(p.room_id, SECTIONS[p.row.membership], p.row, p.row.stream_ordering,
                                 None, None, changed=True) for p in invites]
        stripped, inside_out = await asyncio.gather(
            self._sync.stripped_states(entries, requester) if entries else _nothing([]),
            self._render_inside(requester, inside, since, now, bump, context, ignored) if inside else _nothing({}))
        if invites:
            for plan, state in zip(invites, stripped, strict=True):
                if state is None:
                    continue
                body: dict[str, Any] = {"initial": True, "notification_count": 0, "highlight_count": 0,
                                        "bump_stamp": bump.get(plan.room_id, plan.row.stream_ordering)}
                # Knocks carry their stripped state under the same key, as in Synapse.
                body["invite_state"] = state
                if plan.room_id in context.direct_rooms:
                    body["is_dm"] = True
                out[plan.room_id] = body
        out.update(inside_out)
        for plan in inside:
            # A room whose only news were events the client may not see has nothing to show.
            body = out.get(plan.room_id)
            if body is not None and not plan.initial and not plan.expanded and not plan.added_state and not (
                    body.get("timeline") or body.get("required_state")):
                del out[plan.room_id]
        return out

    async def _render_inside(self, requester: Requester, plans: list[_RoomPlan], since: SyncToken | None,
                             now: SyncToken, bump: Mapping[str, int], context: _Context, ignored: frozenset[str]
                             ) -> dict[str, dict[str, Any]]:
        user_id = requester.user_id
        # Timelines, grouped by limit because the reader takes one filter per call.
        timelines: dict[str, Timeline] = {}
        by_limit: dict[int, list[RoomSyncEntry]] = {}
        for plan in plans:
            after = None if plan.initial or plan.expanded or plan.sent is None else plan.sent.upto
            entry = RoomSyncEntry(plan.room_id, SECTIONS[plan.row.membership], plan.row, plan.upto, after, None,
                                  changed=plan.initial)
            by_limit.setdefault(plan.config.timeline_limit, []).append(entry)
        incremental = [p for p in plans if not p.initial and p.sent is not None]
        whole = [p.room_id for p in plans if p.initial or p.sent is None]

        async def read_timelines() -> list[dict[str, Any]]:
            for found in await asyncio.gather(*(
                    self._timeline_reader.read(entries, user_id,
                                               parse_sync_filter({"room": {"timeline": {"limit": limit}}}), ignored)
                    for limit, entries in by_limit.items())):
                timelines.update(found)
            return await self._serializer.serialize([e for p in plans for e in timelines[p.room_id].events],
                                                    requester, include_room_id=False)

        async def read_states() -> tuple[dict[str, int], dict[str, int], dict[int, Mapping[tuple[str, str], str]]]:
            # The state now (at the leave for rooms left) and, for rooms the client has, when it last had them.
            now_groups, then_groups = await asyncio.gather(
                self._store.get_state_groups_at([(p.room_id, p.upto) for p in plans]),
                self._store.get_state_groups_at([(p.room_id, p.sent.upto) for p in incremental
                                                 if p.sent is not None]))
            return now_groups, then_groups, await self._events.get_state_for_groups(
                [*now_groups.values(), *then_groups.values()])

        # Each chain of reads runs beside the others: timelines then their serialization (bundled
        # relations), state groups then their state, the unread counts, the member counts of rooms
        # sent whole.
        timeline_list, (groups_now, groups_then, group_states), fields, counts = await asyncio.gather(
            read_timelines(), read_states(), self._room_fields(user_id, [p.room_id for p in plans], since, now),
            self._store.get_member_counts(whole))
        state_ids: dict[str, dict[tuple[str, str], str]] = {}
        deltas: dict[str, dict[tuple[str, str], str]] = {}
        full: dict[str, Mapping[tuple[str, str], str]] = {}
        members_sent: dict[str, list[str]] = {}
        for plan in plans:
            room_id = plan.room_id
            group = groups_now.get(room_id)
            state = group_states[group] if group is not None else {}
            full[room_id] = state
            required = plan.config.required_state
            senders = sorted({e.sender for e in timelines[room_id].events})
            if plan.initial or plan.sent is None:
                chosen = {k: v for k, v in state.items() if state_key_matches(required, k)}
                delta: Mapping[tuple[str, str], str] = state
                already: frozenset[str] = frozenset()
            else:
                then_group = groups_then.get(room_id)
                then = group_states[then_group] if then_group is not None else {}
                delta = {} if then_group == group else rendering.state_delta(then, state)
                chosen = {k: v for k, v in delta.items() if state_key_matches(required, k)}
                if plan.added_state:
                    chosen.update({k: v for k, v in state.items() if state_key_matches(plan.added_state, k)})
                already = plan.sent.members if lazy_members(plan.sent.config.required_state) else frozenset()
            if lazy_members(required):
                for sender in senders:
                    key = ("m.room.member", sender)
                    if key in state and (sender not in already or key in delta):
                        chosen[key] = state[key]
                members_sent[room_id] = senders
            state_ids[room_id] = chosen
            deltas[room_id] = dict(delta)

        # Heroes, counts and names for rooms seen whole or whose membership moved.
        needs_summary = [p.room_id for p in plans if p.initial or p.sent is None or any(
            k[0] == "m.room.member" for k in deltas[p.room_id])]
        unnamed = [r for r in needs_summary if ("m.room.name", "") not in full[r]]
        counted = set(whole)
        more_counts, present = await asyncio.gather(
            self._store.get_member_counts([r for r in needs_summary if r not in counted]),
            self._store.get_first_members(unnamed, ("join", "invite"), rendering.MAX_HEROES + 1))
        counts = {**counts, **more_counts}
        lonely = [r for r in unnamed if not [u for u in present.get(r, []) if u != user_id]]
        departed = await self._store.get_first_members(lonely, ("leave", "ban"), rendering.MAX_HEROES + 1)
        heroes = {r: rendering.pick_heroes(user_id, present.get(r, []), departed.get(r, [])) for r in unnamed}
        naming_ids = set()
        for plan in plans:
            room_id = plan.room_id
            for key in (("m.room.name", ""), ("m.room.avatar", "")):
                if key in full[room_id] and (key in deltas[room_id]):
                    naming_ids.add(full[room_id][key])
            for hero in heroes.get(room_id, []):
                if ("m.room.member", hero) in full[room_id]:
                    naming_ids.add(full[room_id][("m.room.member", hero)])
        loaded = await self._events.get_events(naming_ids | {eid for ids in state_ids.values() for eid in ids.values()})
        timeline_json = iter(timeline_list)
        state_events: dict[str, list[Event]] = {
            p.room_id: sorted((loaded[eid] for eid in state_ids[p.room_id].values() if eid in loaded),
                              key=event_position) for p in plans}
        state_json = iter(await self._serializer.serialize([e for p in plans for e in state_events[p.room_id]],
                                                           requester, include_room_id=False, bundle=False))
        since_pos = since.get("events") if since is not None else None
        out: dict[str, dict[str, Any]] = {}
        for plan in plans:
            room_id = plan.room_id
            timeline = timelines[room_id]
            events_json = [next(timeline_json) for _ in timeline.events]
            room_state_json = [next(state_json) for _ in state_events[room_id]]
            body: dict[str, Any] = {"bump_stamp": bump.get(room_id, plan.upto)}
            unread = fields.get(room_id, {})
            totals = dict(unread.get("unread_notifications") or {})
            for thread in (unread.get("unread_thread_notifications") or {}).values():
                for k in ("highlight_count", "notification_count"):
                    totals[k] = totals.get(k, 0) + thread.get(k, 0)
            body["notification_count"] = totals.get("notification_count", 0)
            body["highlight_count"] = totals.get("highlight_count", 0)
            if plan.initial:
                body["initial"] = True
            if plan.expanded:
                body["expanded_timeline"] = True
                body["unstable_expanded_timeline"] = True
            if events_json:
                body["timeline"] = events_json
            if room_state_json:
                body["required_state"] = room_state_json
            body["limited"] = timeline.limited
            if timeline.events:
                body["prev_batch"] = str(now.replace(events=event_position(timeline.events[0]) - 1))
            elif plan.initial:
                body["prev_batch"] = str(now.replace(events=plan.upto))
            body["num_live"] = (0 if since_pos is None else
                                sum(1 for e in timeline.events if event_position(e) > since_pos))
            name_event = loaded.get(full[room_id].get(("m.room.name", ""), ""))
            if name_event is not None and isinstance(name_event.content.get("name"), str):
                body["name"] = name_event.content["name"]
            avatar_event = loaded.get(full[room_id].get(("m.room.avatar", ""), ""))
            if avatar_event is not None and isinstance(avatar_event.content.get("url"), str):
                body["avatar"] = avatar_event.content["url"]
            if room_id in counts or room_id in needs_summary:
                room_counts = counts.get(room_id, {})
                body["joined_count"] = room_counts.get("join", 0)
                body["invited_count"] = room_counts.get("invite", 0)
            if heroes.get(room_id):
                out_heroes = []
                for hero in heroes[room_id]:
                    member = loaded.get(full[room_id].get(("m.room.member", hero), ""))
                    item: dict[str, Any] = {"user_id": hero}
                    if member is not None:
                        if isinstance(member.content.get("displayname"), str):
                            item["displayname"] = member.content["displayname"]
                        if isinstance(member.content.get("avatar_url"), str):
                            item["avatar_url"] = member.content["avatar_url"]
                    out_heroes.append(item)
                body["heroes"] = out_heroes
            if room_id in context.direct_rooms:
                body["is_dm"] = True
            body["__members__"] = members_sent.get(room_id, [])
            out[room_id] = body
        return out

    # --- extensions ------------------------------------------------------------------------------
    @staticmethod
    def _scope(config: ExtensionConfig, list_rooms: Mapping[str, list[str]], subscribed: Sequence[str]
               ) -> list[str]:
        rooms: list[str] = []
        for name, ids in list_rooms.items():
            if config.lists is None or name in config.lists:
                rooms.extend(ids)
        rooms.extend(r for r in subscribed if config.rooms is None or r in config.rooms)
        return list(dict.fromkeys(rooms))

    async def _extensions(self, requester: Requester, body: SlidingSyncBody, since: SyncToken | None,
                          now: SyncToken, list_rooms: Mapping[str, list[str]], subscribed: Sequence[str],
                          seen: Mapping[str, SyncToken | None]) -> tuple[dict[str, Any], bool]:
        user_id = requester.user_id
        device_id = requester.device_id
        out: dict[str, Any] = {}
        news = False
        config = body.extensions.get("to_device")
        if config is not None and config.enabled and device_id is not None:
            start = _position(config.since)
            end = now.get("to_device")
            if config.limit is None:
                sections = await self._to_device.get_sections(user_id, device_id, start, end)
            else:
                # The to-device source's getter takes the batch size as `limit` (ToDeviceService).
                sections = await self._to_device.get_sections(user_id, device_id, start, end,
                                                              limit=config.limit)  # type: ignore[call-arg]
            delivered = sections.pop(DELIVERED_UPTO, None)
            events = sections.get("to_device", {}).get("events", [])
            out["to_device"] = {"next_batch": str(delivered if delivered is not None else end), "events": events}
            news = news or bool(events)
        config = body.extensions.get("e2ee")
        if config is not None and config.enabled:
            start = since.get("device_lists") if since is not None else None
            sections = await self._device_lists.get_sections(user_id, device_id, start, now.get("device_lists"))
            e2ee: dict[str, Any] = {
                "device_one_time_keys_count": sections.get("device_one_time_keys_count", {}),
                "device_unused_fallback_key_types": sections.get("device_unused_fallback_key_types", []),
            }
            if since is not None:
                e2ee["device_lists"] = sections.get("device_lists", {"changed": [], "left": []})
                news = news or bool(e2ee["device_lists"]["changed"] or e2ee["device_lists"]["left"])
            out["e2ee"] = e2ee
        config = body.extensions.get("account_data")
        if config is not None and config.enabled:
            scope = self._scope(config, list_rooms, subscribed)
            section = await self._account_data_section(user_id, since, now, _by_start(scope, seen, "account_data"))
            out["account_data"] = section
            news = news or bool(section["global"] or section["rooms"])
        for name, source in (("receipts", self._receipts), ("typing", self._typing)):
            config = body.extensions.get(name)
            if config is None or not config.enabled:
                continue
            end = now.get(source.stream)
            found: dict[str, list[dict[str, Any]]] = {}
            for start, rooms in _by_start(self._scope(config, list_rooms, subscribed), seen, source.stream).items():
                if start is None or start < end:
                    found.update(await source.get_events(user_id, rooms, start, end))
            rooms_found = {room_id: events[-1] for room_id, events in found.items() if events}
            out[name] = {"rooms": rooms_found}
            news = news or bool(rooms_found)
        return out, news

    async def _account_data_section(self, user_id: str, since: SyncToken | None, now: SyncToken,
                                    rooms_by_start: Mapping[int | None, list[str]]) -> dict[str, Any]:
        end = now.get("account_data")
        start = 0 if since is None else since.get("account_data")
        global_data: dict[str, Any] = {}
        if since is None or start < end:
            global_data.update((await self._account_data.get_changes(user_id, start, end)).global_data)
        rooms: dict[str, list[dict[str, Any]]] = {}
        for room_start, room_ids in rooms_by_start.items():
            if room_start is not None and room_start >= end:
                continue
            changes = await self._account_data.get_changes(user_id, room_start or 0, end)
            for room_id in room_ids:
                if room_id in changes.room_data:
                    rooms[room_id] = [{"type": t, "content": c} for t, c in sorted(changes.room_data[room_id].items())]
        if since is None or since.get("push_rules") < now.get("push_rules"):
            if since is None or await self._push_rules.version(user_id) > since.get("push_rules"):
                global_data[PUSH_RULES_ACCOUNT_DATA_TYPE] = await self._push_rules.account_data_content(user_id)
        return {"global": [{"type": t, "content": c} for t, c in sorted(global_data.items())], "rooms": rooms}


async def _nothing(value: Any) -> Any:
    return value


def _by_start(room_ids: Sequence[str], seen: Mapping[str, SyncToken | None], stream: str
              ) -> dict[int | None, list[str]]:
    """Rooms grouped by the position of `stream` they continue from (None: from nothing)."""
    out: dict[int | None, list[str]] = {}
    for room_id in room_ids:
        token = seen.get(room_id)
        out.setdefault(None if token is None else token.get(stream), []).append(room_id)
    return out


def _position(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise invalid_param("extensions.to_device.since: not a valid position") from None
    if value < 0:
        raise invalid_param("extensions.to_device.since: not a valid position")
    return value
