"""Push rules as plain data: the server-default rule set, per-user changes, merging, validation.

Pure functions only, so that push evaluation can compile a user's merged rule list once and
reuse it until the user's rules change (`PushRulesService` hands out a version with the list).

Ordering (client-server API, "Push Rules" and "Predefined Rules"): kinds are evaluated override,
content, room, sender, underride. Within a kind, the user's own rules come before the server
defaults, except `.m.rule.master`, which stays above every user rule so that it can silence
everything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from homeserver.errors import MatrixError, bad_json, invalid_param, not_found

# In evaluation order.
KINDS: tuple[str, ...] = ("override", "content", "room", "sender", "underride")
# Kinds whose rules carry explicit conditions; the others imply theirs from `pattern` / `rule_id`.
CONDITION_KINDS = frozenset({"override", "underride"})

MASTER_RULE_ID = ".m.rule.master"
# Default rules that looked for mentions in the body (removed from the spec in v1.17, still served
# by Synapse and relied on by clients that do not send `m.mentions`). Intentional mentions
# (MSC3952) say they must not match an event that carries `content.m.mentions`: the evaluator
# needs this set to honour that.
LEGACY_MENTION_RULE_IDS = frozenset(
    {".m.rule.contains_display_name", ".m.rule.roomnotif", ".m.rule.contains_user_name"}
)

# Actions that need no parameters. `dont_notify` and `coalesce` are historical: accepted and
# stored as sent (old clients read them back), ignored by evaluation.
SIMPLE_ACTIONS = frozenset({"notify", "dont_notify", "coalesce"})
IGNORED_ACTIONS = frozenset({"dont_notify", "coalesce"})

MAX_RULE_ID_BYTES = 255
# Canonical JSON integers (appendices, "Canonical JSON").
_MAX_SAFE_INT = 2**53 - 1
_MEMBER_COUNT = re.compile(r"^(==|<=|>=|<|>)?[0-9]+\Z")


@dataclass(frozen=True, slots=True)
class PushRule:
    """One rule in its client-facing shape; `conditions` only for override/underride rules."""

    kind: str
    rule_id: str
    actions: list[Any]
    default: bool = False
    enabled: bool = True
    conditions: list[dict[str, Any]] | None = None
    pattern: str | None = None

    def to_json(self) -> dict[str, Any]:
        rule: dict[str, Any] = {
            "rule_id": self.rule_id,
            "default": self.default,
            "enabled": self.enabled,
            "actions": self.actions,
        }
        if self.kind in CONDITION_KINDS:
            rule["conditions"] = self.conditions or []
        elif self.kind == "content" and self.pattern is not None:
            rule["pattern"] = self.pattern
        return rule

    def match_conditions(self) -> list[dict[str, Any]]:
        """The conditions evaluation applies, including those implied by content/room/sender rules."""
        if self.kind in CONDITION_KINDS:
            return self.conditions or []
        if self.kind == "content":
            return [{"kind": "event_match", "key": "content.body", "pattern": self.pattern or ""}]
        key = "room_id" if self.kind == "room" else "sender"
        return [{"kind": "event_match", "key": key, "pattern": self.rule_id}]


@dataclass(frozen=True, slots=True)
class DefaultRuleChange:
    """A user's change to a server-default rule; None leaves that attribute at its default."""

    enabled: bool | None = None
    actions: list[Any] | None = None


# --- the server-default rules ---------------------------------------------------------------------

