"""The `filter` parameter of /messages and /context: a RoomEventFilter, checked and turned into
database conditions so that pages come back full after filtering.

Matching in Python (for events already in hand) is `EventFilter.matches` from the sync
filtering module, which this shares its data class with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver import jsonutil
from homeserver.client_input import check_json_value
from homeserver.errors import MatrixError, bad_json
from homeserver.events.sync_filter import EventFilter, parse_event_filter
from storage.stores.timeline import EventConditions

_LIST_FIELDS = ("types", "not_types", "senders", "not_senders", "rooms", "not_rooms")
_BOOL_FIELDS = ("contains_url", "lazy_load_members", "include_redundant_members", "unread_thread_notifications")


def check_room_event_filter(value: Any, field: str = "filter") -> None:
    """400 M_BAD_JSON naming the first field of a RoomEventFilter that has the wrong shape."""
    if not isinstance(value, Mapping):
        raise bad_json(f"{field}: must be a JSON object")
    for name in _LIST_FIELDS:
        items = value.get(name)
        if items is not None and (not isinstance(items, list) or not all(isinstance(i, str) for i in items)):
            raise bad_json(f"{field}.{name}: must be a list of strings")
    for name in _BOOL_FIELDS:
        flag = value.get(name)
        if flag is not None and not isinstance(flag, bool):
            raise bad_json(f"{field}.{name}: must be true or false")
    limit = value.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise bad_json(f"{field}.limit: must be a non-negative integer")


def parse_filter_param(text: str | None, field: str = "filter") -> EventFilter:
    """The `filter` query parameter (URL-decoded JSON); absent or empty means no filter."""
    if text is None or text == "":
        return EventFilter()
    try:
        value = jsonutil.decode(text)
    except jsonutil.JSONDecodeError:
        raise MatrixError(400, "M_NOT_JSON", f"{field}: is not valid JSON") from None
    check_json_value(value)
    check_room_event_filter(value, field)
    return parse_event_filter(value)


def conditions_of(event_filter: EventFilter) -> EventConditions:
    """The part of a filter that selects events, for the timeline queries."""
    return EventConditions(
        types=event_filter.types,
        not_types=event_filter.not_types,
        senders=None if event_filter.senders is None else tuple(sorted(event_filter.senders)),
        not_senders=tuple(sorted(event_filter.not_senders)),
        contains_url=event_filter.contains_url,
    )
