"""Auth rules other than membership and power level changes, for room versions 1-12.

See ruletable.py for how a row reads."""

from __future__ import annotations

import pytest

from homeserver.event_auth import AuthError, check_auth
from homeserver.events.event import Event
from tests.event_auth.authroom import ALICE, BOB, CREATOR, AuthRoom, versions
from tests.event_auth.ruletable import Rule, RuleTable, check_row

TABLE = RuleTable()
rule = TABLE.rule

# =====================================================================================
# 1. m.room.create
# =====================================================================================


def _create_event(room: AuthRoom, content: dict, *, sender: str = CREATOR, **extra) -> Event:
    if room.rv.room_id_from_create_event:
        extra.setdefault("room_id", None)
    else:
        extra.setdefault("room_id", "!new:" + sender.split(":", 1)[1])
    event = room.event("m.room.create", sender, content, state_key="", prev_events=[], **extra)
    if event.pdu.get("room_id") is None:
        del event.pdu["room_id"]  # type: ignore[attr-defined]
    return event


def _create_content(room: AuthRoom, **extra) -> dict:
    content = {"room_version": room.rv.identifier, **extra}
    if not room.rv.implicit_room_creator:
        content.setdefault("creator", CREATOR)
    return content


@rule("a well-formed create event", allow=versions())
def _(v):
    room = AuthRoom(v)
    return room, _create_event(room, _create_content(room))


@rule("a create event with prev_events", reject=versions(), because="prev_events")
def _(v):
    room = AuthRoom(v)
    event = _create_event(room, _create_content(room))
    event.pdu["prev_events"] = ["$earlier"]  # type: ignore[index]
    return room, event


@rule("a create event whose room_id is on another server", reject=versions(1, 11), because="room_id")
def _(v):
    room = AuthRoom(v)
    return room, _create_event(room, _create_content(room), room_id="!new:b.example")


@rule("a create event that carries a room_id", reject=versions(12, 12), because="room_id")
def _(v):
    room = AuthRoom(v)
    return room, _create_event(room, _create_content(room), room_id="!new:a.example")


@rule("a create event naming an unknown room version", reject=versions(), because="room version")
def _(v):
    room = AuthRoom(v)
    return room, _create_event(room, _create_content(room, room_version="999"))


@rule("a create event whose room_version is not a string", reject=versions(), because="room version")
def _(v):
    room = AuthRoom(v)
    return room, _create_event(room, _create_content(room, room_version=11))


@rule("a create event without room_version (meaning v1)", allow=versions())
def _(v):
    room = AuthRoom(v)
    content = _create_content(room)
    del content["room_version"]
    return room, _create_event(room, content)


@rule("a create event without creator", allow=versions(11), reject=versions(1, 10), because="creator")
def _(v):
    room = AuthRoom(v)
    return room, _create_event(room, {"room_version": v})


@rule(
    "a create event whose additional_creators is not a list",
    allow=versions(1, 11),
    reject=versions(12, 12),
    because="additional_creators",
)
def _(v):
    room = AuthRoom(v)
    return room, _create_event(room, _create_content(room, additional_creators=ALICE))


@rule(
    "a create event whose additional_creators holds a non user ID",
    allow=versions(1, 11),
    reject=versions(12, 12),
    because="additional_creators",
)
def _(v):
    room = AuthRoom(v)
    return room, _create_event(room, _create_content(room, additional_creators=[ALICE, "bob"]))


@rule("a create event with valid additional_creators", allow=versions())
def _(v):
    room = AuthRoom(v)
    return room, _create_event(room, _create_content(room, additional_creators=[ALICE, BOB]))


# =====================================================================================
# 2-4. The create event in the state, the v12 room ID, m.federate
# =====================================================================================


@rule("an event when the state has no create event", reject=versions(), because="m.room.create")
def _(v):
    room = AuthRoom(v).drop(("m.room.create", ""))
    return room, room.message(CREATOR)


@rule(
    "an event whose room_id is not the create event's ID",
    allow=versions(1, 11),
    reject=versions(12, 12),
    because="room_id",
)
def _(v):
    room = AuthRoom(v)
    return room, room.message(CREATOR, room_id="!otherhash")


@rule(
    "an event in a room whose create event was rejected",
    allow=versions(1, 11),
    reject=versions(12, 12),
    because="rejected",
)
def _(v):
    room = AuthRoom(v)
    room.create.rejected_reason = "auth"
    return room, room.message(CREATOR)


