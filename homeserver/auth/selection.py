"""Auth events selection, and the state-independent checks on an event's auth_events.

`auth_types_for_event` is the server-server "Auth events selection" algorithm: the
(type, state_key) pairs an event's authorization can depend on. It is both what a
server puts in `auth_events` of an event it builds and the whitelist against which
received `auth_events` are checked.
"""

from __future__ import annotations

from collections.abc import Mapping

from homeserver.event_auth.constants import (
    AUTHORISING_USER,
    CREATE,
    CREATE_KEY,
    INVITE,
    JOIN,
    JOIN_RULES_KEY,
    KNOCK,
    MEMBER,
    POWER_LEVELS_KEY,
    THIRD_PARTY_INVITE,
)
from homeserver.event_auth.errors import AuthError
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion


def auth_types_for_event(event: Event, room_version: RoomVersion) -> set[tuple[str, str]]:
    """The (type, state_key) pairs of the state this event's authorization depends on."""
    if event.type == CREATE:
        return set()

    sender = event.sender
    auth_types = {POWER_LEVELS_KEY, (MEMBER, sender)}
    if not room_version.room_id_from_create_event:
        auth_types.add(CREATE_KEY)

    if event.type == MEMBER:
        content = event.content
        state_key = event.state_key
        if isinstance(state_key, str):
            auth_types.add((MEMBER, state_key))
        membership = content.get("membership")
        if membership in (JOIN, INVITE, KNOCK):
            auth_types.add(JOIN_RULES_KEY)
        if membership == INVITE:
            token = _third_party_invite_token(content)
            if token is not None:
                auth_types.add((THIRD_PARTY_INVITE, token))
        elif membership == JOIN and room_version.restricted_join_rule:
            authoriser = content.get(AUTHORISING_USER)
            if isinstance(authoriser, str):
                auth_types.add((MEMBER, authoriser))
    return auth_types


def _third_party_invite_token(content: Mapping) -> str | None:
    invite = content.get("third_party_invite")
    if not isinstance(invite, Mapping):
        return None
    signed = invite.get("signed")
    if not isinstance(signed, Mapping):
        return None
    token = signed.get("token")
    return token if isinstance(token, str) else None


def check_auth_events_selection(
    event: Event,
    auth_events: Mapping[str, Event],
    room_version: RoomVersion,
    create_event: Event | None = None,
) -> dict[tuple[str, str], Event]:
    """The rules on an event's `auth_events` list that need no room state; raises AuthError.

    `auth_events` maps event ID to event for (at least) every ID in `event.auth_event_ids`,
    including rejected ones (their `rejected_reason` is set). In room version 12 the
    create event is not among them; pass it as `create_event` so the room ID can be
    checked against it. Returns the auth events keyed by (type, state_key): with the
    create event added in v12, that is the `auth_state` for `check_auth`.
    """
    if event.type == CREATE:
        # Rule 1 ends with "otherwise, allow" before auth_events are considered.
        return {}

    if room_version.room_id_from_create_event and create_event is not None:
        if create_event.type != CREATE or create_event.rejected_reason is not None:
            raise AuthError("the room's m.room.create event is missing or rejected")
        if event.room_id != "!" + create_event.event_id[1:]:
            raise AuthError("room_id is not the ID of the room's m.room.create event")

    expected = auth_types_for_event(event, room_version)
    room_id = event.room_id
    by_key: dict[tuple[str, str], Event] = {}
    for event_id in event.auth_event_ids:
        auth_event = auth_events.get(event_id)
        if auth_event is None:
            raise AuthError(f"auth event {event_id} is unknown")
        state_key = auth_event.state_key
        if state_key is None:
            raise AuthError(f"auth event {event_id} is not a state event")
        key = (auth_event.type, state_key)
        if key in by_key:
            raise AuthError(f"auth_events has two entries for {key}")
        if key not in expected:
            raise AuthError(f"auth_events has an unexpected entry for {key}")
        if auth_event.rejected_reason is not None:
            raise AuthError(f"auth event {event_id} was rejected")
        if auth_event.room_id != room_id:
            raise AuthError(f"auth event {event_id} belongs to another room")
        by_key[key] = auth_event

    if not room_version.room_id_from_create_event and CREATE_KEY not in by_key:
        raise AuthError("auth_events has no m.room.create event")
    return by_key
