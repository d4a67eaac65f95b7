"""Server-side search (/search, category `room_events`): indexing event texts and answering queries.

Texts are indexed after each local event commits (an after-persist callback), and a redaction
that applies drops its target from the index. Queries only cover rooms the searcher is or was
in, and every hit passes history visibility before it is returned, so the index itself can be
shared by all users.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from homeserver.client_input import MAX_SAFE_INT
from homeserver.errors import bad_json, invalid_param
from homeserver.events.event import Event
from homeserver.events.sync_filter import EventFilter, parse_event_filter
from homeserver.requester import Requester
from homeserver.rooms.history import RoomHistory, token_after, token_before
from homeserver.rooms.room_event_filter import check_room_event_filter, conditions_of
from homeserver.rooms.serialize import ClientEventSerializer
from homeserver.streams.stages import EventStage
from storage.stores.events import EventStore
from storage.stores.search import SearchHit, SearchQuery, SearchStore, search_words
from storage.stores.stages import StagePositionStore
from storage.stores.timeline import Bound, TimelineStore

# Which text of which event type is indexed, under the key clients name in `keys`.
INDEXED_TEXTS: dict[str, tuple[str, str]] = {
    "m.room.message": ("content.body", "body"),
    "m.room.name": ("content.name", "name"),
    "m.room.topic": ("content.topic", "topic"),
}
ALL_KEYS = tuple(key for key, _ in INDEXED_TEXTS.values())
ORDERS = ("rank", "recent")
DEFAULT_LIMIT = 10
INDEX_STAGE = "search_index"
# How long /search waits for indexing to catch up before answering from what is indexed.
INDEX_WAIT_S = 5.0
MAX_LIMIT = 100
DEFAULT_CONTEXT = 5
MAX_CONTEXT = 100
# Hits are fetched in batches larger than the page because history visibility may hide some.
FETCH_FACTOR = 2
MAX_FETCH_ROUNDS = 10
READABLE_MEMBERSHIPS = ("join", "leave", "ban")


def texts_to_index(event: Event) -> list[tuple[str, str]]:
    """The (key, text) pairs of an event that search should find, possibly none."""
    entry = INDEXED_TEXTS.get(event.type)
    if entry is None or event.rejected_reason is not None:
        return []
    key, field = entry
    value = event.content.get(field)
    if not isinstance(value, str) or not value.strip():
        return []
    return [(key, value)]


@dataclasses.dataclass(frozen=True)
class RoomEventsRequest:
    words: tuple[str, ...]
    keys: tuple[str, ...]
    event_filter: EventFilter
    order_by: str
    before_limit: int
    after_limit: int
    include_profile: bool
    with_context: bool
    include_state: bool
    group_by: tuple[str, ...]


def _int_field(value: Any, field: str, default: int, maximum: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad_json(f"{field}: must be a non-negative integer")
    return min(value, maximum)


def parse_room_events(criteria: Any) -> RoomEventsRequest:
    """Check and read `search_categories.room_events`; 400 naming the field on bad input."""
    prefix = "search_categories.room_events"
    if not isinstance(criteria, Mapping):
        raise bad_json(f"{prefix}: must be an object")
    term = criteria.get("search_term")
    if not isinstance(term, str):
        raise bad_json(f"{prefix}.search_term: required, a string")
    keys = criteria.get("keys", list(ALL_KEYS))
    if not isinstance(keys, list) or not all(k in ALL_KEYS for k in keys):
        raise bad_json(f"{prefix}.keys: must be a list of {', '.join(ALL_KEYS)}")
    raw_filter = criteria.get("filter")
    if raw_filter is None:
        raw_filter = {}
    check_room_event_filter(raw_filter, f"{prefix}.filter")
    order_by = criteria.get("order_by", "rank")
    if order_by not in ORDERS:
        raise bad_json(f"{prefix}.order_by: must be 'rank' or 'recent'")
    context = criteria.get("event_context")
    if context is not None and not isinstance(context, Mapping):
        raise bad_json(f"{prefix}.event_context: must be an object")
    context = context or {}
    include_profile = context.get("include_profile", False)
    include_state = criteria.get("include_state", False)
    if not isinstance(include_profile, bool) or not isinstance(include_state, bool):
        raise bad_json(f"{prefix}: include_profile and include_state must be booleans")
    groupings = criteria.get("groupings")
    if groupings is None:
        groupings = {}
    group_by = groupings.get("group_by", []) if isinstance(groupings, Mapping) else None
    if not isinstance(group_by, list) or not all(
            isinstance(g, Mapping) and g.get("key") in ("room_id", "sender") for g in group_by):
        raise bad_json(f"{prefix}.groupings.group_by: must be a list of {{\"key\": \"room_id\" | \"sender\"}}")
    return RoomEventsRequest(
        words=tuple(search_words(term)), keys=tuple(keys), event_filter=parse_event_filter(raw_filter),
        order_by=order_by,
        before_limit=_int_field(context.get("before_limit"), f"{prefix}.event_context.before_limit",
                                DEFAULT_CONTEXT, MAX_CONTEXT),
        after_limit=_int_field(context.get("after_limit"), f"{prefix}.event_context.after_limit",
                               DEFAULT_CONTEXT, MAX_CONTEXT),
        include_profile=include_profile, with_context="event_context" in criteria, include_state=include_state,
        group_by=tuple(dict.fromkeys(g["key"] for g in group_by)),
    )


def parse_batch(token: str | None, order_by: str) -> tuple[int, int | None]:
    """(offset, before_stream) from a next_batch token of the same ordering."""
    if token is None:
        return 0, None
    marker, number = ("r", token[1:]) if order_by == "rank" else ("s", token[1:])
    if not token.startswith(marker) or not number.isdigit() or int(number) > MAX_SAFE_INT:
        raise invalid_param("next_batch: not a batch token of this search")
    return (int(number), None) if order_by == "rank" else (0, int(number))


class SearchService:
    def __init__(self, events: EventStore, store: SearchStore, timeline: TimelineStore, history: RoomHistory,
                 serializer: ClientEventSerializer, positions: StagePositionStore, *,
                 registry: CollectorRegistry | None = None):
        self._events = events
        self._store = store
        self._timeline = timeline
        self._history = history
        self._serializer = serializer
        # The index follows the events stream after commit, a batch per transaction.
        self.stage = EventStage(INDEX_STAGE, events, positions, self._index_batch, registry=registry)

    async def _index_batch(self, events: Sequence[Event], upto: int) -> bool:
        rows: list[tuple[str, str, str, str]] = []
        redacted: list[str] = []
        for event in events:
            if event.rejected_reason is not None:
                continue
            if event.redacts is not None and event.internal_metadata.get("redacted_by") is None:
                target = await self._events.get_event(event.redacts)
                if target is not None and target.internal_metadata.get("redacted_by") == event.event_id:
                    redacted.append(target.event_id)
            if event.internal_metadata.get("redacted_by") is None:
                rows.extend((event.event_id, event.room_id, key, text) for key, text in texts_to_index(event))
        await self._store.index_batch(rows, redacted, stage=INDEX_STAGE, upto=upto)
        return True

    async def search(self, requester: Requester, body: Mapping[str, Any], next_batch: str | None
                     ) -> dict[str, Any]:
        """The /search response body."""
        # Indexing follows the events stream after commit; a search sees what was sent before it.
        await self.stage.wait_for_live(INDEX_WAIT_S)
        categories = body.get("search_categories")
        if not isinstance(categories, Mapping):
            raise bad_json("search_categories: required, an object")
        if "room_events" not in categories:
            return {"search_categories": {}}
        request = parse_room_events(categories["room_events"])
        return {"search_categories": {"room_events": await self._room_events(requester, request, next_batch)}}

    async def _room_events(self, requester: Requester, request: RoomEventsRequest, next_batch: str | None
                           ) -> dict[str, Any]:
        user_id = requester.user_id
        limit = min(request.event_filter.limit or DEFAULT_LIMIT, MAX_LIMIT)
        offset, before_stream = parse_batch(next_batch, request.order_by)
        # The rooms the searcher is or was in, as the filter narrows them, are read by the search.
        rooms = request.event_filter.rooms
        query = SearchQuery(words=request.words, member=user_id, memberships=READABLE_MEMBERSHIPS,
                            room_ids=None if rooms is None else tuple(sorted(rooms)),
                            not_room_ids=tuple(sorted(request.event_filter.not_rooms)), keys=request.keys,
                            conditions=conditions_of(request.event_filter),
                            order_by_rank=request.order_by == "rank", limit=max(limit * FETCH_FACTOR, 10),
                            offset=offset, before_stream=before_stream)
        results: list[tuple[SearchHit, Event]] = []
        bundled: dict[str, dict[str, Any]] = {}
        count = 0
        more = False
        for _ in range(MAX_FETCH_ROUNDS if limit else 0):
            hits, count = await self._store.search(query)
            exhausted = len(hits) < query.limit
            # Every hit's visibility, whatever its room, in one read.
            loaded, more_bundled = await self._history.load_visible_bundled(
                requester, [hit.row for hit in hits if hit.live])
            visible = {event.event_id: event for event in loaded}
            bundled.update(more_bundled)
            for index, hit in enumerate(hits):
                offset += 1
                before_stream = hit.row.stream_ordering
                event = visible.get(hit.row.event_id)
                if event is not None:
                    results.append((hit, event))
                    if len(results) == limit:
                        more = index < len(hits) - 1 or not exhausted
                        break
            if len(results) == limit or exhausted:
                break
            query = dataclasses.replace(query, offset=offset, before_stream=before_stream)
        # The result events are only encoded into the response: those with nothing added for this
        # reader go as encoded JSON.
        serialized = await self._serializer.serialize([event for _, event in results], requester, bundled=bundled,
                                                      fragments=True)
        out: dict[str, Any] = {
            "results": [{"rank": hit.rank, "result": result}
                        for (hit, _), result in zip(results, serialized, strict=True)],
            "count": count,
            "highlights": list(request.words),
        }
        if request.with_context:
            for entry, (hit, event) in zip(out["results"], results, strict=True):
                entry["context"] = await self._context(requester, hit, event, request)
        if more:
            out["next_batch"] = f"r{offset}" if request.order_by == "rank" else f"s{before_stream}"
        if request.group_by:
            out["groups"] = _groups([event for _, event in results], request.group_by)
        if request.include_state:
            out["state"] = await self._room_states(requester, {event.room_id for _, event in results})
        return out

    async def _context(self, requester: Requester, hit: SearchHit, event: Event, request: RoomEventsRequest
                       ) -> dict[str, Any]:
        position = hit.row.position
        before_rows = await self._timeline.paginate(
            event.room_id, backwards=True, limit=request.before_limit, from_bound=Bound(position[0], position[1] - 1))
        after_rows = await self._timeline.paginate(
            event.room_id, backwards=False, limit=request.after_limit, from_bound=Bound(*position))
        visible = await self._history.load_visible(requester.user_id, [*before_rows, *after_rows])
        before_ids = {r.event_id for r in before_rows}
        before = [e for e in visible if e.event_id in before_ids]
        after = [e for e in visible if e.event_id not in before_ids]
        serialized = await self._serializer.serialize([*before, *after], requester)
        context: dict[str, Any] = {
            "events_before": serialized[:len(before)],
            "events_after": serialized[len(before):],
            "start": token_before(before_rows[-1].position if before_rows else position),
            "end": token_after(after_rows[-1].position if after_rows else position),
        }
        if request.include_profile:
            context["profile_info"] = await self._profiles(event.room_id, {e.sender for e in [event, *before, *after]})
        return context

    async def _profiles(self, room_id: str, senders: set[str]) -> dict[str, dict[str, Any]]:
        state = await self._events.get_current_state_ids(room_id)
        ids = {s: state[("m.room.member", s)] for s in senders if ("m.room.member", s) in state}
        loaded = await self._events.get_events(ids.values())
        out: dict[str, dict[str, Any]] = {}
        for sender, event_id in ids.items():
            member = loaded.get(event_id)
            if member is not None:
                out[sender] = {k: member.content[k] for k in ("displayname", "avatar_url")
                               if isinstance(member.content.get(k), str)}
        return out

    async def _room_states(self, requester: Requester, room_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for room_id in sorted(room_ids):
            membership, _ = await self._events.get_membership(room_id, requester.user_id)
            if membership != "join":
                continue  # former members do not get the room's state as it is now
            state = await self._events.get_current_state_ids(room_id)
            loaded = await self._events.get_events(state.values())
            events = [loaded[eid] for eid in sorted(state.values()) if eid in loaded]
            out[room_id] = await self._serializer.serialize(events, requester, bundle=False)
        return out


def _groups(events: Sequence[Event], keys: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """`groups` of a search response: per key, each value's result event IDs in result order."""
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for key in keys:
        by_value: dict[str, dict[str, Any]] = {}
        for event in events:
            value = event.room_id if key == "room_id" else event.sender
            group = by_value.setdefault(value, {"results": [], "order": len(by_value) + 1})
            group["results"].append(event.event_id)
        groups[key] = by_value
    return groups