@rule("a remote user's join to a room with m.federate false", reject=versions(), because="federate")
def _(v):
    room = AuthRoom(v, create_content={"m.federate": False}).set_join_rule("public")
    return room, room.member(BOB, "join")


@rule("a local user's join to a room with m.federate false", allow=versions())
def _(v):
    room = AuthRoom(v, create_content={"m.federate": False}).set_join_rule("public")
    return room, room.member(ALICE, "join")


@rule("a remote user's message in a room with m.federate true", allow=versions())
def _(v):
    room = AuthRoom(v, create_content={"m.federate": True}).join(BOB)
    return room, room.message(BOB)


@rule("a remote user's message in a room whose m.federate is not a boolean", allow=versions())
def _(v):
    # The rule names the value false; anything else leaves federation on.
    room = AuthRoom(v, create_content={"m.federate": "no"}).join(BOB)
    return room, room.message(BOB)


# =====================================================================================
# v1-v5: m.room.aliases
# =====================================================================================


@rule(
    "an m.room.aliases event from a non-member for its own server",
    allow=versions(1, 5),
    reject=versions(6),
    because="not joined",
)
def _(v):
    room = AuthRoom(v)
    return room, room.event("m.room.aliases", BOB, {"aliases": ["#x:b.example"]}, state_key="b.example")


@rule("an m.room.aliases event for another server", reject=versions(1, 5), because="aliases")
def _(v):
    room = AuthRoom(v)
    return room, room.event("m.room.aliases", BOB, {"aliases": []}, state_key="a.example")


@rule(
    "an m.room.aliases event from a member below state_default",
    allow=versions(1, 5),
    reject=versions(6),
    because="requires",
)
def _(v):
    room = AuthRoom(v).join(ALICE)
    return room, room.event("m.room.aliases", ALICE, {"aliases": []}, state_key="a.example")


@rule("an m.room.aliases event without state_key", reject=versions(1, 5), because="state_key")
def _(v):
    room = AuthRoom(v).join(ALICE)
    return room, room.event("m.room.aliases", ALICE, {"aliases": []})


# =====================================================================================
# 6-9. Sender joined, third-party invite events, required power level, @ state keys
# =====================================================================================


@rule("a message from a joined member", allow=versions())
def _(v):
    room = AuthRoom(v).join(BOB)
    return room, room.message(BOB)


@rule("a message from a user who never joined", reject=versions(), because="not joined")
def _(v):
    room = AuthRoom(v)
    return room, room.message(BOB)


@rule("a message from an invited user", reject=versions(), because="not joined")
def _(v):
    room = AuthRoom(v).set_member(BOB, "invite", sender=CREATOR)
    return room, room.message(BOB)


@rule("a message from a user who left", reject=versions(), because="not joined")
def _(v):
    room = AuthRoom(v).set_member(BOB, "leave")
    return room, room.message(BOB)


@rule("an m.room.third_party_invite at the invite level despite a higher events entry", allow=versions())
def _(v):
    room = AuthRoom(v).set_power_levels(events={"m.room.third_party_invite": 100}).join(ALICE)
    return room, room.event("m.room.third_party_invite", ALICE, {"display_name": "x"}, state_key="t")


@rule("an m.room.third_party_invite below the invite level", reject=versions(), because="invite level")
def _(v):
    room = AuthRoom(v).set_power_levels(invite=50).join(ALICE)
    return room, room.event("m.room.third_party_invite", ALICE, {"display_name": "x"}, state_key="t")


@rule("a message below events_default", reject=versions(), because="requires")
def _(v):
    room = AuthRoom(v).set_power_levels(events_default=10).join(BOB)
    return room, room.message(BOB)


@rule("a message type whose events entry is above the sender", reject=versions(), because="requires")
def _(v):
    room = AuthRoom(v).set_power_levels(events={"m.room.message": 10}).join(BOB)
    return room, room.message(BOB)


@rule("a state event whose events entry lowers it below state_default", allow=versions())
def _(v):
    room = AuthRoom(v).set_power_levels(events={"m.room.topic": 0}).join(BOB)
    return room, room.event("m.room.topic", BOB, {"topic": "t"}, state_key="")


@rule("a state event below state_default", reject=versions(), because="requires")
def _(v):
    room = AuthRoom(v).join(BOB)
    return room, room.event("m.room.topic", BOB, {"topic": "t"}, state_key="")


