"""The pure push-rule data: the default rule set, merging with a user's rules, placement, validation."""

from __future__ import annotations

import json
import re

import pytest

from homeserver.errors import MatrixError
from homeserver.push.rules import (
    DefaultRuleChange,
    PushRule,
    check_actions,
    default_rules_for,
    merge_rules,
    parse_enabled,
    parse_new_rule,
    place_rule,
    ruleset_json,
)
from tests.support.spec import need_spec

ALICE = "@alice:example.org"

# The full default set, in order, as a reader of the spec would list it. Legacy mention rules
# (contains_display_name, roomnotif, contains_user_name) left the spec in v1.17 but Synapse still
# serves them, in these places.
EXPECTED_DEFAULT_ORDER = {
    "override": [
        ".m.rule.master",
        ".m.rule.suppress_notices",
        ".m.rule.invite_for_me",
        ".m.rule.member_event",
        ".m.rule.is_user_mention",
        ".m.rule.contains_display_name",
        ".m.rule.is_room_mention",
        ".m.rule.roomnotif",
        ".m.rule.tombstone",
        ".m.rule.reaction",
        ".m.rule.room.server_acl",
        ".m.rule.suppress_edits",
    ],
    "content": [".m.rule.contains_user_name"],
    "room": [],
    "sender": [],
    "underride": [
        ".m.rule.call",
        ".m.rule.encrypted_room_one_to_one",
        ".m.rule.room_one_to_one",
        ".m.rule.message",
        ".m.rule.encrypted",
    ],
}

SOUND = {"set_tweak": "sound", "value": "default"}
HIGHLIGHT = {"set_tweak": "highlight"}


def defaults_json(user_id: str = ALICE) -> dict:
    return ruleset_json(merge_rules(user_id, [], {}))["global"]


def ids(ruleset: dict) -> dict[str, list[str]]:
    return {kind: [rule["rule_id"] for rule in rules] for kind, rules in ruleset.items()}


def test_the_default_rule_set_lists_every_rule_in_the_specs_order():
    assert ids(defaults_json()) == EXPECTED_DEFAULT_ORDER


def test_every_default_rule_is_marked_default_and_only_the_master_rule_starts_disabled():
    for rules in defaults_json().values():
        for rule in rules:
            assert rule["default"] is True
            assert rule["enabled"] is (rule["rule_id"] != ".m.rule.master")


def test_default_rules_carry_conditions_only_for_override_and_underride_kinds():
    ruleset = defaults_json()
    for kind in ("override", "underride"):
        assert all(set(rule) == {"rule_id", "default", "enabled", "conditions", "actions"} for rule in ruleset[kind])
    (content_rule,) = ruleset["content"]
    assert set(content_rule) == {"rule_id", "default", "enabled", "pattern", "actions"}


def test_the_rules_about_the_user_name_them_by_id_and_localpart():
    ruleset = defaults_json("@bob.smith:example.org")
    by_id = {rule["rule_id"]: rule for rules in ruleset.values() for rule in rules}
    assert by_id[".m.rule.invite_for_me"]["conditions"] == [
        {"kind": "event_match", "key": "type", "pattern": "m.room.member"},
        {"kind": "event_match", "key": "content.membership", "pattern": "invite"},
        {"kind": "event_match", "key": "state_key", "pattern": "@bob.smith:example.org"},
    ]
    assert by_id[".m.rule.is_user_mention"]["conditions"] == [
        {"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids",
         "value": "@bob.smith:example.org"},
    ]
    assert by_id[".m.rule.contains_user_name"] == {
        "rule_id": ".m.rule.contains_user_name", "default": True, "enabled": True,
        "pattern": "bob.smith", "actions": ["notify", SOUND, HIGHLIGHT],
    }


