"""The m.room.member auth rules (join, invite, third-party invite, leave, ban, knock) for v1-v12.

See ruletable.py for how a row reads."""

from __future__ import annotations

import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from homeserver.event_auth import AuthError, check_auth
from homeserver.events.event import Event
from tests.event_auth.authroom import ALICE, BOB, CAROL, CREATOR, MOD, AuthRoom, versions
from tests.event_auth.ruletable import Rule, RuleTable, check_row

TABLE = RuleTable()
rule = TABLE.rule

# =====================================================================================
# 5. m.room.member: shape
# =====================================================================================


@rule("a member event without membership", reject=versions(), because="membership")
def _(v):
    room = AuthRoom(v)
    return room, room.event("m.room.member", ALICE, {"displayname": "A"}, state_key=ALICE)


@rule("a member event without state_key", reject=versions(), because="state_key")
def _(v):
    room = AuthRoom(v)
    return room, room.event("m.room.member", ALICE, {"membership": "join"})


@rule("a member event with an unknown membership", reject=versions(), because="unknown membership")
def _(v):
    room = AuthRoom(v).join(ALICE)
    return room, room.member(ALICE, "dance")


# =====================================================================================
# 5.3 join
# =====================================================================================


@rule("the creator's join right after the create event", allow=versions())
def _(v):
    room = AuthRoom(v, power_levels=None, join_rule=None).drop(("m.room.member", CREATOR))
    return room, room.event(
        "m.room.member",
        CREATOR,
        {"membership": "join"},
        state_key=CREATOR,
        prev_events=[room.create.event_id],
    )


@rule(
    "the join of content.creator (not the sender) right after the create event",
    allow=versions(1, 10),
    reject=versions(11),
    because="not invited",
)
def _(v):
    room = AuthRoom(v, create_content={"creator": ALICE}, power_levels=None, join_rule=None)
    room.drop(("m.room.member", CREATOR))
    return room, room.event(
        "m.room.member", ALICE, {"membership": "join"}, state_key=ALICE, prev_events=[room.create.event_id]
    )


@rule(
    "the creator's join when the create event is not the only prev event",
    reject=versions(),
    because="not invited",
)
def _(v):
    room = AuthRoom(v, power_levels=None, join_rule=None).drop(("m.room.member", CREATOR))
    return room, room.event(
        "m.room.member",
        CREATOR,
        {"membership": "join"},
        state_key=CREATOR,
        prev_events=[room.create.event_id, "$other"],
    )


@rule("a join on behalf of another user", reject=versions(), because="another user")
def _(v):
    room = AuthRoom(v).set_join_rule("public")
    return room, room.member(ALICE, "join", sender=CREATOR)


@rule("a banned user's join to a public room", reject=versions(), because="banned")
def _(v):
    room = AuthRoom(v).set_join_rule("public").set_member(ALICE, "ban", sender=CREATOR)
    return room, room.member(ALICE, "join")


@rule("a stranger's join to a public room", allow=versions())
def _(v):
    room = AuthRoom(v).set_join_rule("public")
    return room, room.member(BOB, "join")


@rule("a stranger's join to an invite-only room", reject=versions(), because="not invited")
def _(v):
    room = AuthRoom(v)
    return room, room.member(BOB, "join")


@rule("an invited user's join to an invite-only room", allow=versions())
def _(v):
    room = AuthRoom(v).set_member(BOB, "invite", sender=CREATOR)
    return room, room.member(BOB, "join")


@rule("a joined member's profile update in an invite-only room", allow=versions())
def _(v):
    room = AuthRoom(v).join(BOB)
    return room, room.member(BOB, "join", displayname="Bob")


@rule("a joined member's profile update in a room without join rules", allow=versions())
def _(v):
    room = AuthRoom(v, join_rule=None).join(BOB)
    return room, room.member(BOB, "join", displayname="Bob")


@rule("a stranger's join to a room without join rules", reject=versions(), because="not invited")
def _(v):
    room = AuthRoom(v, join_rule=None)
    return room, room.member(BOB, "join")


@rule("an invited user's join to a knock room", allow=versions(7), reject=versions(1, 6), because="join rule")
def _(v):
    room = AuthRoom(v).set_join_rule("knock").set_member(BOB, "invite", sender=CREATOR)
    return room, room.member(BOB, "join")


@rule("a stranger's join to a knock room", reject=versions(), because="")
def _(v):
    room = AuthRoom(v).set_join_rule("knock")
    return room, room.member(BOB, "join")


@rule("a join to a room with an unknown join rule", reject=versions(), because="join rule")
def _(v):
    room = AuthRoom(v).set_join_rule("private").set_member(BOB, "invite", sender=CREATOR)
    return room, room.member(BOB, "join")


