"""Relations and threads: /relations, /threads and bundled aggregations.

Every event served with `bundle=True` gets `unsigned.m.relations` with its latest edit by
the original sender (`m.replace`), its thread summary (`m.thread`) and the events that
reference it (`m.reference`). Annotations are not bundled, as the spec says since v1.7.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from homeserver.requester import Requester
from homeserver.errors import invalid_param, not_found
from homeserver.events.event import Event
from homeserver.events.relations import ANNOTATION, REFERENCE, REPLACE, relation_of
from homeserver.rooms.history import (
    HistoryVisibilityFilter,
    RoomHistory,
    bound_of,
    earlier_bound,
    token_after,
    token_before,
)
from homeserver.rooms.serialize import ClientEventSerializer
from homeserver.streams.client_tokens import parse_pagination_token
from storage.stores.events import EventStore
from storage.stores.relations import THREAD, RelationStore

# The spec asks for at least three levels when `recurse` is set.
RECURSION_DEPTH = 3
DEFAULT_RELATIONS_LIMIT = 5
DEFAULT_THREADS_LIMIT = 5
MAX_LIMIT = 1000


def _is_valid_edit(original: Event, edit: Event) -> bool:
    # The spec's validity rules for replacements that the server can check.
    if edit.sender != original.sender or edit.type != original.type or edit.room_id != original.room_id:
        return False
    if edit.is_state() or original.is_state():
        return False
    if edit.type != "m.room.encrypted" and not isinstance(edit.content.get("m.new_content"), Mapping):
        return False
    original_relation = relation_of(original.content)
    return original_relation is None or original_relation[0] != REPLACE


class RelationsService:
    def __init__(self, events: EventStore, store: RelationStore, history: RoomHistory,
                 visibility: HistoryVisibilityFilter, serializer: ClientEventSerializer):
        self._events = events
        self._store = store
        self._history = history
        self._visibility = visibility
        self._serializer = serializer

    async def _visible_parent(self, user_id: str, room_id: str, event_id: str) -> Event:
        event = await self._events.get_event(event_id)
        if (event is None or event.room_id != room_id or event.rejected_reason is not None
                or not await self._visibility.filter(user_id, [event])):
            raise not_found("Event not found")
        return event

    # --- /relations ----------------------------------------------------------------------
    async def get_relations(self, requester: Requester, room_id: str, event_id: str, *, relation_type: str | None,
                            event_type: str | None, from_token: str | None, to_token: str | None, limit: int,
                            direction: str, recurse: bool) -> dict[str, Any]:
        """The events relating to an event, a page at a time."""
        user_id = requester.user_id
        cap = await self._history.check_can_read(user_id, room_id)
        await self._visible_parent(user_id, room_id, event_id)
        backwards = direction == "b"
        from_bound = bound_of(parse_pagination_token(from_token, "from")) if from_token else None
        to_bound = bound_of(parse_pagination_token(to_token, "to")) if to_token else None
        if cap is not None:
            # Former members read no further than their departure.
            if backwards:
                from_bound = cap if from_bound is None else earlier_bound(from_bound, cap)
            else:
                to_bound = cap if to_bound is None else earlier_bound(to_bound, cap)
        limit = max(0, min(limit, MAX_LIMIT))
        rows = await self._store.get_children(
            room_id, event_id, relation_type=relation_type, event_type=event_type, backwards=backwards,
            limit=limit, from_bound=from_bound, to_bound=to_bound, max_hops=RECURSION_DEPTH if recurse else 1)
        events = await self._history.load_visible(user_id, rows)
        result: dict[str, Any] = {"chunk": await self._serializer.serialize(events, requester)}
        if rows and len(rows) >= limit:
            last = rows[-1].position
            result["next_batch"] = token_before(last) if backwards else token_after(last)
        if from_token:
            result["prev_batch"] = from_token
        if recurse:
            result["recursion_depth"] = RECURSION_DEPTH
        return result

    # --- /threads --------------------------------------------------------------------------
    async def get_threads(self, requester: Requester, room_id: str, *, include: str, from_token: str | None,
                          limit: int) -> dict[str, Any]:
        """The room's thread roots, most recently active first, with their summaries bundled."""
        user_id = requester.user_id
        await self._history.check_can_read(user_id, room_id)
        before = None
        if from_token:
            if not from_token.isdigit() or len(from_token) > 18:
                raise invalid_param("from: unknown pagination token")
            before = int(from_token)
        limit = max(1, min(limit, MAX_LIMIT))
        rows = await self._store.list_threads(room_id, participant=user_id if include == "participated" else None,
                                              before_stream=before, limit=limit)
        loaded = await self._events.get_events([root for root, _ in rows])
        roots = [loaded[root] for root, _ in rows if root in loaded and loaded[root].room_id == room_id]
        visible = await self._visibility.filter(user_id, roots)
        result: dict[str, Any] = {"chunk": await self._serializer.serialize(visible, requester)}
        if len(rows) >= limit:
            result["next_batch"] = str(rows[-1][1])
        return result

    # --- bundled aggregations --------------------------------------------------------------
    async def bundled_aggregations(self, events: Sequence[Event],
                                   requester: Requester | None) -> dict[str, dict[str, Any]]:
        """event_id -> {"m.relations": ...} for the events that have edits, threads or references."""
        parents: dict[str, Event] = {}
        for event in events:
            if event.is_state() or event.internal_metadata.get("redacted_by"):
                continue
            relation = relation_of(event.content)
            # Edits and reactions are not aggregated onto themselves.
            if relation is not None and relation[0] in (REPLACE, ANNOTATION):
                continue
            parents[event.event_id] = event
        if not parents:
            return {}
        user_id = requester.user_id if requester is not None else None
        found = await self._store.get_aggregations(list(parents), user_id)
        if not found.children and not found.threads:
            return {}
        edit_ids = [c.event_id for c in found.children if c.relation_type == REPLACE]
        latest_ids = [t.latest_event_id for t in found.threads.values()]
        loaded = await self._events.get_events([*edit_ids, *latest_ids])
        relations: dict[str, dict[str, Any]] = {}

        latest_edit: dict[str, Event] = {}
        for child in found.children:
            parent = parents[child.relates_to_id]
            if child.relation_type == REFERENCE:
                chunk = relations.setdefault(parent.event_id, {}).setdefault(REFERENCE, {"chunk": []})["chunk"]
                chunk.append({"event_id": child.event_id})
                continue
            edit = loaded.get(child.event_id)
            if edit is None or not _is_valid_edit(parent, edit):
                continue
            current = latest_edit.get(parent.event_id)
            # The most recent by origin_server_ts, ties broken by the greatest event ID.
            if current is None or (edit.origin_server_ts, edit.event_id) > (current.origin_server_ts,
                                                                            current.event_id):
                latest_edit[parent.event_id] = edit
        if latest_edit:
            serialized = await self._serializer.serialize(list(latest_edit.values()), requester, bundle=False)
            for parent_id, edit_json in zip(latest_edit, serialized, strict=True):
                relations.setdefault(parent_id, {})[REPLACE] = edit_json

        summaries = [(parent_id, s, loaded[s.latest_event_id]) for parent_id, s in found.threads.items()
                     if s.latest_event_id in loaded]
        if summaries:
            latest_json = await self._serializer.serialize([latest for _, _, latest in summaries], requester)
            for (parent_id, summary, _), latest in zip(summaries, latest_json, strict=True):
                relations.setdefault(parent_id, {})[THREAD] = {
                    "latest_event": latest,
                    "count": summary.count,
                    "current_user_participated": summary.user_participated or parents[parent_id].sender == user_id,
                }
        return {event_id: {"m.relations": bundle} for event_id, bundle in relations.items()}
