"""The /sync v2 engine: decide which rooms changed between two tokens, then render them in batches.

Building a response runs a fixed number of queries however many rooms it covers: stream positions,
memberships, the timelines of every room (one UNION ALL), state groups, then events from the
event cache. Long polls register with the Notifier *before* checking for news, so an event that
commits in between still wakes them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from homeserver.accounts.user_filters import FilterService, check_filter
from homeserver.client_input import check_json_value
from homeserver.clock import Clock
from homeserver.errors import MatrixError, bad_json, invalid_param
from homeserver.events.event import Event
from homeserver.events.sync_filter import SyncFilter, filter_plain_events, only_fields, parse_sync_filter
from homeserver.jsonutil import JSONDecodeError, decode
from homeserver.push.push_rules import PUSH_RULES_ACCOUNT_DATA_TYPE, PushRulesService
from homeserver.requester import Requester
from homeserver.rooms.erasure import ErasedUsers
from homeserver.rooms.serialize import ClientEventSerializer
from homeserver.streams.client_tokens import STREAMS, SyncToken
from homeserver.streams.flights import Flights
from homeserver.streams.notifier import Notifier
from homeserver.streams.recent import RecentEvents
from homeserver.streams.sources import DELIVERED_UPTO, EphemeralSource, RoomFieldsProvider, TopLevelSource
from homeserver.streams.updates import AccountDataChanged, PushRulesChanged
from homeserver.sync import rendering
from homeserver.sync.room_list import (
    INVITE,
    JOIN,
    KNOCK,
    LEAVE,
    RoomSyncEntry,
    incremental_entries,
    initial_entries,
    rooms_needing_prior_membership,
)
from homeserver.sync.timeline import Timeline, TimelineReader, event_position
from storage.priority import bulk_reads
from storage.stores.account_data import ACCOUNT_DATA, AccountDataStore
from storage.stores.events import EventStore
from storage.stores.partial_state import PartialStateStore
from storage.stores.sync import MembershipRow, SyncStore

logger = logging.getLogger(__name__)

IGNORED_USER_LIST = "m.ignored_user_list"
PRESENCE_STATES = ("offline", "online", "unavailable")
LAZY_CACHE_DEVICES = 2000
JOINED_CACHE_USERS = 10_000
# next_batch tokens remembered with when they were handed out (for gapless long polls).
ISSUED_TOKENS = 20_000
OWN_STREAMS = ("events", "account_data", "push_rules")
NAMING_TYPES = ("m.room.name", "m.room.canonical_alias")
# Responses computed at once; more wait their turn, so that a wake of a thousand long polls neither
# floods the database's read queue ahead of the writes of senders nor starves the event loop.
BUILD_CONCURRENCY = 6
# How far past its timeout a long poll may wait for its response to be built before it is answered
# with nothing new at its own token.
OVERDUE_S = 1.0
# The device a shared computation serializes events for: none has it, so no event gets the
# `transaction_id` only its sending device may see; each device's copy adds its own afterwards.
SHARED_DEVICE = "\x00shared"


@dataclass(frozen=True)
class SyncRequest:
    requester: Requester
    filter: SyncFilter = SyncFilter()
    since: SyncToken | None = None
    full_state: bool = False
    timeout_ms: int = 0
    set_presence: str = "online"


@dataclass
class _UserPart:
    """What a response holds for the user as a whole; the per-device sections are added on top."""

    response: dict[str, Any]
    news: bool
    since: SyncToken | None
    now: SyncToken
    entries: list[RoomSyncEntry]
    # Every room the user is joined to at `now` (what a long poll listens to next).
    joined: list[str]
    # The user's own events in the response that carry a transaction ID: event ID -> (device, txn).
    own_txns: dict[str, tuple[str | None, str]] = field(default_factory=dict)


class SyncService:
    def __init__(self, events: EventStore, store: SyncStore, serializer: ClientEventSerializer,
                 account_data: AccountDataStore, push_rules: PushRulesService, filters: FilterService,
                 notifier: Notifier, clock: Clock, *, erased_users: ErasedUsers | None = None,
                 partial_state: PartialStateStore | None = None,
                 presence_tracker: Callable[[str, str], AbstractAsyncContextManager[Any]] | None = None,
                 presence_lookup: Callable[[Sequence[str]], Awaitable[list[dict[str, Any]]]] | None = None,
                 gapless_window_s: float = 0.0, recent: RecentEvents | None = None):
        self._events = events
        # The newest event positions of each room, from the persister's commits: a wake's "which
        # rooms have news" and "does a room overflow its timeline" without a database read.
        self._recent = recent
        # A long poll from a token handed out at most this long ago is answered without gaps.
        self._gapless_window_s = gapless_window_s
        self._issued: OrderedDict[str, float] = OrderedDict()
        # Rooms joined with partial state whose full state arrived since a token get their whole state.
        self._partial_state = partial_state
        self._store = store
        self._serializer = serializer
        self._account_data = account_data
        self._push_rules = push_rules
        self._filters = filters
        self._notifier = notifier
        self._clock = clock
        self._timeline_reader = TimelineReader(events, store, erased_users)
        self._ephemeral: list[EphemeralSource] = []
        self._room_fields: list[RoomFieldsProvider] = []
        self._top_level: list[TopLevelSource] = []
        self._ignored: dict[str, frozenset[str]] = {}
        # (user_id, set_presence) -> async context manager held around the request (presence).
        self._presence_tracker = presence_tracker
        # user IDs -> their current m.presence events: an incremental sync adds those of users who came
        # to share a room with the syncing user since the token (presence).
        self._presence_lookup = presence_lookup
        # (user, device) -> room -> member user -> member event ID this device was sent (lazy loading).
        self._lazy_sent: OrderedDict[tuple[str, str | None], dict[str, dict[str, str]]] = OrderedDict()
        self._flights = Flights()
        # The current token and the notifier generation its read began at (see Notifier.generation).
        self._polled_now: tuple[int, SyncToken] | None = None
        # user -> (a token, the rooms the user was joined to at it), from the user's latest build.
        self._joined_at: OrderedDict[str, tuple[SyncToken, list[str]]] = OrderedDict()
        self._build_slots = asyncio.Semaphore(BUILD_CONCURRENCY)
        # user -> (a position, the user's memberships at it), reused at a later position while the
        # persister's commits show no move of the user's membership in between (streams/recent.py).
        self._memberships: OrderedDict[str, tuple[int, dict[str, MembershipRow]]] = OrderedDict()

    # --- extension points -------------------------------------------------------------
    def add_ephemeral_source(self, source: EphemeralSource) -> None:
        self._check_stream(source.stream)
        self._ephemeral.append(source)

    def add_room_fields_provider(self, provider: RoomFieldsProvider) -> None:
        self._room_fields.append(provider)

    def add_top_level_source(self, source: TopLevelSource) -> None:
        self._check_stream(source.stream)
        self._top_level.append(source)

    @staticmethod
    def _check_stream(stream: str) -> None:
        if stream not in STREAMS:
            raise ValueError(f"unknown sync stream {stream!r}; add it to homeserver.streams.client_tokens.STREAMS")

    def on_account_data_changed(self, update: AccountDataChanged) -> None:
        """Forget the cached ignore list and wake the user's syncs."""
        self._ignored.pop(update.user_id, None)
        self._notifier.notify_users([update.user_id])

    def on_push_rules_changed(self, update: PushRulesChanged) -> None:
        self._notifier.notify_users([update.user_id])

    # --- request parsing ----------------------------------------------------------------
    async def resolve_filter(self, requester: Requester, text: str | None) -> SyncFilter:
        """The filter of a `filter` query parameter: inline JSON when it starts with `{`, else an ID."""
        if text is None or text == "":
            return SyncFilter()
        if text.lstrip().startswith("{"):
            try:
                data = decode(text)
            except JSONDecodeError:
                raise MatrixError(400, "M_NOT_JSON", "filter: not valid JSON") from None
            check_json_value(data)
            if not isinstance(data, dict):
                raise bad_json("filter: must be a JSON object")
            try:
                check_filter(data)
            except MatrixError as e:
                raise bad_json(f"filter: {e.message}") from None
            return parse_sync_filter(data)
        try:
            data = await self._filters.get_filter(requester.user_id, requester.user_id, text)
        except MatrixError:
            raise invalid_param(f"filter: no filter with ID {text!r}") from None
        return parse_sync_filter(data)

    # --- tokens -----------------------------------------------------------------------
    async def current_token(self) -> SyncToken:
        positions = await self._store.get_stream_positions()
        values = {"events": positions.get("events", 0), "account_data": positions.get(ACCOUNT_DATA, 0),
                  "push_rules": positions.get("push_rules", 0)}
        # Streams kept in the positions table were just read with the others; the rest are asked
        # together (each may be a query of its own).
        asked = [source for source in (*self._ephemeral, *self._top_level) if source.stream not in positions]
        for source in (*self._ephemeral, *self._top_level):
            if source.stream in positions:
                values[source.stream] = positions[source.stream]
        answers = await asyncio.gather(*(source.current_position() for source in asked))
        for source, position in zip(asked, answers, strict=True):
            values[source.stream] = position
        return SyncToken.zero().replace(**values)

    # --- the endpoint -----------------------------------------------------------------
    async def sync(self, request: SyncRequest) -> dict[str, Any]:
        """The /sync response; long-polls up to the timeout for news on incremental syncs."""
        if request.set_presence not in PRESENCE_STATES:
            raise invalid_param(f"set_presence: must be one of {', '.join(PRESENCE_STATES)}")
        # Whatever this request reads (and the shared computations it starts) queues behind the
        # reads of other requests, such as a send's (storage/priority.py).
        bulk_reads()
        if self._presence_tracker is None:
            response = await self._sync(request)
        else:
            async with self._presence_tracker(request.requester.user_id, request.set_presence):
                response = await self._sync(request)
        self._note_issued(response.get("next_batch"))
        return response

    def _note_issued(self, token: Any) -> None:
        if self._gapless_window_s <= 0 or not isinstance(token, str):
            return
        self._issued[token] = time.monotonic()
        self._issued.move_to_end(token)
        while len(self._issued) > ISSUED_TOKENS:
            self._issued.popitem(last=False)

    def _answers_gapless(self, request: SyncRequest) -> bool:
        """Whether a poll is answered in pages rather than with gaps: a long poll (a connected
        client), from a token handed out lately (not a client back from being away), of a device
        that is not asking for the whole state."""
        if request.since is None or request.timeout_ms <= 0 or request.full_state:
            return False
        issued = self._issued.get(str(request.since))
        return issued is not None and time.monotonic() - issued <= self._gapless_window_s

    async def _sync(self, request: SyncRequest) -> dict[str, Any]:
        since = request.since
        if since is None or request.full_state or request.timeout_ms <= 0:
            return (await self._build(request))[0]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.timeout_ms / 1000
        user_id = request.requester.user_id
        ticket = self._flights.ticket()
        known = self._joined_at.get(user_id)
        if known is not None:
            # The rooms of the user's latest build, whatever its token: a poll behind it builds at
            # once (the token moved), which gives the rooms at its own token, and a membership
            # change since wakes the user's listeners by user, not by room.
            listen_rooms: Sequence[str] = known[1]
        else:
            listen_rooms = list(await self._flights.run(
                ("rooms", user_id), ticket, lambda: self._events.get_rooms_for_user(user_id, ("join",))))
        while True:
            async with self._notifier.listen(user_id, listen_rooms) as listener:
                # Registered first: whatever commits from here on wakes the listener.
                ticket = self._flights.ticket()
                now = await self._polled_token(ticket)
                result = None
                if now != since:
                    # Something moved since the token; whether any of it is this device's news only
                    # a build can tell. Nothing moved: no news, and nothing to compute.
                    built = await self._shared_build(request, ticket, deadline + OVERDUE_S)
                    if built is None:
                        # Overloaded: answer at the timeout with the token the poll came with
                        # (nothing skipped); the client's next poll gets what is waiting.
                        return await self._unchanged(request, listen_rooms)
                    result, news, joined = built
                    if news:
                        return result
                    if set(joined) != set(listen_rooms):
                        # The rooms listened to were another token's: listen to these instead.
                        listen_rooms = joined
                        continue
                remaining = deadline - loop.time()
                if remaining > 0 and await listener.wait(remaining):
                    # Woken: look again under a fresh listener, which also follows rooms joined meanwhile.
                    if result is not None:
                        listen_rooms = joined
                    continue
                if result is not None:
                    return result
            # Timed out and nothing moved since the token: the empty answer at the same token.
            return await self._unchanged(request, listen_rooms)

    async def _unchanged(self, request: SyncRequest, joined: Sequence[str]) -> dict[str, Any]:
        """A response with nothing new at the request's own token, with the device's sections."""
        assert request.since is not None
        rooms: dict[str, dict[str, Any]] = {JOIN: {}, INVITE: {}, LEAVE: {}, KNOCK: {}}
        part = _UserPart(_response_skeleton(request.since, rooms, []), False, request.since, request.since,
                         [], list(joined))
        return (await self._finish(request, part, patch_txn_ids=False))[0]

    async def _polled_token(self, ticket: int) -> SyncToken:
        """The current token for a registered listener: reused while no notification happened
        since its read began, else read once for every listener asking at the same moment."""
        polled = self._polled_now
        if polled is not None and polled[0] == self._notifier.generation:
            return polled[1]
        return await self._flights.run("now", ticket, self._read_polled_token)

    async def _read_polled_token(self) -> SyncToken:
        generation = self._notifier.generation
        token = await self.current_token()
        if self._polled_now is None or self._polled_now[0] <= generation:
            self._polled_now = (generation, token)
        return token

    async def _shared_build(self, request: SyncRequest, ticket: int, give_up_at: float
                            ) -> tuple[dict[str, Any], bool, list[str]] | None:
        """A long poll's response: the user-wide part computed once for every device of the user
        waiting at the same token with the same filter, the device's own sections added to it.
        None when the user-wide part is not ready by `give_up_at` (loop time); it is still
        computed, for the devices that wait on."""
        requester = request.requester
        sync_filter = request.filter
        # Lazy-loaded members depend on what this device was sent before, and `event_fields` may
        # drop the fields a device's copy is patched through: such requests share with no one.
        per_device = sync_filter.lazy_load_members or sync_filter.event_fields is not None
        key = ("build", requester.user_id, requester.is_guest, requester.app_service_id, str(request.since),
               repr(sync_filter), requester.device_id if per_device else SHARED_DEVICE)
        serialize_as = requester if per_device else dataclasses.replace(requester, device_id=SHARED_DEVICE)
        remaining = give_up_at - asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(max(remaining, 0.001)):
                part = await self._flights.run(key, ticket, lambda: self._bounded_user_part(request, serialize_as))
        except TimeoutError:
            return None
        self._remember_joined(requester.user_id, part)
        return await self._finish(request, part, patch_txn_ids=not per_device)

    def _remember_joined(self, user_id: str, part: _UserPart) -> None:
        """Keep the rooms of the user's newest build: what the user's next long polls listen to."""
        latest = self._joined_at.get(user_id)
        if latest is None or latest[0].get("events") <= part.now.get("events"):
            self._joined_at[user_id] = (part.now, part.joined)
            self._joined_at.move_to_end(user_id)
        while len(self._joined_at) > JOINED_CACHE_USERS:
            self._joined_at.popitem(last=False)

    async def _bounded_user_part(self, request: SyncRequest, serialize_as: Requester) -> _UserPart:
        async with self._build_slots:
            return await self._build_user_part(request, serialize_as)

    async def ignored_users(self, user_id: str) -> frozenset[str]:
        """The users `user_id` ignores (cached until their account data changes)."""
        return await self._ignored_users(user_id)

    async def stripped_states(self, entries: list[RoomSyncEntry], requester: Requester
                              ) -> list[list[dict[str, Any]] | None]:
        """Invite (or knock) state of each entry; None where the inviter is ignored."""
        return await self._stripped_states(entries, requester, await self._ignored_users(requester.user_id), {})

    async def _ignored_users(self, user_id: str) -> frozenset[str]:
        cached = self._ignored.get(user_id)
        if cached is None:
            content = await self._account_data.get_global(user_id, IGNORED_USER_LIST) or {}
            ignored = content.get("ignored_users")
            cached = frozenset(ignored) if isinstance(ignored, dict) else frozenset()
            self._ignored[user_id] = cached
        return cached

    async def _build(self, request: SyncRequest) -> tuple[dict[str, Any], bool, list[str]]:
        part = await self._bounded_user_part(request, request.requester)
        self._remember_joined(request.requester.user_id, part)
        return await self._finish(request, part, patch_txn_ids=False)

    async def _build_user_part(self, request: SyncRequest, serialize_as: Requester) -> _UserPart:
        """Everything of a response but the device's own sections (to-device messages, key counts).

        `serialize_as` is the requester events are rendered for: the real one, or one with
        `SHARED_DEVICE` when the result is shared among the user's devices."""
        requester = request.requester
        user_id = requester.user_id
        own_txns: dict[str, tuple[str | None, str]] = {}
        sync_filter = request.filter
        polled = self._polled_now
        if (serialize_as.device_id == SHARED_DEVICE and polled is not None
                and polled[0] == self._notifier.generation):
            # Shared builds serve registered listeners only: a token read since the last notification
            # is current for them (see _polled_token).
            now = polled[1]
        else:
            now = await self._read_polled_token()
        since = request.since
        if since is not None:
            # A token from the future (e.g. a restored database) reads as "now" on the streams this
            # engine owns; extension sources judge their own positions (typing restarts at 0).
            since = since.replace(**{s: min(since.get(s), now.get(s)) for s in OWN_STREAMS})
        now_pos = now.get("events")
        paged = False
        if (since is not None and sync_filter.timeline_limit > 0 and not sync_filter.timeline.is_empty_set
                and self._answers_gapless(request)):
            overflow = await self._first_overflowing_event(user_id, since.get("events"), now_pos,
                                                           sync_filter.timeline_limit)
            if overflow is not None:
                paged = True
                # A room holds more new events than its timeline shows: answer up to just before the
                # first that does not fit, so no timeline has a gap; the next poll goes on from there.
                now_pos = overflow - 1
                now = now.replace(events=now_pos)
        memberships = await self._memberships_at(user_id, now_pos)
        forgotten: set[str] = set()
        if any(row.membership in ("leave", "ban") for row in memberships.values()):
            forgotten = await self._store.get_forgotten_rooms(user_id)
        if since is None:
            entries = initial_entries(memberships, now_pos, include_leave=sync_filter.include_leave,
                                      forgotten=forgotten)
        else:
            since_pos = since.get("events")
            changes = ([] if self._recent is not None and self._recent.membership_unmoved(user_id, since_pos, now_pos)
                       else await self._store.get_membership_changes(user_id, since_pos, now_pos))
            before = await self._store.get_memberships_before(
                user_id, rooms_needing_prior_membership(memberships, changes), since_pos)
            entries = incremental_entries(memberships, changes, before, since_pos, now_pos,
                                          full_state=request.full_state, forgotten=forgotten)
            entries = await self._with_completed_state(entries, since_pos, now_pos)
        entries = [e for e in entries if sync_filter.allows_room(e.room_id)]
        joined = [e.room_id for e in entries if e.section == JOIN]
        # The ignore list is usually cached; the rooms' timelines need it.
        ignored = await self._ignored_users(user_id)

        async def render() -> tuple[dict[str, dict[str, Any]], list[dict[str, dict[str, Any]]] | None]:
            # Joined rooms whose timeline and state need reading: all on a full sync, otherwise the
            # newly joined ones and those with events since the token.
            active = [e for e in entries if e.section in (JOIN, LEAVE)]
            if since is not None and not request.full_state:
                quiet = [e.room_id for e in active if e.section == JOIN and not e.changed]
                with_news = await self._rooms_with_new_events(quiet, since.get("events"), now_pos)
                active = [e for e in active if e.section != JOIN or e.changed or e.room_id in with_news]
            if since is not None:
                return await self._render_rooms(request, active, now, ignored, serialize_as, own_txns), None
            # Every joined room is in an initial sync's response, so the providers' room fields
            # (unread counts) are read while the rooms are rendered.
            rendered, fields = await asyncio.gather(
                self._render_rooms(request, active, now, ignored, serialize_as, own_txns),
                self._room_fields_of(user_id, joined, since, now))
            return rendered, fields

        # Independent reads run together: on PostgreSQL each costs round trips.
        account_data, ephemeral, (rendered, fields) = await asyncio.gather(
            self._account_data_changes(user_id, since, now),
            self._ephemeral_events(user_id, joined, since, now, sync_filter), render())
        room_account_data = account_data.get("rooms", {})

        rooms: dict[str, dict[str, Any]] = {JOIN: {}, INVITE: {}, LEAVE: {}, KNOCK: {}}
        for entry in entries:
            room_id = entry.room_id
            if entry.section in (INVITE, KNOCK):
                continue
            body = rendered.get(room_id)
            room_data = filter_plain_events(
                [{"type": t, "content": c} for t, c in room_account_data.get(room_id, {}).items()],
                sync_filter.room_account_data, room_id)
            if entry.section == LEAVE:
                if body is not None:
                    rooms[LEAVE][room_id] = {**body, "account_data": {"events": room_data}}
                continue
            room_ephemeral = ephemeral.get(room_id, [])
            if body is None:
                if since is not None and not room_ephemeral and not room_data:
                    continue
                body = self._empty_room_body(now, entry)
            elif (since is not None and not entry.changed and not request.full_state
                  and not body["timeline"]["events"] and not body["state"]["events"]
                  and not room_ephemeral and not room_data):
                continue
            body["ephemeral"] = {"events": room_ephemeral}
            body["account_data"] = {"events": room_data}
            rooms[JOIN][room_id] = body
        invites = [e for e in entries if e.section in (INVITE, KNOCK)]
        _, stripped_states = await asyncio.gather(
            self._add_room_fields(request, rooms[JOIN], since, now, fields),
            self._stripped_states(invites, serialize_as, ignored, own_txns))
        for entry, stripped in zip(invites, stripped_states, strict=True):
            if stripped is None:
                continue
            key = "invite_state" if entry.section == INVITE else "knock_state"
            rooms[entry.section][entry.room_id] = {key: {"events": stripped}}

        global_data = filter_plain_events(account_data.get("global", []), sync_filter.account_data)
        response = _response_skeleton(now, rooms, global_data)
        # A page stopped short of now is answered at once even when the filter kept none of its
        # events: the next poll goes on from it.
        news = bool(global_data) or any(rooms.values()) or paged
        all_joined = [room_id for room_id, row in memberships.items() if row.membership == "join"]
        return _UserPart(response, news, since, now, entries, all_joined, own_txns)

    async def _memberships_at(self, user_id: str, position: int) -> dict[str, MembershipRow]:
        """`SyncStore.get_memberships_at`, from the user's last read when nothing moved since."""
        recent = self._recent
        if recent is None:
            return await self._store.get_memberships_at(user_id, position)
        memo = self._memberships.get(user_id)
        if memo is not None and memo[0] <= position and recent.membership_unmoved(user_id, memo[0], position):
            self._memberships.move_to_end(user_id)
            return memo[1]
        rows = await self._store.get_memberships_at(user_id, position)
        # Kept only when no move came after the position meanwhile (the read may have seen it).
        if recent.membership_unmoved(user_id, position, recent.upto) and (memo is None or memo[0] <= position):
            self._memberships[user_id] = (position, rows)
            self._memberships.move_to_end(user_id)
            while len(self._memberships) > JOINED_CACHE_USERS:
                self._memberships.popitem(last=False)
        return rows

    async def _first_overflowing_event(self, user_id: str, after: int, upto: int, per_room: int) -> int | None:
        """The lowest position at which a joined room holds more new events than `per_room`: from
        memory when it holds the range for every room the user was joined to at their latest build
        (that build is no older than `after`, so a room missing from it was joined inside the range
        and is synced as newly joined, limited anyway), else from the database."""
        known = self._joined_at.get(user_id)
        if self._recent is not None and known is not None and known[0].get("events") >= after:
            covered, position = self._recent.first_overflowing(known[1], after, upto, per_room)
            if covered:
                return position
        return await self._store.get_first_overflowing_event(user_id, after, upto, per_room)

    async def _rooms_with_new_events(self, room_ids: Sequence[str], after: int, upto: int) -> Collection[str]:
        if self._recent is not None:
            found = self._recent.rooms_with_new_events(room_ids, after, upto)
            if found is not None:
                return found
        return await self._store.get_rooms_with_new_events(room_ids, after, upto)

    async def _finish(self, request: SyncRequest, part: _UserPart, *, patch_txn_ids: bool
                      ) -> tuple[dict[str, Any], bool, list[str]]:
        """The device's response: its own copy of the user part, with its top-level sections.

        Not limited by the build slots: the devices of a user woken together must ask their
        sources at the same moment for the sources to answer them with one read."""
        return await self._add_device_sections(request, part, patch_txn_ids)

    async def _add_device_sections(self, request: SyncRequest, part: _UserPart, patch_txn_ids: bool
                                   ) -> tuple[dict[str, Any], bool, list[str]]:
        requester = request.requester
        user_id = requester.user_id
        since, now, news = part.since, part.now, part.news
        # A shallow copy: the sections below replace top-level keys, never change shared values.
        response = dict(part.response)
        if patch_txn_ids:
            _add_transaction_ids(response, part.own_txns, requester.device_id)
        asked = []
        for source in self._top_level:
            start = None if since is None else since.get(source.stream)
            end = now.get(source.stream)
            if start is not None and start == end and not source.every_sync:
                continue
            asked.append((source, end, source.get_sections(user_id, requester.device_id, start, end)))
        # The sources are independent: ask them together, then apply their answers in order.
        answers = await asyncio.gather(*(getter for _, _, getter in asked))
        for (source, end, _), sections in zip(asked, answers, strict=True):
            delivered_upto = sections.pop(DELIVERED_UPTO, None)
            if delivered_upto is not None and delivered_upto < end:
                now = now.replace(**{source.stream: delivered_upto})
                response["next_batch"] = str(now)
            response.update(sections)
            news = news or source.is_news(sections)
        if since is not None and not request.full_state and self._presence_lookup is not None:
            await self._add_newly_shared_presence(response, user_id, part.entries, response["rooms"][JOIN])
        return response, news, part.joined

    async def _add_newly_shared_presence(self, response: dict[str, Any], user_id: str,
                                         entries: list[RoomSyncEntry], joined: dict[str, dict[str, Any]]) -> None:
        """Presence of users who came to share a room with the user since the token, as Synapse
        sends it: every member of a room the user joined, and whoever joined, was invited to or
        knocked on a room whose new events this sync carries. Their presence may not have moved
        since the token, so the presence stream alone would never show it."""
        users: set[str] = set()
        for entry in entries:
            body = joined.get(entry.room_id)
            if body is None:
                continue
            if entry.changed:
                users.update(await self._events.get_members(entry.room_id))
                continue
            for event in (*body["state"]["events"], *body["timeline"]["events"]):
                content = event.get("content")
                if (event.get("type") == "m.room.member" and isinstance(event.get("state_key"), str)
                        and isinstance(content, dict) and content.get("membership") in ("join", "invite", "knock")):
                    users.add(event["state_key"])
        users.discard(user_id)
        if not users:
            return
        assert self._presence_lookup is not None
        section = response.get("presence")
        current = section.get("events", []) if isinstance(section, dict) else []
        already = {e.get("sender") for e in current}
        extra = [e for e in await self._presence_lookup(sorted(users)) if e["sender"] not in already]
        if extra:
            response["presence"] = {"events": [*current, *extra]}

    # --- account data and ephemeral ------------------------------------------------------
    async def _with_completed_state(self, entries: list[RoomSyncEntry], since_pos: int, now_pos: int
                                    ) -> list[RoomSyncEntry]:
        """Joined rooms whose full state (a partial-state join's) arrived since the token: their
        state section starts afresh, as for a new join (Synapse does the same)."""
        if self._partial_state is None:
            return entries
        joined = [e.room_id for e in entries if e.section == JOIN and e.state_after is not None]
        completed = await self._partial_state.rooms_completed_between(joined, since_pos, now_pos)
        if not completed:
            return entries
        return [dataclasses.replace(e, state_after=None, changed=True) if e.room_id in completed and e.section == JOIN
                else e for e in entries]

    async def _account_data_changes(self, user_id: str, since: SyncToken | None, now: SyncToken
                                    ) -> dict[str, Any]:
        out: dict[str, Any] = {"global": [], "rooms": {}}
        start = 0 if since is None else since.get("account_data")
        end = now.get("account_data")
        if since is None or start < end:
            changes = await self._account_data.get_changes(user_id, start, end)
            out["global"] = [{"type": t, "content": c} for t, c in sorted(changes.global_data.items())]
            out["rooms"] = changes.room_data
        if since is None or since.get("push_rules") < now.get("push_rules"):
            if since is None or await self._push_rules.version(user_id) > since.get("push_rules"):
                out["global"].append({"type": PUSH_RULES_ACCOUNT_DATA_TYPE,
                                      "content": await self._push_rules.account_data_content(user_id)})
        return out

    async def _ephemeral_events(self, user_id: str, room_ids: list[str], since: SyncToken | None,
                                now: SyncToken, sync_filter: SyncFilter) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        if not room_ids or sync_filter.ephemeral.is_empty_set:
            return out
        for source in self._ephemeral:
            start = None if since is None else since.get(source.stream)
            end = now.get(source.stream)
            if start is not None and start == end:
                continue
            try:
                found = await source.get_events(user_id, room_ids, start, end)
            except Exception:
                # One broken source must not take /sync down with it.
                logger.exception("ephemeral source %s failed", source.stream)
                continue
            for room_id, events in found.items():
                out.setdefault(room_id, []).extend(events)
        return {room_id: kept for room_id, events in out.items()
                if (kept := [dict(e) for e in filter_plain_events(events, sync_filter.ephemeral, room_id)])}

    async def _room_fields_of(self, user_id: str, room_ids: list[str], since: SyncToken | None, now: SyncToken
                              ) -> list[dict[str, dict[str, Any]]]:
        """What each room fields provider adds to the rooms (a failing provider adds nothing)."""
        if not room_ids:
            return []
        out = []
        for provider in self._room_fields:
            try:
                out.append(await provider(user_id, room_ids, since, now))
            except Exception:
                logger.exception("room fields provider %r failed", provider)
        return out

    async def _add_room_fields(self, request: SyncRequest, joined: dict[str, dict[str, Any]],
                               since: SyncToken | None, now: SyncToken,
                               provided: list[dict[str, dict[str, Any]]] | None = None) -> None:
        """Unread counts and the providers' fields on each joined room; `provided` is what
        `_room_fields_of` gave for these rooms (or more), read ahead of time."""
        for body in joined.values():
            body["unread_notifications"] = {"highlight_count": 0, "notification_count": 0}
            if request.filter.timeline.unread_thread_notifications:
                body["unread_thread_notifications"] = {}
        if not joined:
            return
        if provided is None:
            provided = await self._room_fields_of(request.requester.user_id, list(joined), since, now)
        for extra in provided:
            for room_id, fields in extra.items():
                if room_id in joined:
                    joined[room_id].update(fields)
        if not request.filter.timeline.unread_thread_notifications:
            # Providers report thread counts apart from the main timeline's; a client that did not
            # opt in to thread counts gets them folded into the room's totals (spec, "Threading").
            for body in joined.values():
                threads = body.pop("unread_thread_notifications", None) or {}
                totals = body["unread_notifications"]
                for counts in threads.values():
                    for key in ("highlight_count", "notification_count"):
                        totals[key] = totals.get(key, 0) + counts.get(key, 0)

    def _empty_room_body(self, now: SyncToken, entry: RoomSyncEntry) -> dict[str, Any]:
        prev_batch = str(now.replace(events=entry.upto))
        return {"timeline": {"events": [], "limited": False, "prev_batch": prev_batch},
                "state": {"events": []}, "summary": {}}

    # --- rendering joined and left rooms ------------------------------------------------
    async def _render_rooms(self, request: SyncRequest, entries: list[RoomSyncEntry], now: SyncToken,
                            ignored: frozenset[str], serialize_as: Requester,
                            own_txns: dict[str, tuple[str | None, str]]) -> dict[str, dict[str, Any]]:
        if not entries:
            return {}
        requester = request.requester
        user_id = requester.user_id
        sync_filter = request.filter
        timelines = await self._timeline_reader.read(entries, user_id, sync_filter, ignored)
        include_room_id = sync_filter.event_format == "federation"
        all_timeline = [e for entry in entries for e in timelines[entry.room_id].events]
        # The timelines are serialized (their bundled aggregations read) while the rooms' state and
        # summaries are read: independent reads, so one round trip of latency instead of two.
        serialized_timeline, (room_state, summaries) = await asyncio.gather(
            self._serializer.serialize(all_timeline, serialize_as, include_room_id=include_room_id,
                                       with_relations={i for t in timelines.values() for i in t.related}),
            self._state_and_summaries(request, entries, timelines))
        timeline_json = iter(serialized_timeline)
        all_state = [e for entry in entries for e in room_state[entry.room_id]]
        state_json = iter(await self._serializer.serialize(all_state, serialize_as,
                                                           include_room_id=include_room_id, bundle=False))
        _note_own_txns(own_txns, user_id, (*all_timeline, *all_state))
        fields = sync_filter.event_fields
        out: dict[str, dict[str, Any]] = {}
        for entry in entries:
            room_id = entry.room_id
            timeline = timelines[room_id]
            events_json = [next(timeline_json) for _ in timeline.events]
            state_json_room = [next(state_json) for _ in room_state[room_id]]
            if fields is not None:
                events_json = [only_fields(e, fields) for e in events_json]
                state_json_room = [only_fields(e, fields) for e in state_json_room]
            prev = event_position(timeline.events[0]) - 1 if timeline.events else entry.upto
            # A room (re)joined since the token starts afresh: limited, as Synapse marks it.
            limited = timeline.limited or (request.since is not None and not request.full_state
                                           and entry.section == JOIN and entry.changed)
            body: dict[str, Any] = {
                "timeline": {"events": events_json, "limited": limited,
                             "prev_batch": str(now.replace(events=prev))},
                "state": {"events": state_json_room},
            }
            if entry.section == JOIN:
                body["summary"] = summaries.get(room_id, {})
            out[room_id] = body
        return out

    async def _state_and_summaries(self, request: SyncRequest, entries: list[RoomSyncEntry],
                                   timelines: dict[str, Timeline]
                                   ) -> tuple[dict[str, list[Event]], dict[str, dict[str, Any]]]:
        """Each room's `state` section (its events, filtered) and the summaries of joined rooms."""
        requester = request.requester
        user_id = requester.user_id
        sync_filter = request.filter

        # State at the start of each timeline, and at the token for deltas.
        firsts = {e.room_id: timelines[e.room_id].events[0].event_id
                  for e in entries if timelines[e.room_id].events}
        # The timeline reads brought the state groups of their events (an event without any has no state).
        start_groups: dict[str, int | None] = {
            room_id: timelines[room_id].groups_around.get(event_id, (None, 0))[0]
            for room_id, event_id in firsts.items()}
        no_timeline = [(e.room_id, e.upto) for e in entries if e.room_id not in firsts and not e.never_joined]
        start_groups.update(await self._store.get_state_groups_at(no_timeline))
        deltas_from = [(e.room_id, e.state_after) for e in entries
                       if e.state_after is not None and not e.never_joined]
        since_groups = await self._store.get_state_groups_at(deltas_from)

        lazy = sync_filter.lazy_load_members
        device_key = (user_id, requester.device_id)
        if lazy and (request.since is None or request.full_state):
            self._lazy_sent.pop(device_key, None)
        sent = self._lazy_sent.setdefault(device_key, {}) if lazy else {}
        if lazy:
            self._lazy_sent.move_to_end(device_key)
            while len(self._lazy_sent) > LAZY_CACHE_DEVICES:
                self._lazy_sent.popitem(last=False)

        state_ids: dict[str, dict[tuple[str, str], str]] = {}
        full_states: dict[str, dict[tuple[str, str], str]] = {}
        for entry in entries:
            room_id = entry.room_id
            if entry.never_joined:
                state_ids[room_id] = {}
                continue
            group = start_groups.get(room_id)
            start = await self._events.get_state_for_group(group) if group is not None else {}
            full_states[room_id] = start
            if entry.state_after is None:
                state_ids[room_id] = dict(start)
                continue
            since_group = since_groups.get(room_id)
            if since_group is not None and since_group == group:
                state_ids[room_id] = {}
                continue
            before = await self._events.get_state_for_group(since_group) if since_group is not None else {}
            state_ids[room_id] = rendering.state_delta(before, start)
        await self._add_hidden_state(entries, timelines, full_states, state_ids, user_id)

        summaries = await self._summaries(user_id, entries, timelines, state_ids, request)
        for entry in entries:
            room_id = entry.room_id
            if not lazy or entry.never_joined:
                continue
            senders = {e.sender for e in timelines[room_id].events}
            always = [*(summaries.get(room_id, {}).get("m.heroes", []))]
            if entry.state_after is None:
                always.append(user_id)
            room_sent = sent.setdefault(room_id, {})
            members = rendering.members_to_load(
                full_states.get(room_id, {}), timeline_senders=sorted(senders), always=always,
                already_sent=None if sync_filter.state.include_redundant_members else room_sent)
            chosen = rendering.select_state(state_ids[room_id], lazy_load=True, lazy_members=members,
                                            gap_members_kept=entry.state_after is not None)
            state_ids[room_id] = chosen
            for (event_type, state_key), event_id in chosen.items():
                if event_type == "m.room.member":
                    room_sent[state_key] = event_id

        state_events = await self._events.get_events(
            {eid for ids in state_ids.values() for eid in ids.values()})
        room_state: dict[str, list[Event]] = {}
        for entry in entries:
            ids = state_ids[entry.room_id].values()
            events = sorted((state_events[eid] for eid in ids if eid in state_events), key=event_position)
            room_state[entry.room_id] = rendering.filter_state_events(events, sync_filter.state,
                                                                      entry.room_id)

        return room_state, summaries

    async def _add_hidden_state(self, entries: list[RoomSyncEntry], timelines: dict[str, Timeline],
                                full_states: dict[str, dict[tuple[str, str], str]],
                                state_ids: dict[str, dict[tuple[str, str], str]], user_id: str) -> None:
        """Add the state that changed without the timeline showing it: the room's state at the end of
        the range for those keys, unless the timeline itself ends with it.

        - Events hidden from the timeline (members who joined while the user was away).
        - A timeline that spans the user's rejoin: a room on another server changed while the user
          was out, and those events never reached us (the state at the rejoin came whole with
          send_join). Every key the timeline does not touch takes its value at the end, as Synapse's
          `_calculate_state` does, so a client applying `state` and then the timeline ends up with
          the room as it is.
        """
        hidden: dict[str, set[tuple[str, str]]] = {}
        rejoined: set[str] = set()
        for entry in entries:
            timeline = timelines[entry.room_id]
            if entry.never_joined or not timeline.events:
                continue
            if any(e.type == "m.room.member" and e.state_key == user_id and e.membership == "join"
                   for e in timeline.events[1:]):
                rejoined.add(entry.room_id)
            if not timeline.hidden_state:
                continue
            start = event_position(timeline.events[0])
            keys = {e.state_tuple() for e in timeline.hidden_state if event_position(e) > start}
            if keys:
                hidden[entry.room_id] = keys
        if not hidden and not rejoined:
            return
        end_groups = await self._store.get_state_groups_at(
            [(e.room_id, e.upto) for e in entries if e.room_id in hidden or e.room_id in rejoined])
        for room_id in hidden.keys() | rejoined:
            group = end_groups.get(room_id)
            if group is None:
                continue
            end = await self._events.get_state_for_group(group)
            events = timelines[room_id].events
            in_timeline = {e.event_id for e in events}
            keys = hidden.get(room_id, set())
            if room_id in rejoined:
                touched = {e.state_tuple() for e in events if e.is_state()}
                keys = keys | (end.keys() - touched)
            for key in keys:
                event_id = end.get(key)
                if event_id is not None and event_id not in in_timeline and full_states[room_id].get(key) != event_id:
                    state_ids[room_id][key] = event_id

    async def _summaries(self, user_id: str, entries: list[RoomSyncEntry], timelines: dict[str, Timeline],
                         state_ids: dict[str, dict[tuple[str, str], str]], request: SyncRequest
                         ) -> dict[str, dict[str, Any]]:
        """Member counts and heroes for joined rooms a client sees whole or whose membership moved."""
        wanted = [
            e.room_id for e in entries if e.section == JOIN and (
                e.state_after is None
                or any(k[0] == "m.room.member" for k in state_ids[e.room_id])
                or any(ev.type == "m.room.member" for ev in timelines[e.room_id].events))
        ]
        if not wanted:
            return {}
        # Heroes are only needed for unnamed rooms, but reading every room's first members with the
        # counts and names saves the round trip of asking for them once the names are known.
        inputs = await self._store.get_room_summaries(wanted, NAMING_TYPES, ("join", "invite"),
                                                      rendering.MAX_HEROES + 1)
        counts, naming = inputs.member_counts, inputs.naming_state
        naming_events = await self._events.get_events(
            {eid for ids in naming.values() for eid in ids.values()})

        def naming_event(room_id: str, event_type: str) -> Event | None:
            return naming_events.get(naming[room_id].get((event_type, ""), ""))

        unnamed = [room_id for room_id in wanted
                   if not rendering.has_display_name(naming_event(room_id, "m.room.name"),
                                                     naming_event(room_id, "m.room.canonical_alias"))]
        present = {room_id: inputs.first_members[room_id] for room_id in unnamed}
        lonely = [room_id for room_id in unnamed if not [u for u in present[room_id] if u != user_id]]
        departed = await self._store.get_first_members(lonely, ("leave", "ban"), rendering.MAX_HEROES + 1)
        out = {}
        for room_id in wanted:
            heroes = None
            if room_id in present:
                heroes = rendering.pick_heroes(user_id, present[room_id], departed.get(room_id, []))
            out[room_id] = rendering.summary(counts.get(room_id, {}), heroes)
        return out

    # --- invites and knocks ---------------------------------------------------------------
    async def _stripped_states(self, entries: list[RoomSyncEntry], requester: Requester,
                               ignored: frozenset[str], own_txns: dict[str, tuple[str | None, str]]
                               ) -> list[list[dict[str, Any]] | None]:
        if not entries:
            return []
        member_ids = [e.membership.event_id for e in entries]
        members = await self._events.get_events(member_ids)
        groups = await self._store.get_state_groups_around(member_ids)
        states = {}
        for entry in entries:
            after = groups.get(entry.membership.event_id, (None, None))[1]
            states[entry.room_id] = await self._events.get_state_for_group(after) if after is not None else {}
        wanted = {eid for state in states.values() for eid in rendering.stripped_state_keys(state)}
        loaded = await self._events.get_events(wanted)
        member_events = [members[eid] for eid in member_ids if eid in members]
        member_json = await self._serializer.serialize(member_events, requester, include_room_id=False,
                                                       bundle=False)
        _note_own_txns(own_txns, requester.user_id, member_events)
        serialized = dict(zip((e.event_id for e in member_events), member_json, strict=True))
        out: list[list[dict[str, Any]] | None] = []
        for entry in entries:
            member = members.get(entry.membership.event_id)
            if member is None or (entry.section == INVITE and member.sender in ignored):
                out.append(None)
                continue
            invite_state = member.internal_metadata.get("invite_room_state")
            if not states[entry.room_id] and isinstance(invite_state, list):
                # An invite into a room this server is not in: the stripped state its server sent.
                stripped = [dict(s) for s in invite_state if isinstance(s, dict)
                            and (s.get("type"), s.get("state_key")) != ("m.room.member", member.state_key)]
            else:
                stripped = [rendering.stripped_event(loaded[eid])
                            for eid in rendering.stripped_state_keys(states[entry.room_id]) if eid in loaded]
            stripped.append(serialized[member.event_id])
            out.append(stripped)
        return out