def _restricted_join(
    v: str, rule_name: str = "restricted", *, authoriser: str | None = ALICE, signed_by: str | None = None
) -> tuple[AuthRoom, Event]:
    room = AuthRoom(v).set_join_rule(rule_name, allow=[{"type": "m.room_membership", "room_id": "!s:x"}])
    room.join(ALICE)
    content = {"membership": "join"}
    if authoriser is not None:
        content["join_authorised_via_users_server"] = authoriser
    event = room.event("m.room.member", BOB, content, state_key=BOB)
    server = signed_by if signed_by is not None else (authoriser or BOB).split(":", 1)[1]
    event.pdu["signatures"][server] = {"ed25519:k": "sig"}  # type: ignore[index]
    return room, event


@rule(
    "a restricted join authorised by a joined member with the invite level",
    allow=versions(8),
    reject=versions(1, 7),
    because="join rule",
)
def _(v):
    return _restricted_join(v)


@rule("a restricted join without join_authorised_via_users_server", reject=versions(), because="")
def _(v):
    return _restricted_join(v, authoriser=None)


@rule("a restricted join authorised by a user who is not joined", reject=versions(8), because="not joined")
def _(v):
    room, event = _restricted_join(v, authoriser=CAROL)
    return room, event


@rule(
    "a restricted join authorised by a user below the invite level",
    reject=versions(8),
    because="may not invite",
)
def _(v):
    room, event = _restricted_join(v)
    room.set_power_levels(invite=50)
    return room, event


@rule("a restricted join not signed by the authorising server", reject=versions(8), because="not signed")
def _(v):
    room = AuthRoom(v).set_join_rule("restricted").join(ALICE)
    event = room.event(
        "m.room.member", BOB, {"membership": "join", "join_authorised_via_users_server": ALICE}, state_key=BOB
    )
    return room, event


@rule(
    "an invited user's restricted join without an authoriser",
    allow=versions(8),
    reject=versions(1, 7),
    because="join rule",
)
def _(v):
    room = AuthRoom(v).set_join_rule("restricted").set_member(BOB, "invite", sender=CREATOR)
    return room, room.member(BOB, "join")


@rule(
    "a knock_restricted join authorised by a joined member",
    allow=versions(10),
    reject=versions(1, 9),
    because="join rule",
)
def _(v):
    return _restricted_join(v, "knock_restricted")


@rule("a knock_restricted join without an authoriser", reject=versions(), because="")
def _(v):
    return _restricted_join(v, "knock_restricted", authoriser=None)


@rule(
    "a self-leave carrying an unsigned join_authorised_via_users_server",
    allow=versions(1, 7),
    reject=versions(8),
    because="not signed",
)
def _(v):
    room = AuthRoom(v).join(BOB)
    return room, room.member(BOB, "leave", join_authorised_via_users_server=CAROL)


# =====================================================================================
# 5.4 invite
# =====================================================================================


@rule("an invite from a joined member at the invite level", allow=versions())
def _(v):
    room = AuthRoom(v).join(ALICE)
    return room, room.member(BOB, "invite", sender=ALICE)


@rule("an invite from a user who is not joined", reject=versions(), because="not joined")
def _(v):
    room = AuthRoom(v).set_member(ALICE, "invite", sender=CREATOR)
    return room, room.member(BOB, "invite", sender=ALICE)


@rule("an invite of a joined user", reject=versions(), because="membership is join")
def _(v):
    room = AuthRoom(v).join(BOB)
    return room, room.member(BOB, "invite", sender=CREATOR)


@rule("an invite of a banned user", reject=versions(), because="membership is ban")
def _(v):
    room = AuthRoom(v).set_member(BOB, "ban", sender=CREATOR)
    return room, room.member(BOB, "invite", sender=CREATOR)


@rule("an invite from a member below the invite level", reject=versions(), because="invite level")
def _(v):
    room = AuthRoom(v).set_power_levels(invite=50).join(ALICE)
    return room, room.member(BOB, "invite", sender=ALICE)


@rule(
    "an invite from an additional creator when invite needs 100",
    allow=versions(12, 12),
    reject=versions(1, 11),
    because="invite level",
)
def _(v):
    room = AuthRoom(v, create_content={"additional_creators": [ALICE]}).set_power_levels(invite=100)
    room.join(ALICE)
    return room, room.member(BOB, "invite", sender=ALICE)


# --- third-party invites -------------------------------------------------------------

_ID_SERVER_KEY = generate_signing_key("0")
_OTHER_KEY = generate_signing_key("0")