class _UserValue:
    """A placeholder in the default rules for a value taken from the rule set's owner."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


USER_ID = _UserValue("user_id")
USER_LOCALPART = _UserValue("user_localpart")

_NOTIFY_SOUND = ["notify", {"set_tweak": "sound", "value": "default"}]
_NOTIFY_SOUND_HIGHLIGHT = ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]
_NOTIFY_HIGHLIGHT = ["notify", {"set_tweak": "highlight"}]


def _match(key: str, pattern: Any) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _rule(kind: str, rule_id: str, conditions: list[dict[str, Any]] | None, actions: list[Any], *,
          enabled: bool = True, pattern: Any = None) -> PushRule:
    return PushRule(kind, rule_id, actions, default=True, enabled=enabled, conditions=conditions,
                    pattern=pattern)


# In the spec's order, with the contents of its definitions. The legacy mention rules sit where
# the spec placed them before v1.17 (and where Synapse still serves them). The user ID and
# localpart are placeholders here: read the rules through `default_rules_for(user_id)`. Unlike
# Synapse we do not add `{"set_tweak": "highlight", "value": false}` to non-highlighting rules:
# the spec defines a missing highlight tweak as false. The poll rules of MSC3930 are not served:
# the spec does not define them and Synapse only serves them behind an experimental flag.
DEFAULT_RULES: tuple[PushRule, ...] = (
    _rule("override", MASTER_RULE_ID, [], [], enabled=False),
    _rule("override", ".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
    _rule("override", ".m.rule.invite_for_me",
          [_match("type", "m.room.member"), _match("content.membership", "invite"), _match("state_key", USER_ID)],
          _NOTIFY_SOUND),
    _rule("override", ".m.rule.member_event", [_match("type", "m.room.member")], []),
    _rule("override", ".m.rule.is_user_mention",
          [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": USER_ID}],
          _NOTIFY_SOUND_HIGHLIGHT),
    _rule("override", ".m.rule.contains_display_name", [{"kind": "contains_display_name"}],
          _NOTIFY_SOUND_HIGHLIGHT),
    _rule("override", ".m.rule.is_room_mention",
          [{"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
           {"kind": "sender_notification_permission", "key": "room"}],
          _NOTIFY_HIGHLIGHT),
    _rule("override", ".m.rule.roomnotif",
          [_match("content.body", "@room"), {"kind": "sender_notification_permission", "key": "room"}],
          _NOTIFY_HIGHLIGHT),
    _rule("override", ".m.rule.tombstone", [_match("type", "m.room.tombstone"), _match("state_key", "")],
          _NOTIFY_HIGHLIGHT),
    _rule("override", ".m.rule.reaction", [_match("type", "m.reaction")], []),
    _rule("override", ".m.rule.room.server_acl", [_match("type", "m.room.server_acl"), _match("state_key", "")],
          []),
    _rule("override", ".m.rule.suppress_edits",
          [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}], []),
    _rule("content", ".m.rule.contains_user_name", None, _NOTIFY_SOUND_HIGHLIGHT, pattern=USER_LOCALPART),
    _rule("underride", ".m.rule.call", [_match("type", "m.call.invite")],
          ["notify", {"set_tweak": "sound", "value": "ring"}]),
    _rule("underride", ".m.rule.encrypted_room_one_to_one",
          [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.encrypted")], _NOTIFY_SOUND),
    _rule("underride", ".m.rule.room_one_to_one",
          [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.message")], _NOTIFY_SOUND),
    _rule("underride", ".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
    _rule("underride", ".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
)

# Default rules that rank above the user's own rules of the same kind.
_PREPENDED_DEFAULTS = frozenset({MASTER_RULE_ID})
_DEFAULT_IDS: frozenset[tuple[str, str]] = frozenset((r.kind, r.rule_id) for r in DEFAULT_RULES)


def is_default_rule(kind: str, rule_id: str) -> bool:
    """Whether `rule_id` names a server-default rule of this kind."""
    return (kind, rule_id) in _DEFAULT_IDS


def _substitute(value: Any, user_id: str, localpart: str) -> Any:
    if value is USER_ID:
        return user_id
    if value is USER_LOCALPART:
        return localpart
    if isinstance(value, dict):
        return {k: _substitute(v, user_id, localpart) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, user_id, localpart) for v in value]
    return value


def default_rules_for(user_id: str) -> list[PushRule]:
    """The server-default rules with the user's ID and localpart filled in, in spec order."""
    localpart = user_id[1:].partition(":")[0]
    return [
        replace(rule, conditions=_substitute(rule.conditions, user_id, localpart),
                pattern=_substitute(rule.pattern, user_id, localpart), actions=list(rule.actions))
        for rule in DEFAULT_RULES
    ]