@rule("a state event from the creator when there is no power levels event", allow=versions())
def _(v):
    room = AuthRoom(v, power_levels=None)
    return room, room.event("m.room.name", CREATOR, {"name": "n"}, state_key="")


@rule(
    "a state event from another member when there is no power levels event",
    reject=versions(),
    because="requires",
)
def _(v):
    room = AuthRoom(v, power_levels=None).join(BOB)
    return room, room.event("m.room.name", BOB, {"name": "n"}, state_key="")


@rule("a message from another member when there is no power levels event", allow=versions())
def _(v):
    room = AuthRoom(v, power_levels=None).join(BOB)
    return room, room.message(BOB)


@rule("a state event by a member whose level is a string", allow=versions(1, 9))
def _(v):
    room = AuthRoom(v).set_users({BOB: "50"}).join(BOB)
    return room, room.event("m.room.topic", BOB, {"topic": "t"}, state_key="")


@rule(
    "a state event by a member whose level is a float truncated below the requirement",
    reject=versions(1, 5),
    because="requires",
)
def _(v):
    room = AuthRoom(v).set_users({BOB: 49.99}).join(BOB)
    return room, room.event("m.room.topic", BOB, {"topic": "t"}, state_key="")


@rule("a state event keyed by another user's ID", reject=versions(), because="another user")
def _(v):
    room = AuthRoom(v).set_power_levels(state_default=0).join(BOB)
    return room, room.event("m.custom", BOB, {}, state_key=ALICE)


@rule("a state event keyed by the sender's own ID", allow=versions())
def _(v):
    room = AuthRoom(v).set_power_levels(state_default=0).join(BOB)
    return room, room.event("m.custom", BOB, {}, state_key=BOB)


# =====================================================================================
# v1-v2 rule 11: m.room.redaction
# =====================================================================================


def _redaction(room: AuthRoom, sender: str, redacts: str) -> Event:
    if room.rv.redacts_in_content:
        return room.event("m.room.redaction", sender, {"redacts": redacts})
    return room.event("m.room.redaction", sender, {}, redacts=redacts)


@rule(
    "a redaction of another server's event below the redact level",
    allow=versions(3),
    reject=versions(1, 2),
    because="redact",
)
def _(v):
    room = AuthRoom(v).join(ALICE)
    return room, _redaction(room, ALICE, "$7:b.example" if room.rv.event_id_in_event else "$hash99")


@rule("a redaction of an event from the sender's own server below the redact level", allow=versions())
def _(v):
    room = AuthRoom(v).join(ALICE)
    return room, _redaction(room, ALICE, "$7:a.example" if room.rv.event_id_in_event else "$hash99")


@rule("a redaction of another server's event at the redact level", allow=versions())
def _(v):
    room = AuthRoom(v).set_users({ALICE: 50}).join(ALICE)
    return room, _redaction(room, ALICE, "$7:b.example" if room.rv.event_id_in_event else "$hash99")


@rule(
    "a redaction naming no event below the redact level",
    allow=versions(3),
    reject=versions(1, 2),
    because="redact",
)
def _(v):
    room = AuthRoom(v).join(ALICE)
    return room, room.event("m.room.redaction", ALICE, {})


@rule(
    "a redaction below the level required for the m.room.redaction type",
    reject=versions(),
    because="requires",
)
def _(v):
    room = AuthRoom(v).set_power_levels(events={"m.room.redaction": 10}).join(ALICE)
    return room, _redaction(room, ALICE, "$7:a.example" if room.rv.event_id_in_event else "$hash99")


@pytest.mark.parametrize("r, version, expected", TABLE.params())
def test_auth_rule(r: Rule, version: str, expected: bool) -> None:
    check_row(r, version, expected)


def test_the_tables_hold_hundreds_of_cases() -> None:
    assert all(r.allow or r.reject for r in TABLE.rows)
    assert len(TABLE.params()) > 150


def test_auth_errors_carry_a_readable_reason_and_errcode() -> None:
    room = AuthRoom("11")
    with pytest.raises(AuthError) as excinfo:
        check_auth(room.message(BOB), room.state, room.rv)
    assert excinfo.value.reason == f"{BOB} is not joined to the room"
    assert str(excinfo.value) == excinfo.value.reason
    assert excinfo.value.errcode == "M_FORBIDDEN"