def _third_party_invite(
    v: str,
    *,
    key=_ID_SERVER_KEY,
    mxid: str = BOB,
    token: str = "tok",
    invite_sender: str = ALICE,
    sender: str = ALICE,
    key_in_list: bool = False,
    signed: dict | None = None,
) -> tuple[AuthRoom, Event]:
    room = AuthRoom(v).join(ALICE, CAROL)
    public_key = encode_verify_key_base64(get_verify_key(_ID_SERVER_KEY))
    if key_in_list:
        tpi_content = {
            "display_name": "b...",
            "public_keys": [{"public_key": public_key}],
            "public_key": encode_verify_key_base64(get_verify_key(_OTHER_KEY)),
        }
    else:
        tpi_content = {"display_name": "b...", "public_key": public_key}
    room.put(room.event("m.room.third_party_invite", invite_sender, tpi_content, state_key="tok"))
    if signed is None:
        signed = sign_json({"mxid": mxid, "token": token, "sender": sender}, "id.example", key)
    content = {"membership": "invite", "third_party_invite": {"display_name": "b...", "signed": signed}}
    return room, room.event("m.room.member", sender, content, state_key=BOB)


@rule("a third-party invite signed by the invite's public key", allow=versions())
def _(v):
    return _third_party_invite(v)


@rule("a third-party invite signed by a key listed in public_keys", allow=versions())
def _(v):
    return _third_party_invite(v, key_in_list=True)


@rule("a third-party invite signed by an unknown key", reject=versions(), because="signature")
def _(v):
    return _third_party_invite(v, key=_OTHER_KEY)


@rule("a third-party invite whose signed.mxid is another user", reject=versions(), because="mxid")
def _(v):
    return _third_party_invite(v, mxid=CAROL)


@rule("a third-party invite for a token with no invite event", reject=versions(), because="token")
def _(v):
    return _third_party_invite(v, token="other")


@rule(
    "a third-party invite sent by someone other than the invite's sender",
    reject=versions(),
    because="did not send",
)
def _(v):
    return _third_party_invite(v, sender=CAROL)


@rule("a third-party invite without signed", reject=versions(), because="signed")
def _(v):
    room, event = _third_party_invite(v)
    del event.content["third_party_invite"]["signed"]  # type: ignore[attr-defined]
    return room, event


@rule("a third-party invite whose signed lacks a token", reject=versions(), because="mxid or token")
def _(v):
    return _third_party_invite(v, signed={"mxid": BOB, "signatures": {}})


@rule("a third-party invite of a banned user", reject=versions(), because="banned")
def _(v):
    room, event = _third_party_invite(v)
    room.set_member(BOB, "ban", sender=CREATOR)
    return room, event


@rule(
    "a third-party invite whose signed content was altered after signing",
    reject=versions(),
    because="signature",
)
def _(v):
    room, event = _third_party_invite(v)
    event.content["third_party_invite"]["signed"]["sender"] = CAROL  # type: ignore[index]
    return room, event


@rule("a third-party invite from the invite's sender who has since left", allow=versions())
def _(v):
    room, event = _third_party_invite(v)
    room.set_member(ALICE, "leave")
    return room, event


# =====================================================================================
# 5.5 leave
# =====================================================================================


@rule("a joined member leaving", allow=versions())
def _(v):
    room = AuthRoom(v).join(BOB)
    return room, room.member(BOB, "leave")


@rule("an invited user rejecting the invite", allow=versions())
def _(v):
    room = AuthRoom(v).set_member(BOB, "invite", sender=CREATOR)
    return room, room.member(BOB, "leave")


@rule("a knocking user withdrawing the knock", allow=versions(7))
def _(v):
    room = AuthRoom(v).set_member(BOB, "knock")
    return room, room.member(BOB, "leave")


@rule("a user who already left leaving again", reject=versions(), because="cannot leave")
def _(v):
    room = AuthRoom(v).set_member(BOB, "leave")
    return room, room.member(BOB, "leave")


@rule("a banned user unbanning themself", reject=versions(), because="cannot leave")
def _(v):
    room = AuthRoom(v).set_member(BOB, "ban", sender=CREATOR)
    return room, room.member(BOB, "leave")


@rule("a kick by a member at the kick level of a lower member", allow=versions())
def _(v):
    room = AuthRoom(v).set_users({MOD: 50}).join(MOD, BOB)
    return room, room.member(BOB, "leave", sender=MOD)


@rule("a kick of a member at the same level", reject=versions(), because="may not kick")
def _(v):
    room = AuthRoom(v).set_users({MOD: 50, BOB: 50}).join(MOD, BOB)
    return room, room.member(BOB, "leave", sender=MOD)


@rule("a kick by a member below the kick level", reject=versions(), because="may not kick")
def _(v):
    room = AuthRoom(v).set_users({MOD: 40}).join(MOD, BOB)
    return room, room.member(BOB, "leave", sender=MOD)