# --- merging --------------------------------------------------------------------------------------

def merge_rules(user_id: str, user_rules: Iterable[PushRule],
                default_changes: Mapping[tuple[str, str], DefaultRuleChange]) -> list[PushRule]:
    """The user's complete rule list in evaluation order.

    `user_rules` are the user's own rules, most important first within each kind;
    `default_changes` maps (kind, rule_id) of default rules to the user's enabled/actions changes.
    """
    by_kind: dict[str, list[PushRule]] = {kind: [] for kind in KINDS}
    for rule in user_rules:
        by_kind[rule.kind].append(rule)
    prepended: dict[str, list[PushRule]] = {kind: [] for kind in KINDS}
    appended: dict[str, list[PushRule]] = {kind: [] for kind in KINDS}
    for rule in default_rules_for(user_id):
        change = default_changes.get((rule.kind, rule.rule_id))
        if change is not None:
            rule = replace(
                rule,
                enabled=rule.enabled if change.enabled is None else change.enabled,
                actions=rule.actions if change.actions is None else change.actions,
            )
        (prepended if rule.rule_id in _PREPENDED_DEFAULTS else appended)[rule.kind].append(rule)
    merged: list[PushRule] = []
    for kind in KINDS:
        merged += prepended[kind] + by_kind[kind] + appended[kind]
    return merged


def ruleset_json(rules: Iterable[PushRule]) -> dict[str, Any]:
    """`{"global": {kind: [rule, ...]}}`, the body of GET /pushrules/ and of `m.push_rules`."""
    ruleset: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for rule in rules:
        ruleset[rule.kind].append(rule.to_json())
    return {"global": ruleset}


def place_rule(order: Sequence[str], rule_id: str, *, before: str | None = None,
               after: str | None = None) -> list[str]:
    """The user's rule IDs of one kind, most important first, with `rule_id` (re)placed.

    `before` wins when both are given (the spec: the rule must be the next most important one
    relative to `before`). Without either, a new rule goes first and an existing one stays put.
    Raises ValueError naming the parameter whose rule is not in `order`.
    """
    anchor_name, anchor = ("before", before) if before is not None else ("after", after)
    if anchor is not None:
        if anchor == rule_id:
            raise ValueError(f"{anchor_name}: a rule cannot be placed relative to itself")
        if anchor not in order:
            raise ValueError(f"{anchor_name}: no user-defined rule {anchor!r} of this kind")
        rest = [r for r in order if r != rule_id]
        index = rest.index(anchor) + (0 if anchor_name == "before" else 1)
        return rest[:index] + [rule_id] + rest[index:]
    if rule_id in order:
        return list(order)
    return [rule_id, *order]


# --- validation of client input -------------------------------------------------------------------

def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise invalid_param(f"kind: {kind!r} is not one of {', '.join(KINDS)}")


def check_new_rule_id(kind: str, rule_id: str) -> None:
    """Rules the client may create: not empty, no reserved '.' prefix, no slashes, not too long."""
    if not rule_id:
        raise invalid_param("ruleId: must not be empty")
    if rule_id.startswith("."):
        raise invalid_param(f"ruleId: {rule_id!r} starts with '.', which is reserved for server-default rules")
    if "/" in rule_id or "\\" in rule_id:
        raise invalid_param("ruleId: must not contain '/' or '\\'")
    if len(rule_id.encode("utf-8")) > MAX_RULE_ID_BYTES:
        raise invalid_param(f"ruleId: longer than {MAX_RULE_ID_BYTES} bytes")
    # A room rule is named by its room ID and a sender rule by the user ID, but as in Synapse any
    # other name is stored too: its condition simply matches no event (see docs/decisions.md).


