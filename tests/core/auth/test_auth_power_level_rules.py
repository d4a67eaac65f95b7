"""The m.room.power_levels auth rules (shape and changes) for room versions 1-12.

See ruletable.py for how a row reads."""

from __future__ import annotations

import pytest

from homeserver.events.event import Event
from tests.event_auth.authroom import ALICE, BOB, CREATOR, MOD, AuthRoom, versions
from tests.event_auth.ruletable import Rule, RuleTable, check_row

TABLE = RuleTable()
rule = TABLE.rule

# =====================================================================================
# 10. m.room.power_levels
# =====================================================================================


def _pl_event(room: AuthRoom, sender: str = CREATOR, **content) -> Event:
    return room.event("m.room.power_levels", sender, content, state_key="")


def _admin_room(v: str) -> AuthRoom:
    # MOD is joined at 50 and changes power levels (requires 50 here); creator at 100.
    room = AuthRoom(v).set_power_levels(
        users={MOD: 50} if v == "12" else {CREATOR: 100, MOD: 50},
        events={"m.room.power_levels": 50},
    )
    return room.join(MOD, BOB)


def _mod_pl(v: str, **changes) -> dict:
    content = {
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0,
        "events_default": 0,
        "state_default": 50,
        "users_default": 0,
        "events": {"m.room.power_levels": 50},
        "users": {MOD: 50} if v == "12" else {CREATOR: 100, MOD: 50},
    }
    content.update(changes)
    return content


@rule("the first power levels event of a room", allow=versions())
def _(v):
    room = AuthRoom(v, power_levels=None)
    return room, _pl_event(room, users={} if v == "12" else {CREATOR: 100}, ban="50" if int(v) < 10 else 50)


@rule("a power levels event whose users is not an object", reject=versions(), because="'users'")
def _(v):
    room = AuthRoom(v, power_levels=None)
    return room, _pl_event(room, users=[CREATOR])


@rule("a power levels event with a users key that is not a user ID", reject=versions(), because="user ID")
def _(v):
    room = AuthRoom(v, power_levels=None)
    return room, _pl_event(room, users={"alice": 10})


@rule(
    "a power levels event with a user level that is a string",
    allow=versions(1, 9),
    reject=versions(10),
    because="users[",
)
def _(v):
    room = AuthRoom(v, power_levels=None)
    return room, _pl_event(room, users={ALICE: "10"})


@rule(
    "a power levels event with a user level that is a non-numeric string", reject=versions(), because="users["
)
def _(v):
    room = AuthRoom(v, power_levels=None)
    return room, _pl_event(room, users={ALICE: "ten"})


@rule(
    "a power levels event with a padded, signed, zero-led string level",
    allow=versions(1, 9),
    reject=versions(10),
    because="'ban'",
)
def _(v):
    room = AuthRoom(v, power_levels=None)
    return room, _pl_event(room, ban=" +050 ")


@rule("a power levels event with a decimal string level", reject=versions(), because="'kick'")
def _(v):
    room = AuthRoom(v, power_levels=None)
    return room, _pl_event(room, kick="50.0")


@rule("a power levels event with an underscored string level", reject=versions(), because="'kick'")
def _(v):
    room = AuthRoom(v, power_levels=None)
    return room, _pl_event(room, kick="5_0")


@rule("a power levels event with a float level", allow=versions(1, 5), reject=versions(6), because="users[")
def _(v):
    room = AuthRoom(v, power_levels=None)
    return room, _pl_event(room, users={ALICE: 50.57})


@rule("a power levels event with a boolean level", reject=versions(), because="'invite'")
def _(v):
    room = AuthRoom(v, power_levels=None)
    return room, _pl_event(room, invite=True)


@rule("a power levels event whose events is not an object", reject=versions(), because="'events'")
def _(v):
    room = AuthRoom(v, power_levels=None)
    return room, _pl_event(room, events=["m.room.name"])


@rule(
    "a power levels event with a string notifications level",
    allow=versions(1, 9),
    reject=versions(10),
    because="notifications[",
)
def _(v):
    room = AuthRoom(v, power_levels=None)
    return room, _pl_event(room, notifications={"room": "50"})


@rule(
    "a power levels event with an integer beyond canonical JSON's range",
    allow=versions(1, 5),
    reject=versions(6),
    because="'state_default'",
)
def _(v):
    room = AuthRoom(v, power_levels=None)
    return room, _pl_event(room, state_default=2**53)


@rule(
    "a power levels event listing the room creator in users",
    allow=versions(1, 11),
    reject=versions(12, 12),
    because="creator",
)
def _(v):
    room = AuthRoom(v)
    return room, _pl_event(room, users={CREATOR: 100})


@rule(
    "a power levels event listing an additional creator in users",
    allow=versions(1, 11),
    reject=versions(12, 12),
    because="creator",
)
def _(v):
    room = AuthRoom(v, create_content={"additional_creators": [ALICE]})
    users = {ALICE: 50} if v == "12" else {CREATOR: 100, ALICE: 50}
    return room, _pl_event(room, users=users)