def test_the_actions_of_the_default_rules_are_the_specs():
    by_id = {rule["rule_id"]: rule["actions"] for rules in defaults_json().values() for rule in rules}
    assert by_id == {
        ".m.rule.master": [],
        ".m.rule.suppress_notices": [],
        ".m.rule.invite_for_me": ["notify", SOUND],
        ".m.rule.member_event": [],
        ".m.rule.is_user_mention": ["notify", SOUND, HIGHLIGHT],
        ".m.rule.contains_display_name": ["notify", SOUND, HIGHLIGHT],
        ".m.rule.is_room_mention": ["notify", HIGHLIGHT],
        ".m.rule.roomnotif": ["notify", HIGHLIGHT],
        ".m.rule.tombstone": ["notify", HIGHLIGHT],
        ".m.rule.reaction": [],
        ".m.rule.room.server_acl": [],
        ".m.rule.suppress_edits": [],
        ".m.rule.contains_user_name": ["notify", SOUND, HIGHLIGHT],
        ".m.rule.call": ["notify", {"set_tweak": "sound", "value": "ring"}],
        ".m.rule.encrypted_room_one_to_one": ["notify", SOUND],
        ".m.rule.room_one_to_one": ["notify", SOUND],
        ".m.rule.message": ["notify"],
        ".m.rule.encrypted": ["notify"],
    }


def _spec_definitions() -> dict[str, dict]:
    """Each "Definition:" JSON block of the spec's Predefined Rules section, by rule_id."""
    text = need_spec("content/client-server-api/modules/push.md").read_text(encoding="utf-8")
    section = text[text.index("#### Predefined Rules"):text.index("#### Push Rules: API")]
    blocks = re.findall(r"```json\n(.*?)```", section, flags=re.S)
    definitions = [json.loads(block) for block in blocks]
    return {d["rule_id"]: d for d in definitions}


def test_each_default_rule_the_spec_defines_matches_its_definition_exactly():
    definitions = _spec_definitions()
    assert len(definitions) >= 15
    ours = {rule["rule_id"]: rule for rules in defaults_json(ALICE).values() for rule in rules}
    for rule_id, definition in definitions.items():
        expected = json.loads(json.dumps(definition).replace("[the user's Matrix ID]", ALICE))
        assert ours[rule_id] == expected, rule_id


def user_rule(kind: str, rule_id: str, **kwargs) -> PushRule:
    if kind in ("override", "underride"):
        kwargs.setdefault("conditions", [])
    return PushRule(kind, rule_id, ["notify"], **kwargs)


def test_user_rules_come_before_the_defaults_of_their_kind_but_after_the_master_rule():
    merged = merge_rules(ALICE, [user_rule("override", "mine"), user_rule("underride", "low"),
                                 user_rule("content", "word", pattern="cake")], {})
    ruleset = ids(ruleset_json(merged)["global"])
    assert ruleset["override"][:3] == [".m.rule.master", "mine", ".m.rule.suppress_notices"]
    assert ruleset["content"] == ["word", ".m.rule.contains_user_name"]
    assert ruleset["underride"][0] == "low"


def test_merged_rules_run_in_the_kind_order_override_content_room_sender_underride():
    merged = merge_rules(ALICE, [user_rule("sender", "@bob:example.org"), user_rule("room", "!r:example.org")], {})
    kinds = [rule.kind for rule in merged]
    assert kinds == sorted(kinds, key=["override", "content", "room", "sender", "underride"].index)


def test_a_users_change_to_a_default_rule_replaces_only_the_attribute_changed():
    merged = merge_rules(ALICE, [], {
        ("override", ".m.rule.master"): DefaultRuleChange(enabled=True),
        ("underride", ".m.rule.message"): DefaultRuleChange(actions=[]),
    })
    by_id = {rule.rule_id: rule for rule in merged}
    assert (by_id[".m.rule.master"].enabled, by_id[".m.rule.master"].actions) == (True, [])
    assert (by_id[".m.rule.message"].enabled, by_id[".m.rule.message"].actions) == (True, [])
    assert by_id[".m.rule.message"].default is True