@rule("a kick by a user who is not joined", reject=versions(), because="not joined")
def _(v):
    room = AuthRoom(v).set_users({MOD: 50}).join(BOB).set_member(MOD, "leave")
    return room, room.member(BOB, "leave", sender=MOD)


@rule("an unban by a member at both the kick and ban levels", allow=versions())
def _(v):
    room = AuthRoom(v).set_users({MOD: 50}).join(MOD).set_member(BOB, "ban", sender=CREATOR)
    return room, room.member(BOB, "leave", sender=MOD)


@rule(
    "an unban by a member at the kick level but below the ban level", reject=versions(), because="ban level"
)
def _(v):
    room = AuthRoom(v).set_power_levels(ban=60, users={CREATOR: 100, MOD: 50} if v != "12" else {MOD: 50})
    room.join(MOD).set_member(BOB, "ban", sender=CREATOR)
    return room, room.member(BOB, "leave", sender=MOD)


@rule(
    "a kick of a v12 room creator by an admin at 100",
    allow=versions(1, 11),
    reject=versions(12, 12),
    because="may not kick",
)
def _(v):
    room = AuthRoom(v).set_users({MOD: 100} if v == "12" else {CREATOR: 0, MOD: 100}).join(MOD)
    return room, room.member(CREATOR, "leave", sender=MOD)


# =====================================================================================
# 5.6 ban
# =====================================================================================


@rule("a ban by a member at the ban level of a lower member", allow=versions())
def _(v):
    room = AuthRoom(v).set_users({MOD: 50}).join(MOD, BOB)
    return room, room.member(BOB, "ban", sender=MOD)


@rule("a ban of a user who never joined", allow=versions())
def _(v):
    room = AuthRoom(v).set_users({MOD: 50}).join(MOD)
    return room, room.member(CAROL, "ban", sender=MOD)


@rule("a ban by a member below the ban level", reject=versions(), because="may not ban")
def _(v):
    room = AuthRoom(v).set_users({MOD: 49}).join(MOD, BOB)
    return room, room.member(BOB, "ban", sender=MOD)


@rule("a ban of a member at a higher level", reject=versions(), because="may not ban")
def _(v):
    room = AuthRoom(v).set_users({MOD: 50, BOB: 60}).join(MOD, BOB)
    return room, room.member(BOB, "ban", sender=MOD)


@rule("a ban by a user who is not joined", reject=versions(), because="not joined")
def _(v):
    room = AuthRoom(v).set_users({MOD: 50}).join(BOB)
    return room, room.member(BOB, "ban", sender=MOD)


@rule(
    "a ban of the room creator (not listed in users) by an admin",
    allow=versions(1, 11),
    reject=versions(12, 12),
    because="may not ban",
)
def _(v):
    room = AuthRoom(v).set_power_levels(users={MOD: 100}).join(MOD)
    return room, room.member(CREATOR, "ban", sender=MOD)


@rule("a ban of one v12 creator by another", reject=versions(12, 12), because="may not ban")
def _(v):
    room = AuthRoom(v, create_content={"additional_creators": [ALICE]}).join(ALICE)
    return room, room.member(CREATOR, "ban", sender=ALICE)


# =====================================================================================
# 5.7 knock
# =====================================================================================


@rule("a knock on a knock room", allow=versions(7), reject=versions(1, 6), because="unknown membership")
def _(v):
    room = AuthRoom(v).set_join_rule("knock")
    return room, room.member(BOB, "knock")


@rule("a knock on a knock_restricted room", allow=versions(10), reject=versions(7, 9), because="knocking")
def _(v):
    room = AuthRoom(v).set_join_rule("knock_restricted")
    return room, room.member(BOB, "knock")


@rule("a knock on an invite-only room", reject=versions(7), because="knocking")
def _(v):
    room = AuthRoom(v)
    return room, room.member(BOB, "knock")


@rule("a knock on behalf of another user", reject=versions(7), because="another user")
def _(v):
    room = AuthRoom(v).set_join_rule("knock")
    return room, room.member(BOB, "knock", sender=CREATOR)


@pytest.mark.parametrize("membership", ["invite", "join", "ban"])
def test_a_user_who_is_invited_joined_or_banned_cannot_knock(membership):
    for v in versions(7):
        room = AuthRoom(v).set_join_rule("knock").set_member(BOB, membership, sender=CREATOR)
        with pytest.raises(AuthError, match="cannot knock"):
            check_auth(room.member(BOB, "knock"), room.state, room.rv)


@rule("a knock after having left", allow=versions(7))
def _(v):
    room = AuthRoom(v).set_join_rule("knock").set_member(BOB, "leave")
    return room, room.member(BOB, "knock")


@pytest.mark.parametrize("r, version, expected", TABLE.params())
def test_auth_rule(r: Rule, version: str, expected: bool) -> None:
    check_row(r, version, expected)