@rule("a v12 creator setting levels far above 100", allow=versions(12, 12))
def _(v):
    room = AuthRoom(v)
    return room, _pl_event(room, ban=1_000_000, users={ALICE: 999_999})


@rule("a power levels change within the sender's own level", allow=versions())
def _(v):
    room = _admin_room(v)
    return room, _pl_event(room, MOD, **_mod_pl(v, kick=40, users={**_mod_pl(v)["users"], BOB: 50}))


@rule("raising a top-level level above the sender's level", reject=versions(), because="'ban'")
def _(v):
    room = _admin_room(v)
    return room, _pl_event(room, MOD, **_mod_pl(v, ban=60))


@rule("changing a top-level level that is above the sender's level", reject=versions(), because="'redact'")
def _(v):
    room = _admin_room(v).set_power_levels(
        users=_mod_pl(v)["users"], events={"m.room.power_levels": 50}, redact=70
    )
    return room, _pl_event(room, MOD, **_mod_pl(v, redact=50))


@rule("removing a top-level level that is above the sender's level", reject=versions(), because="'invite'")
def _(v):
    room = _admin_room(v).set_power_levels(
        users=_mod_pl(v)["users"], events={"m.room.power_levels": 50}, invite=70
    )
    content = _mod_pl(v)
    del content["invite"]
    return room, _pl_event(room, MOD, **content)


@rule("rewriting a high string level as the equal integer", allow=versions(1, 9))
def _(v):
    room = _admin_room(v).set_power_levels(
        users=_mod_pl(v)["users"], events={"m.room.power_levels": 50}, redact="70"
    )
    return room, _pl_event(room, MOD, **_mod_pl(v, redact=70))


@rule("adding an events entry above the sender's level", reject=versions(), because="events[")
def _(v):
    room = _admin_room(v)
    return room, _pl_event(
        room, MOD, **_mod_pl(v, events={"m.room.power_levels": 50, "m.room.tombstone": 100})
    )


@rule("removing an events entry that is above the sender's level", reject=versions(), because="events[")
def _(v):
    room = _admin_room(v).set_power_levels(
        users=_mod_pl(v)["users"], events={"m.room.power_levels": 50, "m.room.tombstone": 100}
    )
    return room, _pl_event(room, MOD, **_mod_pl(v))


@rule("adding an events entry at the sender's level", allow=versions())
def _(v):
    room = _admin_room(v)
    return room, _pl_event(room, MOD, **_mod_pl(v, events={"m.room.power_levels": 50, "m.room.name": 50}))


@rule(
    "raising the room notification level above the sender's level",
    allow=versions(1, 5),
    reject=versions(6),
    because="notifications[",
)
def _(v):
    room = _admin_room(v)
    return room, _pl_event(room, MOD, **_mod_pl(v, notifications={"room": 100}))


@rule(
    "removing a notifications entry above the sender's level",
    allow=versions(1, 5),
    reject=versions(6),
    because="notifications[",
)
def _(v):
    room = _admin_room(v).set_power_levels(
        users=_mod_pl(v)["users"], events={"m.room.power_levels": 50}, notifications={"room": 100}
    )
    return room, _pl_event(room, MOD, **_mod_pl(v))


@rule("promoting a user to the sender's own level", allow=versions())
def _(v):
    room = _admin_room(v)
    return room, _pl_event(room, MOD, **_mod_pl(v, users={**_mod_pl(v)["users"], BOB: 50}))


@rule("promoting a user above the sender's level", reject=versions(), because="cannot give")
def _(v):
    room = _admin_room(v)
    return room, _pl_event(room, MOD, **_mod_pl(v, users={**_mod_pl(v)["users"], BOB: 51}))


@rule("demoting a user at the sender's own level", reject=versions(), because="not below your own")
def _(v):
    room = _admin_room(v).set_power_levels(
        users={**_mod_pl(v)["users"], BOB: 50}, events={"m.room.power_levels": 50}
    )
    return room, _pl_event(room, MOD, **_mod_pl(v, users={**_mod_pl(v)["users"], BOB: 0}))


@rule("demoting a user below the sender's level", allow=versions())
def _(v):
    room = _admin_room(v).set_power_levels(
        users={**_mod_pl(v)["users"], BOB: 40}, events={"m.room.power_levels": 50}
    )
    return room, _pl_event(room, MOD, **_mod_pl(v))


@rule("the sender demoting themself", allow=versions())
def _(v):
    room = _admin_room(v)
    return room, _pl_event(room, MOD, **_mod_pl(v, users={**_mod_pl(v)["users"], MOD: 10}))


@rule("removing a user entry above the sender's level", reject=versions(1, 11), because="not below your own")
def _(v):
    room = _admin_room(v)
    return room, _pl_event(room, MOD, **_mod_pl(v, users={MOD: 50}))


@rule(
    "changing power levels below the level the power levels event requires",
    reject=versions(),
    because="requires",
)
def _(v):
    room = _admin_room(v)
    return room, _pl_event(room, BOB, **_mod_pl(v))


@pytest.mark.parametrize("r, version, expected", TABLE.params())
def test_auth_rule(r: Rule, version: str, expected: bool) -> None:
    check_row(r, version, expected)