def test_changing_one_users_defaults_does_not_touch_the_shared_table():
    merge_rules(ALICE, [], {("underride", ".m.rule.call"): DefaultRuleChange(actions=["dont_notify"])})
    call = next(r for r in default_rules_for(ALICE) if r.rule_id == ".m.rule.call")
    assert call.actions[0] == "notify"


def test_content_room_and_sender_rules_imply_their_conditions_for_evaluation():
    assert user_rule("content", "c", pattern="cake*").match_conditions() == [
        {"kind": "event_match", "key": "content.body", "pattern": "cake*"}]
    assert user_rule("room", "!r:hs").match_conditions() == [
        {"kind": "event_match", "key": "room_id", "pattern": "!r:hs"}]
    assert user_rule("sender", "@b:hs").match_conditions() == [
        {"kind": "event_match", "key": "sender", "pattern": "@b:hs"}]


@pytest.mark.parametrize(("order", "rule_id", "before", "after", "expected"), [
    ([], "new", None, None, ["new"]),
    (["a", "b"], "new", None, None, ["new", "a", "b"]),
    (["a", "b"], "b", None, None, ["a", "b"]),  # an update keeps its place
    (["a", "b"], "new", "b", None, ["a", "new", "b"]),
    (["a", "b"], "new", "a", None, ["new", "a", "b"]),
    (["a", "b"], "new", None, "a", ["a", "new", "b"]),
    (["a", "b"], "new", None, "b", ["a", "b", "new"]),
    (["a", "b", "c"], "a", None, "c", ["b", "c", "a"]),  # moving an existing rule
    (["a", "b", "c"], "c", "a", None, ["c", "a", "b"]),
    (["a", "b", "c"], "new", "c", "a", ["a", "b", "new", "c"]),  # before wins over after
])
def test_placing_a_rule_follows_before_and_after(order, rule_id, before, after, expected):
    assert place_rule(order, rule_id, before=before, after=after) == expected


