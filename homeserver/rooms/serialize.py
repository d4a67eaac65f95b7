"""Turning stored events into what a client sees: redactions applied, prev_content, txn ids.

Every endpoint that returns events (/sync, /messages, /context, /event, /state,
/relations) goes through `ClientEventSerializer`, so redactions and unsigned data look
the same everywhere. Bundled aggregations are added by an optional hook that the
relations module installs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from homeserver.clock import Clock
from homeserver.events.event import Event
from homeserver.events.format import plain_client_event, plain_client_fragment, serialize_for_client
from homeserver.requester import Requester
from storage.stores.events import EventStore

# (events, requester) -> event_id -> extra unsigned keys (e.g. m.relations)
UnsignedHook = Callable[[Sequence[Event], Requester | None], Awaitable[dict[str, dict[str, Any]]]]


class ClientEventSerializer:
    def __init__(self, events: EventStore, clock: Clock):
        self._events = events
        self._clock = clock
        self._unsigned_hooks: list[UnsignedHook] = []

    def add_unsigned_hook(self, hook: UnsignedHook) -> None:
        self._unsigned_hooks.append(hook)

    async def bundled(self, events: Sequence[Event], requester: Requester | None, *,
                      related: Collection[str] | None = None) -> dict[str, dict[str, Any]]:
        """event_id -> the extra unsigned keys (bundled aggregations) `serialize` would add.

        `related`, when the caller knows it, names the events that other events relate to; the
        rest have nothing to bundle.
        """
        if related is not None:
            events = [event for event in events if event.event_id in related]
            if not events:
                return {}
        extra_unsigned: dict[str, dict[str, Any]] = {}
        for hook in self._unsigned_hooks:
            for event_id, extra in (await hook(events, requester)).items():
                extra_unsigned.setdefault(event_id, {}).update(extra)
        return extra_unsigned

    async def serialize(self, events: Sequence[Event], requester: Requester | None, *,
                        include_room_id: bool = True, bundle: bool = True,
                        bundled: dict[str, dict[str, Any]] | None = None,
                        with_relations: Collection[str] | None = None,
                        fragments: bool = False) -> list[dict[str, Any]]:
        """Client-format dicts of `events`, in order.

        `bundled` is what `bundled()` gave for these events (or more), read ahead of time; else
        `with_relations` is passed on to `bundled()` as its `related`.
        `fragments=True` is for a caller that only encodes the result into a response: events
        with nothing added for this reader then come as encoded JSON (`jsonutil.Fragment`).
        """
        now = self._clock.time_ms()
        related_ids = set()
        for event in events:
            metadata = event.internal_metadata
            if "redacted_by" in metadata or "replaces_state" in metadata:
                related_ids.update(filter(None, (metadata.get("redacted_by"), metadata.get("replaces_state"))))
        related = await self._events.get_events(related_ids) if related_ids else {}
        extra_unsigned: dict[str, dict[str, Any]] = {}
        if bundle:
            extra_unsigned = bundled if bundled is not None else await self.bundled(events, requester,
                                                                                     related=with_relations)
        user_id = requester.user_id if requester is not None else None
        device_id = requester.device_id if requester is not None else None
        out: list[Any] = []  # dicts, and Fragments where `fragments` allows
        for event in events:
            metadata = event.internal_metadata
            if (not related or ("redacted_by" not in metadata and "replaces_state" not in metadata)) \
                    and event.pdu["type"] != "m.room.redaction":
                # Most events of a page: not redacted, no previous state, no `redacts` to copy.
                txn_id = metadata.get("txn_id")
                if txn_id is not None and (event.sender != user_id or metadata.get("device_id") != device_id):
                    txn_id = None
                extra = extra_unsigned.get(event.event_id) if extra_unsigned else None
                if fragments and include_room_id and txn_id is None and not extra:
                    out.append(plain_client_fragment(event, now))
                else:
                    out.append(plain_client_event(event, now, include_room_id, txn_id, extra))
                continue
            redacted_because = None
            redaction = related.get(metadata.get("redacted_by", ""))
            if redaction is not None:
                redacted_because = serialize_for_client(redaction, now, include_room_id=include_room_id)
            prev_content = None
            replaced = related.get(metadata.get("replaces_state", ""))
            if replaced is not None:
                prev_content = replaced.content
            transaction_id = None
            if requester is not None and event.sender == user_id and metadata.get("device_id") == device_id:
                transaction_id = metadata.get("txn_id")
            unsigned = extra_unsigned.get(event.event_id) if redaction is None else None
            if prev_content is not None:
                unsigned = {**(unsigned or {}), "replaces_state": replaced.event_id}
            out.append(serialize_for_client(
                event, now, include_room_id=include_room_id, redacted_because=redacted_because,
                prev_content=prev_content, transaction_id=transaction_id, unsigned=unsigned,
            ))
        return out

    async def serialize_one(self, event: Event, requester: Requester | None, **kwargs: Any) -> dict[str, Any]:
        return (await self.serialize([event], requester, **kwargs))[0]
