"""Serving the events of erased users: readers who were not in the room when such an event was
sent (they joined later, or read a world-readable room) get it in redacted form, as Synapse does.
Members who were joined at the time keep seeing what they saw then.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence

from homeserver.events.event import Event
from homeserver.events.redaction import redact

# user IDs -> those of them who deactivated with erasure
ErasedUsers = Callable[[Iterable[str]], Awaitable[set[str]]]


def pruned_copy(event: Event) -> Event:
    """The event in its redacted form, with the same ID and internal metadata."""
    copy = Event(redact(event.pdu, event.room_version), event.room_version, event_id=event.event_id,
                 rejected_reason=event.rejected_reason)
    copy.internal_metadata.update(event.internal_metadata)
    return copy


async def strip_erased_senders(events: Sequence[Event], unjoined_event_ids: set[str],
                               erased_users: ErasedUsers | None) -> list[Event]:
    """`events`, with those the reader was not joined at (`unjoined_event_ids`) pruned when their
    sender is erased. Costs a lookup only when the reader was outside the room for some event."""
    if erased_users is None or not unjoined_event_ids:
        return list(events)
    erased = await erased_users({e.sender for e in events if e.event_id in unjoined_event_ids})
    if not erased:
        return list(events)
    return [pruned_copy(e) if e.event_id in unjoined_event_ids and e.sender in erased else e for e in events]
