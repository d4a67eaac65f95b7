"""Event relations (`m.relates_to`) as plain data: which relation an event's content declares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

THREAD = "m.thread"
REPLACE = "m.replace"
REFERENCE = "m.reference"
ANNOTATION = "m.annotation"


def relation_of(content: Mapping[str, Any]) -> tuple[str, str, str | None] | None:
    """(rel_type, parent event_id, annotation key) from an event's content, if it has a relation."""
    relates_to = content.get("m.relates_to")
    if relates_to is None or not isinstance(relates_to, Mapping):  # most events: no ABC check
        return None
    rel_type, parent = relates_to.get("rel_type"), relates_to.get("event_id")
    if not isinstance(rel_type, str) or not isinstance(parent, str) or not rel_type or not parent:
        return None
    key = relates_to.get("key") if rel_type == ANNOTATION and isinstance(relates_to.get("key"), str) else None
    return rel_type, parent, key
