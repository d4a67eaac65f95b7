"""Our auth rules and Synapse's agree, on the rule table and on thousands of random rooms.

Synapse is not a dependency: the comparison runs it in a subprocess with the Python of
$SYNAPSE_PYTHON, this interpreter or `.venv-synapse` (`run_synapse.find_synapse_python`) and
is skipped where there is none. Only Synapse's
*state-dependent* rules are compared; the few rules Synapse enforces at another stage
(signature presence, the v12 room ID, canonical JSON) or enforces more loosely (malformed
power level values it would later crash on) are listed in KNOWN_DIFFERENCES with why.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from homeserver.event_auth import AuthError, check_auth
from homeserver.events.event import Event
from scripts.synapse.run_synapse import find_synapse_python
from tests.event_auth import test_auth_membership_rules, test_auth_power_level_rules, test_auth_rules
from tests.event_auth.authroom import ALICE, BOB, CAROL, CREATOR, MOD, AuthRoom, versions

_SYNAPSE_PYTHON = find_synapse_python()
_DRIVER = Path(__file__).with_name("synapse_auth_driver.py")

pytestmark = pytest.mark.skipif(_SYNAPSE_PYTHON is None, reason="no Python with Synapse installed")

# Table rows where Synapse's state-dependent rules and ours disagree, and why that is fine.
KNOWN_DIFFERENCES = {
    # Synapse federates only when m.federate is exactly true; the spec stops it only for false.
    "a remote user's message in a room whose m.federate is not a boolean",
    # Checked by Synapse before the state-dependent rules (check_state_independent_auth_rules).
    "an event whose room_id is not the create event's ID",
    "an event in a room whose create event was rejected",
    # Checked by Synapse with the signatures (validate_event_for_room_version), and only for
    # joins; the spec's rule covers every member event carrying the key.
    "a restricted join not signed by the authorising server",
    "a self-leave carrying an unsigned join_authorised_via_users_server",
    # Canonical JSON (v6+) is enforced by Synapse when parsing the event.
    "a power levels event with a float level",
    "a power levels event with an integer beyond canonical JSON's range",
    # Synapse only validates `users` of a room's first power levels event and int()s the
    # other values later (accepting "5_0" and true, crashing on "50.0"); we reject values
    # the spec's format does not allow.
    "a power levels event with a decimal string level",
    "a power levels event with an underscored string level",
    "a power levels event with a boolean level",
    "a power levels event whose events is not an object",
    # Synapse lets a v1/v2 redaction without `redacts` through; the spec's rule 11 cannot match it.
    "a redaction naming no event below the redact level",
}


def _case_json(room: AuthRoom, event: Event) -> dict[str, Any]:
    def spec(e: Event) -> dict[str, Any]:
        return {
            "pdu": dict(e.pdu),
            "event_id": e.event_id,
            "rejected": e.rejected_reason,
            "v1_refs": room.rv.event_id_in_event,
        }

    return {
        "version": room.rv.identifier,
        "event": spec(event),
        "state": [spec(e) for e in room.state.values()],
    }


def _synapse_verdicts(cases: list[dict[str, Any]]) -> list[list[Any]]:
    result = subprocess.run(
        [str(_SYNAPSE_PYTHON), str(_DRIVER)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(result.stdout)


def _ours(room: AuthRoom, event: Event) -> tuple[bool, str]:
    try:
        check_auth(event, room.state, room.rv)
    except AuthError as e:
        return False, e.reason
    return True, ""


def test_synapse_agrees_with_every_row_of_the_rule_table_except_the_known_differences():
    rows = []
    params = [
        *test_auth_rules.TABLE.params(),
        *test_auth_membership_rules.TABLE.params(),
        *test_auth_power_level_rules.TABLE.params(),
    ]
    for param in params:
        rule, version, expected = param.values
        room, event = rule.build(version)
        rows.append((rule.description, expected, _case_json(room, event)))
    verdicts = _synapse_verdicts([case for _, _, case in rows])
    differing = {
        description
        for (description, expected, _), (allowed, _) in zip(rows, verdicts, strict=True)
        if allowed != expected
    }
    # Equality: an unlisted difference fails, and so does a listed one that went away.
    assert differing == KNOWN_DIFFERENCES


# --- random rooms -----------------------------------------------------------------------

_USERS = [CREATOR, ALICE, BOB, CAROL, MOD]
_LEVELS = [0, 10, 50, 100]
_NAMED = ["ban", "kick", "redact", "invite", "events_default", "state_default", "users_default"]
_TYPES = ["m.room.name", "m.room.message", "m.custom", "m.room.power_levels", "m.room.third_party_invite"]
_KEY = generate_signing_key("1")
_PUBLIC_KEY = encode_verify_key_base64(get_verify_key(_KEY))


def _level(rng: random.Random, stringy: bool) -> int | str:
    level = rng.choice(_LEVELS)
    return str(level) if stringy and rng.random() < 0.2 else level


def _random_power_levels(rng: random.Random, room_version: Any, creators: set[str]) -> dict[str, Any]:
    stringy = not room_version.enforce_int_power_levels
    content: dict[str, Any] = {n: _level(rng, stringy) for n in _NAMED if rng.random() < 0.5}
    content["users"] = {
        u: _level(rng, stringy)
        for u in _USERS
        if rng.random() < 0.6
        and not (room_version.creator_power_infinite and u in creators and rng.random() < 0.9)
    }
    content["events"] = {t: _level(rng, stringy) for t in _TYPES if rng.random() < 0.3}
    if rng.random() < 0.5:
        content["notifications"] = {"room": _level(rng, stringy)}
    return content


def _random_room(rng: random.Random) -> AuthRoom:
    v = rng.choice(versions())
    create_content: dict[str, Any] = {}
    if rng.random() < 0.15:
        create_content["m.federate"] = False
    if v == "12" and rng.random() < 0.4:
        create_content["additional_creators"] = [rng.choice([ALICE, BOB])]
    room = AuthRoom(v, create_content=create_content, power_levels=None, join_rule=None)
    creators = {CREATOR, *create_content.get("additional_creators", [])}
    if rng.random() < 0.85:
        room.put(
            room.event(
                "m.room.power_levels", CREATOR, _random_power_levels(rng, room.rv, creators), state_key=""
            )
        )
    rules = ["public", "invite", "knock", "restricted", "knock_restricted", "private", None]
    rule = rng.choice(rules)
    if rule is not None:
        room.set_join_rule(rule)
    memberships = [None, "join", "join", "invite", "leave", "ban"] + (
        ["knock"] if room.rv.knock_join_rule else []
    )
    for user in _USERS:
        membership = "join" if user == CREATOR and rng.random() < 0.8 else rng.choice(memberships)
        if membership is None:
            room.state.pop(("m.room.member", user), None)
        else:
            room.set_member(user, membership, sender=CREATOR if membership in ("invite", "ban") else user)
    if rng.random() < 0.3:
        invite = {"display_name": "x", "public_key": _PUBLIC_KEY}
        room.put(room.event("m.room.third_party_invite", rng.choice(_USERS), invite, state_key="tok"))
    return room


def _random_member_event(rng: random.Random, room: AuthRoom) -> Event:
    sender = rng.choice(_USERS)
    membership = rng.choice(["join", "join", "invite", "leave", "ban", "knock", "knock", "dance"])
    target = sender if rng.random() < 0.5 else rng.choice(_USERS)
    content: dict[str, Any] = {"membership": membership}
    prev_events = None
    if membership == "join" and rng.random() < 0.1:
        prev_events = [room.create.event_id]
    if membership == "join" and room.rv.restricted_join_rule and rng.random() < 0.5:
        content["join_authorised_via_users_server"] = rng.choice(_USERS)
    if membership == "invite" and rng.random() < 0.3:
        signed = sign_json({"mxid": target, "token": rng.choice(["tok", "nope"])}, "id.example", _KEY)
        content["third_party_invite"] = {"display_name": "x", "signed": signed}
    event = room.event("m.room.member", sender, content, state_key=target, prev_events=prev_events)
    authoriser = content.get("join_authorised_via_users_server")
    if authoriser:
        event.pdu["signatures"][authoriser.split(":", 1)[1]] = {"ed25519:k": "sig"}  # type: ignore[index]
    return event


def _random_event(rng: random.Random, room: AuthRoom) -> Event:
    kind = rng.random()
    if kind < 0.45:
        return _random_member_event(rng, room)
    sender = rng.choice(_USERS)
    if kind < 0.7:
        creators = {CREATOR, *room.create.content.get("additional_creators", [])}
        return room.event(
            "m.room.power_levels", sender, _random_power_levels(rng, room.rv, creators), state_key=""
        )
    if kind < 0.8:
        state_key = rng.choice(["", sender, rng.choice(_USERS), "b.example"])
        return room.event(
            rng.choice(["m.room.name", "m.custom", "m.room.aliases", "m.room.third_party_invite"]),
            sender,
            {},
            state_key=state_key,
        )
    if kind < 0.9 and room.rv.event_id_in_event:
        return room.event("m.room.redaction", sender, {}, redacts=f"$1:{rng.choice(['a', 'b'])}.example")
    return room.event(rng.choice(["m.room.message", "m.custom"]), sender, {"body": "x"})


def test_synapse_agrees_on_random_rooms_and_events():
    rng = random.Random(20261125)
    cases = []
    for _ in range(4000):
        room = _random_room(rng)
        cases.append((room, _random_event(rng, room)))
    verdicts = _synapse_verdicts([_case_json(room, event) for room, event in cases])
    disagreements = []
    for (room, event), (theirs, their_reason) in zip(cases, verdicts, strict=True):
        ours, our_reason = _ours(room, event)
        if ours != theirs:
            disagreements.append(
                f"v{room.rv.identifier} {event.type} {dict(event.content)} by {event.sender}: "
                f"ours={ours} ({our_reason}) synapse={theirs} ({their_reason})"
            )
    allowed = sum(_ours(room, event)[0] for room, event in cases)
    assert 400 < allowed < 3600, "the random rooms should exercise both outcomes"
    assert not disagreements, "\n".join(disagreements[:20])
