"""Push rule evaluation as a table: single conditions, the default rule set, and user rules."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.push.evaluator import (
    EventView,
    RoomFacts,
    compile_condition,
    compile_rules,
    glob_matches,
    split_key,
)
from homeserver.push.rules import DefaultRuleChange, PushRule, merge_rules

ALICE = "@alice:example.org"
ROOM = "!room:example.org"


def message(body: Any = "hello", msgtype: str = "m.text", **content: Any) -> dict[str, Any]:
    event_content = {"msgtype": msgtype, **content}
    if body is not None:
        event_content["body"] = body
    return {"type": "m.room.message", "sender": "@bob:example.org", "room_id": ROOM, "content": event_content}


FACTS = RoomFacts(member_count=5, sender_power_level=0, notification_levels={})

# --- single conditions: (condition, event, facts, expected) ------------------------------------

TOPIC = {"type": "m.room.topic", "state_key": "", "sender": "@example:example.org", "room_id": ROOM,
         "content": {"topic": "Lunch plans"}}
CREATE = {"type": "m.room.create", "state_key": "", "sender": "@example:example.org", "room_id": ROOM,
          "content": {"creator": "@example:example.org", "m.federate": True,
                      "predecessor": {"event_id": "$something:example.org", "room_id": "!oldroom:example.org"},
                      "room_version": "1"}}
ALIASES = {"type": "m.room.canonical_alias", "state_key": "", "sender": "@example:example.org", "room_id": ROOM,
           "content": {"alias": "#somewhere:localhost",
                       "alt_aliases": ["#somewhere:example.org", "#myroom:example.com"]}}


def topic(value: Any) -> dict[str, Any]:
    return {**TOPIC, "content": {"topic": value}}


def match(key: str, pattern: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def prop_is(key: str, value: Any) -> dict[str, Any]:
    return {"kind": "event_property_is", "key": key, "value": value}


def contains(key: str, value: Any) -> dict[str, Any]:
    return {"kind": "event_property_contains", "key": key, "value": value}


def count(is_: str) -> dict[str, Any]:
    return {"kind": "room_member_count", "is": is_}


CONDITION_CASES = [
    # The spec's event_match example: `lunc?*` on content.topic.
    ("spec: lunc?* matches 'Lunch plans'", match("content.topic", "lunc?*"), TOPIC, True),
    ("spec: lunc?* matches 'LUNCH' case-insensitively", match("content.topic", "lunc?*"), topic("LUNCH"), True),
    ("spec: lunc?* does not match a leading space", match("content.topic", "lunc?*"), topic(" lunch"), False),
    ("spec: ? must match one character", match("content.topic", "lunc?*"), topic("lunc"), False),
    ("spec: null is not a string", match("content.topic", "lunc?*"), topic(None), False),
    ("a * pattern does not match a missing key", match("content.nope", "*"), TOPIC, False),
    ("a * pattern does not match a number", match("content.topic", "*"), topic(3), False),
    ("a * pattern matches an empty string", match("content.topic", "*"), topic(""), True),
    ("event_match on the whole value needs the whole value", match("content.topic", "lunch"), TOPIC, False),
    ("event_match on type", match("type", "m.room.topic"), TOPIC, True),
    ("event_match glob on type", match("type", "m.room.*"), TOPIC, True),
    ("event_match on state_key ''", match("state_key", ""), TOPIC, True),
    ("event_match on a non-state event's state_key", match("state_key", "*"), message(), False),
    ("regex characters in a pattern are literal", match("content.topic", "lunch.plans"), topic("lunch plans"),
     False),
    ("brackets in a pattern are literal", match("content.topic", "[ab]"), topic("[ab]"), True),
    ("an object value never matches", match("content.predecessor", "*"), CREATE, False),
    # The spec's content.body example: `ex*ple`.
    ("spec: ex*ple matches 'An example event.'", match("content.body", "ex*ple"), message("An example event."),
     True),
    ("spec: ex*ple matches 'exple'", match("content.body", "ex*ple"), message("exple"), True),
    ("spec: ex*ple spans words in 'An exciting triple-whammy'", match("content.body", "ex*ple"),
     message("An exciting triple-whammy"), True),
    ("a body pattern does not match inside a word", match("content.body", "cake"), message("pancakes"), False),
    ("a body pattern matches a whole word", match("content.body", "cake"), message("I like cake!"), True),
    ("a body pattern is case-insensitive", match("content.body", "CAKE"), message("cake time"), True),
    ("a body pattern matches across unicode case", match("content.body", "ÉCLAIR"), message("un éclair"), True),
    ("an underscore is a word character", match("content.body", "cake"), message("cake_lover"), False),
    ("a digit is a word character", match("content.body", "cake"), message("cake2"), False),
    ("a non-ASCII letter is a boundary", match("content.body", "cake"), message("écakeé"), True),
    ("@room matches at the start", match("content.body", "@room"), message("@room hi"), True),
    ("@room matches after a word character", match("content.body", "@room"), message("hi@room"), True),
    ("@room does not match @roomy", match("content.body", "@room"), message("@roomy"), False),
    ("a multi-line body matches on a later line", match("content.body", "tea"), message("hello\nfancy tea?"),
     True),
    # event_property_is: the spec's example with an escaped dot.
    ("spec: content.m\\.federate is true", prop_is("content.m\\.federate", True), CREATE, True),
    ("spec: a string 'true' is not true", prop_is("content.m\\.federate", True),
     {**CREATE, "content": {"m.federate": "true"}}, False),
    ("spec: 1 is not true", prop_is("content.m\\.federate", True), {**CREATE, "content": {"m.federate": 1}}, False),
    ("true is not 1", prop_is("content.n", 1), {**CREATE, "content": {"n": True}}, False),
    ("an integer matches exactly", prop_is("content.n", 1), {**CREATE, "content": {"n": 1}}, True),
    ("null matches null", prop_is("content.n", None), {**CREATE, "content": {"n": None}}, True),
    ("null does not match a missing key", prop_is("content.n", None), CREATE, False),
    ("property_is is case-sensitive", prop_is("content.topic", "lunch plans"), TOPIC, False),
    ("property_is does not match an array", prop_is("content.alt_aliases", "#myroom:example.com"), ALIASES,
     False),
    ("an unescaped dot walks into objects", prop_is("content.predecessor.room_id", "!oldroom:example.org"),
     CREATE, True),
    ("a doubled backslash is a literal backslash", prop_is("content.m\\\\foo", 1),
     {**CREATE, "content": {"m\\foo": 1}}, True),
    # event_property_contains: the spec's example.
    ("spec: alt_aliases contains #myroom", contains("content.alt_aliases", "#myroom:example.com"), ALIASES, True),
    ("spec: partial values do not match", contains("content.alt_aliases", ":example.com"), ALIASES, False),
    ("contains needs an array", contains("content.alias", "#somewhere:localhost"), ALIASES, False),
    ("contains ignores compound array values", contains("content.a", 1),
     {**CREATE, "content": {"a": [[1], {"x": 1}]}}, False),
    ("contains does not cast", contains("content.a", 1), {**CREATE, "content": {"a": [True, "1"]}}, False),
    ("contains finds a boolean", contains("content.a", True), {**CREATE, "content": {"a": [1, True]}}, True),
    # room_member_count.
    ("member count 5 is 5", count("5"), TOPIC, True),
    ("member count 5 is ==5", count("==5"), TOPIC, True),
    ("member count 5 is not 2", count("2"), TOPIC, False),
    ("member count 5 is <6", count("<6"), TOPIC, True),
    ("member count 5 is not <5", count("<5"), TOPIC, False),
    ("member count 5 is <=5", count("<=5"), TOPIC, True),
    ("member count 5 is >4", count(">4"), TOPIC, True),
    ("member count 5 is not >5", count(">5"), TOPIC, False),
    ("member count 5 is >=5", count(">=5"), TOPIC, True),
    ("a malformed member count never matches", count("~5"), TOPIC, False),
    # Unknown and malformed conditions.
    ("an unknown condition kind never matches", {"kind": "org.example.unknown"}, TOPIC, False),
    ("event_match without a pattern never matches", {"kind": "event_match", "key": "type"}, TOPIC, False),
]


@pytest.mark.parametrize("name, condition, event, expected", CONDITION_CASES,
                         ids=[c[0] for c in CONDITION_CASES])
def test_a_condition_matches_as_the_spec_says(name: str, condition: dict[str, Any], event: dict[str, Any],
                                               expected: bool) -> None:
    assert compile_condition(condition)(EventView(event), FACTS) is expected


@pytest.mark.parametrize("level, notifications, expected", [
    (50, {}, True), (49, {}, False), (0, {"room": 0}, True), (10, {"room": 20}, False),
    (100, {"room": "60"}, True), (0, {"room": "junk"}, False), (float("inf"), {"room": 10**9}, True),
])
def test_sender_notification_permission_compares_the_senders_level(level: float, notifications: dict[str, Any],
                                                                   expected: bool) -> None:
    condition = compile_condition({"kind": "sender_notification_permission", "key": "room"})
    facts = RoomFacts(member_count=3, sender_power_level=level, notification_levels=notifications)
    assert condition(EventView(message()), facts) is expected


@pytest.mark.parametrize("key, parts", [
    ("content.body", ("content", "body")),
    ("content.m\\.relates_to", ("content", "m.relates_to")),
    ("content.m\\\\foo", ("content", "m\\foo")),
    ("content.m\\xfoo", ("content", "m\\xfoo")),
    ("content.m\\.mentions.user_ids", ("content", "m.mentions", "user_ids")),
])
def test_dotted_keys_honour_backslash_escapes(key: str, parts: tuple[str, ...]) -> None:
    assert split_key(key) == parts


def test_identical_conditions_compile_to_one_shared_object() -> None:
    assert compile_condition(match("type", "x")) is compile_condition({"pattern": "x", "key": "type",
                                                                       "kind": "event_match"})
    assert glob_matches("a*c", "ABC")


# --- the default rules, end to end ---------------------------------------------------------------

def evaluate(event: dict[str, Any], *, user: str = ALICE, display_name: str | None = "Alice",
             member_count: int = 5, power: float = 0, rules: list[PushRule] | None = None,
             changes: dict[tuple[str, str], DefaultRuleChange] | None = None) -> tuple[str | None, bool, bool]:
    merged = merge_rules(user, rules or [], changes or {})
    outcome = compile_rules(merged).evaluate(EventView(event), RoomFacts(member_count, power, {}), display_name)
    if outcome is None:
        return None, False, False
    return outcome.rule_id, outcome.notify, outcome.highlight


def mentions(body: str, user_ids: list[str] | None = None, room: bool | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {}
    if user_ids is not None:
        m["user_ids"] = user_ids
    if room is not None:
        m["room"] = room
    return message(body, **{"m.mentions": m})


def state(event_type: str, state_key: str, **content: Any) -> dict[str, Any]:
    return {"type": event_type, "state_key": state_key, "sender": "@bob:example.org", "room_id": ROOM,
            "content": content}


ENCRYPTED = {"type": "m.room.encrypted", "sender": "@b:x", "room_id": ROOM, "content": {"algorithm": "x"}}

DEFAULT_CASES = [
    ("a plain message in a group notifies quietly", message("hi"), {}, (".m.rule.message", True, False)),
    ("a plain message in a DM notifies", message("hi"), {"member_count": 2},
     (".m.rule.room_one_to_one", True, False)),
    ("an encrypted event in a group notifies", ENCRYPTED, {}, (".m.rule.encrypted", True, False)),
    ("an encrypted event in a DM notifies with sound", ENCRYPTED, {"member_count": 2},
     (".m.rule.encrypted_room_one_to_one", True, False)),
    ("a notice is suppressed", message("beep", msgtype="m.notice"), {}, (".m.rule.suppress_notices", False, False)),
    ("a user mention highlights", mentions("hey", [ALICE]), {}, (".m.rule.is_user_mention", True, True)),
    ("a mention of someone else does not", mentions("hey", ["@carol:example.org"]), {},
     (".m.rule.message", True, False)),
    ("a room mention by a moderator highlights", mentions("all", room=True), {"power": 50},
     (".m.rule.is_room_mention", True, True)),
    ("a room mention by a normal user does not", mentions("all", room=True), {}, (".m.rule.message", True, False)),
    ("a legacy display name mention highlights", message("hi alice!"), {},
     (".m.rule.contains_display_name", True, True)),
    ("a display name inside a word does not", message("malice"), {}, (".m.rule.message", True, False)),
    ("no display name means no display name mention", message("hi Alice"), {"display_name": None},
     (".m.rule.contains_user_name", True, True)),
    ("a localpart mention highlights", message("ping alice"), {"display_name": "Ally"},
     (".m.rule.contains_user_name", True, True)),
    ("intentional mentions switch legacy mentions off", mentions("hi alice", []), {},
     (".m.rule.message", True, False)),
    ("a legacy @room by a moderator highlights", message("@room lunch"), {"power": 100},
     (".m.rule.roomnotif", True, True)),
    ("a legacy @room by a normal user does not", message("@room lunch"), {}, (".m.rule.message", True, False)),
    ("an invite for me notifies", state("m.room.member", ALICE, membership="invite"), {},
     (".m.rule.invite_for_me", True, False)),
    ("an invite for someone else is a member event", state("m.room.member", "@c:x", membership="invite"), {},
     (".m.rule.member_event", False, False)),
    ("a join is silent", state("m.room.member", "@c:x", membership="join"), {}, (".m.rule.member_event", False,
                                                                                  False)),
    ("a tombstone highlights", state("m.room.tombstone", "", body="moved"), {}, (".m.rule.tombstone", True, True)),
    ("a tombstone with a state key is not one", state("m.room.tombstone", "x"), {}, (None, False, False)),
    ("a reaction is silent", {"type": "m.reaction", "sender": "@b:x", "room_id": ROOM, "content": {}}, {},
     (".m.rule.reaction", False, False)),
    ("a server ACL change is silent", state("m.room.server_acl", "", allow=["*"]), {},
     (".m.rule.room.server_acl", False, False)),
    ("an edit is silent", message("* fixed", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}}), {},
     (".m.rule.suppress_edits", False, False)),
    ("a call invite rings", {"type": "m.call.invite", "sender": "@b:x", "room_id": ROOM, "content": {}}, {},
     (".m.rule.call", True, False)),
    ("a topic change matches nothing", TOPIC, {}, (None, False, False)),
    ("a thread reply notifies", message("in thread", **{"m.relates_to": {"rel_type": "m.thread",
                                                                        "event_id": "$root"}}), {},
     (".m.rule.message", True, False)),
]


@pytest.mark.parametrize("name, event, options, expected", DEFAULT_CASES, ids=[c[0] for c in DEFAULT_CASES])
def test_the_default_rules_decide_as_the_spec_lists(name: str, event: dict[str, Any], options: dict[str, Any],
                                                    expected: tuple[str | None, bool, bool]) -> None:
    assert evaluate(event, **options) == expected


def test_the_master_rule_silences_everything_once_enabled() -> None:
    changes = {("override", ".m.rule.master"): DefaultRuleChange(enabled=True)}
    assert evaluate(mentions("x", [ALICE]), changes=changes) == (".m.rule.master", False, False)


def test_a_disabled_default_rule_falls_through_to_the_next() -> None:
    changes = {("override", ".m.rule.suppress_notices"): DefaultRuleChange(enabled=False)}
    assert evaluate(message("beep", msgtype="m.notice"), changes=changes) == (".m.rule.message", True, False)


def test_changed_default_actions_apply() -> None:
    changes = {("underride", ".m.rule.message"): DefaultRuleChange(actions=["notify", {"set_tweak": "highlight"}])}
    assert evaluate(message("x"), changes=changes) == (".m.rule.message", True, True)


def test_a_content_rule_matches_keywords_at_word_boundaries() -> None:
    rule = PushRule("content", "cake", ["notify", {"set_tweak": "highlight", "value": False}], pattern="cake*")
    assert evaluate(message("Cakes for all"), rules=[rule]) == ("cake", True, False)
    assert evaluate(message("pancakes for all"), rules=[rule]) == (".m.rule.message", True, False)


def test_a_room_rule_can_mute_a_room() -> None:
    rule = PushRule("room", ROOM, [])
    assert evaluate(message("x"), rules=[rule]) == (ROOM, False, False)
    # Mentions are override rules: they still win over a muted room.
    assert evaluate(mentions("x", [ALICE]), rules=[rule]) == (".m.rule.is_user_mention", True, True)


def test_a_sender_rule_matches_only_that_sender() -> None:
    rule = PushRule("sender", "@bob:example.org", ["notify", {"set_tweak": "sound", "value": "bob"}])
    assert evaluate(message("x"), rules=[rule]) == ("@bob:example.org", True, False)
    other = {**message("x"), "sender": "@carol:example.org"}
    assert evaluate(other, rules=[rule]) == (".m.rule.message", True, False)


def test_a_user_override_rule_comes_before_the_defaults() -> None:
    rule = PushRule("override", "quiet", ["dont_notify"], conditions=[match("content.body", "shh")])
    assert evaluate(mentions("shh", [ALICE]), rules=[rule]) == ("quiet", False, False)


def test_the_spec_example_override_rule_with_a_member_count() -> None:
    # The spec's "Examples" section: notify on `cake` in small rooms only.
    rule = PushRule("override", "cakes", ["notify"],
                    conditions=[match("content.body", "cake"), count("<=10")])
    assert evaluate(message("cake?"), rules=[rule], member_count=10)[0] == "cakes"
    assert evaluate(message("cake?"), rules=[rule], member_count=11)[0] == ".m.rule.message"


def test_a_rule_with_an_unknown_condition_is_skipped() -> None:
    rule = PushRule("override", "future", ["notify", {"set_tweak": "highlight"}],
                    conditions=[{"kind": "org.example.future"}])
    assert evaluate(message("x"), rules=[rule]) == (".m.rule.message", True, False)


def test_a_rule_without_conditions_matches_everything() -> None:
    rule = PushRule("underride", "all", ["notify", {"set_tweak": "highlight"}], conditions=[])
    assert evaluate(TOPIC, rules=[rule]) == ("all", True, True)


def test_tweaks_are_reported_with_the_outcome() -> None:
    merged = merge_rules(ALICE, [], {})
    outcome = compile_rules(merged).evaluate(EventView(mentions("x", [ALICE])), FACTS, None)
    assert outcome is not None and outcome.tweaks == {"sound": "default", "highlight": True}


def test_one_view_serves_many_users_with_their_own_names() -> None:
    view = EventView(message("ask bob or alice"))
    rules = compile_rules(merge_rules(ALICE, [], {}))
    carol = compile_rules(merge_rules("@carol:example.org", [], {}))
    assert rules.evaluate(view, FACTS, "Alice").highlight  # type: ignore[union-attr]
    assert not carol.evaluate(view, FACTS, "Carol").highlight  # type: ignore[union-attr]
    assert rules.evaluate(view, FACTS, "Alice").highlight  # type: ignore[union-attr]
