"""`check_auth`: the authorization rules of room versions 1-12 against a set of state.

The numbered comments follow the rules as written in the spec's `rooms/vN.md` pages;
numbers are those of room version 12 unless stated otherwise. Rules that differ
between versions ask a RoomVersion flag. The rules about the *list* of auth events
(duplicates, unexpected entries, rejected entries) live in `selection.py`, because
they do not depend on state and run once per received event.
"""

from __future__ import annotations

from collections.abc import Mapping

from homeserver.event_auth.constants import (
    ALIASES,
    CREATE,
    CREATE_KEY,
    MEMBER,
    POWER_LEVELS,
    POWER_LEVELS_KEY,
    REDACTION,
    THIRD_PARTY_INVITE,
)
from homeserver.event_auth.errors import AuthError
from homeserver.event_auth.ids import domain_of, is_valid_user_id
from homeserver.event_auth.membership import check_membership
from homeserver.event_auth.power_levels import (
    check_power_levels_change,
    get_named_level,
    get_required_level,
    user_level,
    validate_power_levels_content,
)
from homeserver.events.event import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

StateMap = Mapping[tuple[str, str], Event]


def check_auth(event: Event, auth_state: StateMap, room_version: RoomVersion) -> None:
    """Raise AuthError unless `event` is allowed given `auth_state`.

    `auth_state` maps (type, state_key) to the state events the rules may consult: the
    event's auth events, the state before it, or the current state. It must contain the
    create event in every room version (in v12 too, although v12 events do not list it).
    """
    # 1. m.room.create
    if event.type == CREATE:
        check_create(event, room_version)
        return

    create = auth_state.get(CREATE_KEY)
    if create is None:
        raise AuthError("no m.room.create event in the auth state")

    # 2. (v12) The room ID is the create event's ID with the `!` sigil.
    if room_version.room_id_from_create_event:
        if create.rejected_reason is not None:
            raise AuthError("the m.room.create event was rejected")
        if event.room_id != "!" + create.event_id[1:]:
            raise AuthError("room_id is not the ID of the room's m.room.create event")

    # 4. m.federate
    sender = event.sender
    if create.content.get("m.federate", True) is False and domain_of(sender) != domain_of(create.sender):
        raise AuthError("this room does not federate and the sender is on another server")

    # v1-v5 rule 4: m.room.aliases is authorised by the sender's server alone.
    if room_version.special_case_aliases_auth and event.type == ALIASES:
        state_key = event.state_key
        if state_key is None:
            raise AuthError("m.room.aliases event has no state_key")
        if state_key != domain_of(sender):
            raise AuthError("m.room.aliases state_key is not the sender's server")
        return

    # 5. m.room.member
    if event.type == MEMBER:
        check_membership(event, auth_state, room_version, create)
        return

    # 6. The sender must be joined.
    sender_member = auth_state.get((MEMBER, sender))
    if sender_member is None or sender_member.membership != "join":
        raise AuthError(f"{sender} is not joined to the room")

    pl_event = auth_state.get(POWER_LEVELS_KEY)
    power_levels = pl_event.content if pl_event is not None else None
    sender_level = user_level(sender, power_levels, create, room_version)

    # 7. m.room.third_party_invite needs the invite level, and nothing else.
    if event.type == THIRD_PARTY_INVITE:
        if sender_level < get_named_level(power_levels, "invite"):
            raise AuthError(f"{sender} does not have the invite level")
        return

    # 8. The event type's required power level.
    is_state = event.is_state()
    required = get_required_level(event.type, is_state, power_levels)
    if sender_level < required:
        raise AuthError(f"{sender} has level {sender_level}, {event.type} requires {required}")

    # 9. Only you may set state keyed by your user ID.
    state_key = event.state_key
    if isinstance(state_key, str) and state_key.startswith("@") and state_key != sender:
        raise AuthError("state_key is another user's ID")

    # 10. m.room.power_levels
    if event.type == POWER_LEVELS:
        validate_power_levels_content(event.content, create, room_version)
        if power_levels is not None:
            check_power_levels_change(event.content, power_levels, sender, sender_level, room_version)
        return

    # v1-v2 rule 11: redactions. From v3 event IDs have no domain and the check moved
    # to the moment a redaction is applied (see redactions.py).
    if event.type == REDACTION and room_version.event_id_in_event:
        if sender_level >= get_named_level(power_levels, "redact"):
            return
        redacts = event.redacts
        if isinstance(redacts, str) and domain_of(redacts) == domain_of(event.event_id):
            return
        raise AuthError(f"{sender} may not redact events from another server")


def check_create(event: Event, room_version: RoomVersion) -> None:
    """Rule 1: the m.room.create event; raises AuthError."""
    if event.prev_event_ids:
        raise AuthError("m.room.create has prev_events")

    if room_version.room_id_from_create_event:
        if "room_id" in event.pdu:
            raise AuthError("m.room.create must not have a room_id in this room version")
    else:
        room_id = event.room_id
        if not isinstance(room_id, str) or domain_of(room_id) != domain_of(event.sender):
            raise AuthError("m.room.create room_id is not on the sender's server")

    content = event.content
    if "room_version" in content:
        version = content["room_version"]
        if not isinstance(version, str) or version not in KNOWN_ROOM_VERSIONS:
            raise AuthError(f"m.room.create names an unknown room version {version!r}")

    if room_version.creator_power_infinite and "additional_creators" in content:
        additional = content["additional_creators"]
        if not isinstance(additional, list) or not all(is_valid_user_id(u) for u in additional):
            raise AuthError("m.room.create additional_creators is not a list of user IDs")

    if not room_version.implicit_room_creator and "creator" not in content:
        raise AuthError("m.room.create has no creator")