@pytest.mark.parametrize(("before", "after", "message"), [
    ("missing", None, "before: no user-defined rule 'missing'"),
    (None, ".m.rule.master", "after: no user-defined rule '.m.rule.master'"),
    ("x", None, "before: a rule cannot be placed relative to itself"),
])
def test_placing_a_rule_relative_to_an_unknown_rule_names_the_parameter(before, after, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        place_rule(["a"], "x", before=before, after=after)


def test_room_and_sender_rules_not_named_by_an_id_are_accepted_as_synapse_accepts_them():
    assert parse_new_rule("room", "not-a-room", {"actions": []}).match_conditions() == [
        {"kind": "event_match", "key": "room_id", "pattern": "not-a-room"}]
    assert parse_new_rule("sender", "bob", {"actions": []}).rule_id == "bob"


@pytest.mark.parametrize(("kind", "rule_id", "body", "errcode", "field"), [
    ("bogus", "r", {"actions": []}, "M_INVALID_PARAM", "kind"),
    ("override", ".m.rule.master", {"actions": [], "conditions": []}, "M_INVALID_PARAM", "ruleId"),
    ("override", ".mine", {"actions": [], "conditions": []}, "M_INVALID_PARAM", "ruleId"),
    ("override", "a\\b", {"actions": [], "conditions": []}, "M_INVALID_PARAM", "ruleId"),
    ("override", "x" * 256, {"actions": [], "conditions": []}, "M_INVALID_PARAM", "ruleId"),
    ("room", "", {"actions": []}, "M_INVALID_PARAM", "ruleId"),
    ("override", "r", {"conditions": []}, "M_BAD_JSON", "actions"),
    ("override", "r", {"actions": "notify", "conditions": []}, "M_BAD_JSON", "actions"),
    ("override", "r", {"actions": ["shout"], "conditions": []}, "M_BAD_JSON", "actions[0]"),
    ("override", "r", {"actions": [{"value": 1}], "conditions": []}, "M_BAD_JSON", "actions[0]"),
    ("override", "r", {"actions": [{"set_tweak": "highlight", "value": "yes"}], "conditions": []},
     "M_BAD_JSON", "actions[0].value"),
    ("override", "r", {"actions": [3], "conditions": []}, "M_BAD_JSON", "actions[0]"),
    ("override", "r", {"actions": []}, "M_BAD_JSON", "conditions"),
    ("underride", "r", {"actions": [], "conditions": {}}, "M_BAD_JSON", "conditions"),
    ("override", "r", {"actions": [], "conditions": ["x"]}, "M_BAD_JSON", "conditions[0]"),
    ("override", "r", {"actions": [], "conditions": [{}]}, "M_BAD_JSON", "conditions[0].kind"),
    ("override", "r", {"actions": [], "conditions": [{"kind": "event_match", "key": "type"}]},
     "M_BAD_JSON", "conditions[0].pattern"),
    ("override", "r", {"actions": [], "conditions": [{"kind": "event_match", "pattern": "x"}]},
     "M_BAD_JSON", "conditions[0].key"),
    ("override", "r", {"actions": [], "conditions": [{"kind": "event_property_is", "key": "k"}]},
     "M_BAD_JSON", "conditions[0].value"),
    ("override", "r", {"actions": [], "conditions": [{"kind": "event_property_is", "key": "k", "value": 2**53}]},
     "M_BAD_JSON", "conditions[0].value"),
    ("override", "r", {"actions": [], "conditions": [{"kind": "event_property_contains", "key": "k",
                                                      "value": [1]}]},
     "M_BAD_JSON", "conditions[0].value"),
    ("override", "r", {"actions": [], "conditions": [{"kind": "room_member_count", "is": "=2"}]},
     "M_BAD_JSON", "conditions[0].is"),
    ("override", "r", {"actions": [], "conditions": [{"kind": "sender_notification_permission"}]},
     "M_BAD_JSON", "conditions[0].key"),
    ("content", "r", {"actions": []}, "M_BAD_JSON", "pattern"),
    ("content", "r", {"actions": [], "pattern": ""}, "M_BAD_JSON", "pattern"),
])
def test_a_bad_rule_is_refused_naming_the_field(kind, rule_id, body, errcode, field):
    with pytest.raises(MatrixError) as caught:
        parse_new_rule(kind, rule_id, body)
    assert (caught.value.http_status, caught.value.errcode) == (400, errcode)
    assert caught.value.message.startswith(field + ":"), caught.value.message


def test_a_valid_override_rule_keeps_its_conditions_and_actions_as_sent():
    conditions = [
        {"kind": "event_match", "key": "room_id", "pattern": "!r:hs"},
        {"kind": "event_property_is", "key": "content.m\\.federate", "value": None},
        {"kind": "room_member_count", "is": ">=10"},
        {"kind": "contains_display_name"},
        {"kind": "org.example.future_condition", "anything": 1},  # unknown kinds are kept: they never match
    ]
    actions = ["notify", {"set_tweak": "sound", "value": "bing"}, {"set_tweak": "highlight", "value": False},
               "dont_notify", {"set_tweak": "org.example.led", "value": [1, 2]}]
    rule = parse_new_rule("override", "mine", {"conditions": conditions, "actions": actions})
    assert rule.to_json() == {"rule_id": "mine", "default": False, "enabled": True,
                              "conditions": conditions, "actions": actions}


def test_room_and_sender_rules_ignore_conditions_and_patterns_in_the_body():
    rule = parse_new_rule("room", "!r:hs", {"actions": [], "conditions": [{"kind": "x"}], "pattern": "p"})
    assert rule.to_json() == {"rule_id": "!r:hs", "default": False, "enabled": True, "actions": []}


def test_enabled_accepts_an_object_or_a_bare_boolean():
    assert parse_enabled({"enabled": False}) is False
    assert parse_enabled(True) is True
    for bad in ({"enabled": "true"}, {}, 1, None):
        with pytest.raises(MatrixError, match="enabled"):
            parse_enabled(bad)


def test_actions_must_be_a_list():
    assert check_actions([]) == []
    with pytest.raises(MatrixError, match="^400 M_BAD_JSON: actions"):
        check_actions({"notify": True})