def check_actions(actions: Any, field: str = "actions") -> list[Any]:
    """A list of actions the spec defines; `M_BAD_JSON` naming the offending entry."""
    if not isinstance(actions, list):
        raise bad_json(f"{field}: must be an array of actions")
    for i, action in enumerate(actions):
        where = f"{field}[{i}]"
        if isinstance(action, str):
            if action not in SIMPLE_ACTIONS:
                raise bad_json(f"{where}: unknown action {action!r}")
        elif isinstance(action, dict):
            tweak = action.get("set_tweak")
            if not isinstance(tweak, str) or not tweak:
                raise bad_json(f"{where}: an action object needs a 'set_tweak' string")
            if tweak == "highlight" and "value" in action and not isinstance(action["value"], bool):
                raise bad_json(f"{where}.value: the highlight tweak's value must be a boolean")
            if tweak == "sound" and "value" in action and not isinstance(action["value"], str):
                raise bad_json(f"{where}.value: the sound tweak's value must be a string")
        else:
            raise bad_json(f"{where}: must be a string or an object")
    return actions


def _is_exact_value(value: Any) -> bool:
    if value is None or isinstance(value, bool | str):
        return True
    return isinstance(value, int) and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT


def _require_string(condition: Mapping[str, Any], name: str, where: str) -> None:
    if not isinstance(condition.get(name), str):
        raise bad_json(f"{where}.{name}: must be a string")


def check_condition(condition: Any, where: str) -> None:
    """Known condition kinds must carry their parameters; unknown kinds are kept (they never match)."""
    if not isinstance(condition, dict):
        raise bad_json(f"{where}: must be an object")
    kind = condition.get("kind")
    if not isinstance(kind, str) or not kind:
        raise bad_json(f"{where}.kind: must be a non-empty string")
    if kind == "event_match":
        _require_string(condition, "key", where)
        _require_string(condition, "pattern", where)
    elif kind in ("event_property_is", "event_property_contains"):
        _require_string(condition, "key", where)
        if "value" not in condition or not _is_exact_value(condition["value"]):
            raise bad_json(f"{where}.value: must be a string, an integer within ±(2**53-1), a boolean or null")
    elif kind == "room_member_count":
        is_ = condition.get("is")
        if not isinstance(is_, str) or not _MEMBER_COUNT.match(is_):
            raise bad_json(f"{where}.is: must be a decimal integer optionally prefixed by ==, <, >, >= or <=")
    elif kind == "sender_notification_permission":
        _require_string(condition, "key", where)


def parse_new_rule(kind: str, rule_id: str, body: Mapping[str, Any]) -> PushRule:
    """The user rule described by a PUT /pushrules/global/{kind}/{ruleId} body."""
    check_kind(kind)
    check_new_rule_id(kind, rule_id)
    if "actions" not in body:
        raise bad_json("actions: required")
    actions = check_actions(body["actions"])
    conditions = None
    pattern = None
    if kind in CONDITION_KINDS:
        # The spec's schema leaves `conditions` optional, but a missing list would silently make a
        # rule that matches everything; Synapse refuses it too.
        if "conditions" not in body:
            raise bad_json(f"conditions: required for {kind} rules")
        conditions = body["conditions"]
        if not isinstance(conditions, list):
            raise bad_json("conditions: must be an array of conditions")
        for i, condition in enumerate(conditions):
            check_condition(condition, f"conditions[{i}]")
    elif kind == "content":
        pattern = body.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise bad_json("pattern: content rules need a non-empty 'pattern' string")
    return PushRule(kind, rule_id, actions, default=False, enabled=True, conditions=conditions, pattern=pattern)


def parse_enabled(body: Any) -> bool:
    """`{"enabled": bool}`; a bare boolean is accepted as well, as some clients send that."""
    value = body.get("enabled") if isinstance(body, dict) else body
    if not isinstance(value, bool):
        raise bad_json("enabled: must be a boolean")
    return value


def parse_actions(body: Any) -> list[Any]:
    """`{"actions": [...]}`."""
    if not isinstance(body, dict):
        raise bad_json("Content must be a JSON object")
    if "actions" not in body:
        raise bad_json("actions: required")
    return check_actions(body["actions"])


def rule_not_found(kind: str, rule_id: str) -> MatrixError:
    return not_found(f"No push rule {rule_id!r} of kind {kind!r}")