def _response_skeleton(token: SyncToken, rooms: dict[str, dict[str, Any]],
                       account_data: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "next_batch": str(token),
        "rooms": rooms,
        "account_data": {"events": account_data},
        "presence": {"events": []},
        "to_device": {"events": []},
        "device_lists": {"changed": [], "left": []},
        # What Synapse sends before any keys exist; clients read a missing count as "upload more".
        "device_one_time_keys_count": {"signed_curve25519": 0},
        "device_unused_fallback_key_types": [],
    }


def _note_own_txns(own_txns: dict[str, tuple[str | None, str]], user_id: str, events: Sequence[Event]) -> None:
    for event in events:
        txn_id = event.internal_metadata.get("txn_id")
        if txn_id and event.sender == user_id:
            own_txns[event.event_id] = (event.internal_metadata.get("device_id"), txn_id)


def _add_transaction_ids(response: dict[str, Any], own_txns: dict[str, tuple[str | None, str]],
                         device_id: str | None) -> None:
    """Give `device_id`'s copy of a shared response the transaction IDs of the events it sent
    (the spec shows them only to the sending device), copying just the dicts on the way."""
    mine = {event_id: txn_id for event_id, (device, txn_id) in own_txns.items() if device == device_id}
    if not mine:
        return
    rooms = {section: dict(bodies) for section, bodies in response["rooms"].items()}
    for bodies in rooms.values():
        for room_id, body in bodies.items():
            copied = None
            for key in ("timeline", "state", "invite_state", "knock_state"):
                block = body.get(key)
                events = block.get("events") if isinstance(block, dict) else None
                if not events or not any(e.get("event_id") in mine for e in events):
                    continue
                patched = [
                    {**e, "unsigned": {**e.get("unsigned", {}), "transaction_id": mine[e["event_id"]]}}
                    if e.get("event_id") in mine else e
                    for e in events]
                copied = copied if copied is not None else dict(body)
                copied[key] = {**block, "events": patched}
            if copied is not None:
                bodies[room_id] = copied
    response["rooms"] = rooms
