"""Which application services want an event, a room's ephemeral data, a to-device message or a key change.

Pure functions over plain data, so the outbound queue can call them from wherever it reads the
streams: the caller supplies what the room looks like (its local joined members and its local
aliases) at the time of the event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from appservices.registration import AppServiceRegistration


@dataclass(frozen=True)
class RoomContext:
    """What interest depends on besides the event itself."""

    members: frozenset[str] = field(default_factory=frozenset)  # local users joined to the room
    aliases: frozenset[str] = field(default_factory=frozenset)  # local aliases pointing at the room


def _field(event: Any, name: str) -> Any:
    if isinstance(event, Mapping):
        return event.get(name)
    return getattr(event, name, None)


def is_interested_in_room(registration: AppServiceRegistration, room_id: str, room: RoomContext) -> bool:
    """A room in the rooms namespace, with an alias in the aliases namespace, or with a namespace member."""
    return (registration.is_interested_in_room(room_id)
            or any(registration.is_interested_in_alias(alias) for alias in room.aliases)
            or any(registration.is_interested_in_user(member) for member in room.members))


def is_interested_in_event(registration: AppServiceRegistration, event: Any, room: RoomContext) -> bool:
    """The spec's interest rules: the sender, a member event's target, or the room itself.

    `event` is an Event or a client-format mapping (needs `sender`, `room_id`, `type`, `state_key`).
    """
    if registration.is_interested_in_user(_field(event, "sender") or ""):
        return True
    state_key = _field(event, "state_key")
    # Invites (and every other membership change) of namespace users reach the service before the
    # user is a member, which is how a bridge learns its ghost was invited.
    if _field(event, "type") == "m.room.member" and isinstance(state_key, str) \
            and registration.is_interested_in_user(state_key):
        return True
    return is_interested_in_room(registration, _field(event, "room_id") or "", room)


def services_for_event(registrations: Iterable[AppServiceRegistration], event: Any,
                       room: RoomContext) -> list[AppServiceRegistration]:
    """The services (with a URL: the others receive nothing) that should receive `event`."""
    return [r for r in registrations if r.url is not None and is_interested_in_event(r, event, room)]


def services_for_room_ephemeral(registrations: Iterable[AppServiceRegistration], room_id: str,
                                room: RoomContext) -> list[AppServiceRegistration]:
    """Receivers of a room's typing notifications and receipts: ephemeral-enabled services interested in it."""
    return [r for r in registrations
            if r.url is not None and r.wants_ephemeral and is_interested_in_room(r, room_id, room)]


def services_for_presence(registrations: Iterable[AppServiceRegistration], user_id: str,
                          shares_room_with: Iterable[str]) -> list[AppServiceRegistration]:
    """Receivers of a user's presence: services whose namespace covers the user or someone sharing a room."""
    others = tuple(shares_room_with)
    return [r for r in registrations if r.url is not None and r.wants_ephemeral
            and (r.is_interested_in_user(user_id) or any(r.is_interested_in_user(u) for u in others))]


def services_for_to_device(registrations: Iterable[AppServiceRegistration],
                           recipient: str) -> list[AppServiceRegistration]:
    """Receivers of a to-device message: ephemeral-enabled services whose namespace covers the recipient."""
    return [r for r in registrations
            if r.url is not None and r.wants_ephemeral and r.is_interested_in_user(recipient)]


def services_for_device_keys(registrations: Iterable[AppServiceRegistration],
                             user_id: str) -> list[AppServiceRegistration]:
    """Receivers of a namespace user's one-time-key counts and device list changes (MSC3202)."""
    return [r for r in registrations if r.url is not None and r.msc3202 and r.is_interested_in_user(user_id)]


def services_for_device_list_change(registrations: Iterable[AppServiceRegistration], user_id: str,
                                    shares_room_with: Iterable[str]) -> list[AppServiceRegistration]:
    """Receivers of a user's device list change (MSC3202): as /sync, the users sharing a room with it."""
    others = tuple(shares_room_with)
    return [r for r in registrations if r.url is not None and r.msc3202
            and (r.is_interested_in_user(user_id) or any(r.is_interested_in_user(u) for u in others))]
