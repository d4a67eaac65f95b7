"""Push rule evaluation: compile a user's rules once, then run them against events.

Pure code, no I/O. `compile_rules` turns a user's merged rule list (push_rules.UserPushRules) into
a `CompiledRules`; `CompiledRules.evaluate(view, facts, display_name)` returns the actions of the
first enabled rule whose conditions all match, or None.

Why it is shaped like this: one message in a room of 1,000 members is evaluated 1,000 times, and
most users run the same server-default conditions. Compiled conditions are interned, so users
share the very same condition objects, and an `EventView` remembers each user-independent
condition's result for the event: the second and later users mostly pay for dictionary lookups.
Only `contains_display_name` depends on the user, and it is memoised per display name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from homeserver.jsonutil import decode, encode_kept
from homeserver.push.rules import IGNORED_ACTIONS, LEGACY_MENTION_RULE_IDS, PushRule

MISSING = object()
_WORD = "A-Za-z0-9_"
# A word boundary (client-server API, "Push Rules"): start or end of the value, or any character
# outside [A-Za-z0-9_]. Like Synapse, a boundary also lies between a word character and a
# non-word character, so "@room" matches in "hi@room".
_START_BOUNDARY = f"(?:(?<![{_WORD}])|(?=[^{_WORD}]))"
_END_BOUNDARY = f"(?:(?![{_WORD}])|(?<=[^{_WORD}]))"
_MEMBER_COUNT = re.compile(r"^(==|<=|>=|<|>)?([0-9]+)\Z")
DEFAULT_NOTIFICATION_LEVEL = 50


# --- paths and globs -----------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def split_key(key: str) -> tuple[str, ...]:
    """A dot-separated property path as its property names (appendices, "Dot-separated property paths").

    `\\.` is a literal dot and `\\\\` a literal backslash; any other backslash is kept as-is.
    """
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(key):
        char = key[i]
        if char == "\\" and i + 1 < len(key) and key[i + 1] in ".\\":
            current.append(key[i + 1])
            i += 2
            continue
        if char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return tuple(parts)


def lookup(event: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The value at `path` in the event, or MISSING."""
    value: Any = event
    for name in path:
        if not isinstance(value, Mapping) or name not in value:
            return MISSING
        value = value[name]
    return value


def _glob_body(pattern: str) -> str:
    out = []
    for char in pattern:
        if char == "*":
            out.append(".*?")
        elif char == "?":
            out.append(".")
        else:
            out.append(re.escape(char))
    return "".join(out)


@lru_cache(maxsize=16384)
def glob_regex(pattern: str, word_boundaries: bool) -> re.Pattern[str]:
    """A case-insensitive regex for a glob: whole-value, or any substring between word boundaries."""
    body = _glob_body(pattern)
    if word_boundaries:
        return re.compile(_START_BOUNDARY + body + _END_BOUNDARY, re.IGNORECASE | re.DOTALL)
    return re.compile(r"\A" + body + r"\Z", re.IGNORECASE | re.DOTALL)


def glob_matches(pattern: str, value: str, *, word_boundaries: bool = False) -> bool:
    """Whether a glob (`*`, `?`) matches `value` (see `glob_regex`)."""
    return glob_regex(pattern, word_boundaries).search(value) is not None


def _same_value(a: Any, b: Any) -> bool:
    # Exact JSON equality: `true` is not `1`, and no other casts either.
    return type(a) is type(b) and a == b


def _is_simple(value: Any) -> bool:
    return value is None or isinstance(value, str | int | bool)


# --- what an evaluation looks at -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RoomFacts:
    """The room-level inputs of conditions: member count and the sender's notification power."""

    member_count: int
    sender_power_level: float
    # The `notifications` object of the power levels content (missing keys default to 50).
    notification_levels: Mapping[str, Any] = field(default_factory=dict)

    def may_notify(self, key: str) -> bool:
        level = self.notification_levels.get(key, DEFAULT_NOTIFICATION_LEVEL)
        if isinstance(level, str):
            try:
                level = int(level)
            except ValueError:
                level = DEFAULT_NOTIFICATION_LEVEL
        if not isinstance(level, int) or isinstance(level, bool):
            level = DEFAULT_NOTIFICATION_LEVEL
        return self.sender_power_level >= level


class EventView:
    """One event as conditions see it, with memoised results of user-independent conditions."""

    __slots__ = ("event", "body", "has_mentions", "memo", "name_memo")

    def __init__(self, event: Mapping[str, Any]):
        self.event = event
        content = event.get("content")
        content = content if isinstance(content, Mapping) else {}
        body = content.get("body")
        self.body: str | None = body if isinstance(body, str) else None
        # Intentional mentions: an event that says whom it mentions turns the body-scanning
        # legacy mention rules off.
        self.has_mentions = "m.mentions" in content
        self.memo: dict[Condition, bool] = {}
        self.name_memo: dict[str, bool] = {}


# A compiled condition: (view, facts) -> bool. Interned by its JSON, so identical conditions of
# different users are the same object and share `EventView.memo` entries.
Condition = Callable[[EventView, RoomFacts], bool]


def _never(view: EventView, facts: RoomFacts) -> bool:
    return False


def _event_match(key: str, pattern: str) -> Condition:
    path = split_key(key)
    regex = glob_regex(pattern, key == "content.body")

    def condition(view: EventView, facts: RoomFacts) -> bool:
        value = lookup(view.event, path)
        return isinstance(value, str) and regex.search(value) is not None

    return condition


def _property_is(key: str, expected: Any) -> Condition:
    path = split_key(key)

    def condition(view: EventView, facts: RoomFacts) -> bool:
        value = lookup(view.event, path)
        return value is not MISSING and _is_simple(value) and _same_value(value, expected)

    return condition


def _property_contains(key: str, expected: Any) -> Condition:
    path = split_key(key)

    def condition(view: EventView, facts: RoomFacts) -> bool:
        value = lookup(view.event, path)
        return isinstance(value, list) and any(_is_simple(v) and _same_value(v, expected) for v in value)

    return condition


_COMPARATORS: dict[str, Callable[[int, int], bool]] = {
    "==": lambda a, b: a == b, "<": lambda a, b: a < b, ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
}


def _member_count(spec: Any) -> Condition:
    match = _MEMBER_COUNT.match(spec) if isinstance(spec, str) else None
    if match is None:
        return _never
    compare = _COMPARATORS[match.group(1) or "=="]
    number = int(match.group(2))

    def condition(view: EventView, facts: RoomFacts) -> bool:
        return compare(facts.member_count, number)

    return condition


def _notification_permission(key: Any) -> Condition:
    if not isinstance(key, str):
        return _never

    def condition(view: EventView, facts: RoomFacts) -> bool:
        return facts.may_notify(key)

    return condition


# Marks the one user-dependent condition; evaluated with the user's display name.
def CONTAINS_DISPLAY_NAME(view: EventView, facts: RoomFacts) -> bool:  # noqa: N802
    raise AssertionError("evaluated through CompiledRules.evaluate")


def _build_condition(condition: Mapping[str, Any]) -> Condition:
    kind = condition.get("kind")
    if kind == "event_match":
        key, pattern = condition.get("key"), condition.get("pattern")
        if isinstance(key, str) and isinstance(pattern, str):
            return _event_match(key, pattern)
    elif kind == "event_property_is":
        if isinstance(condition.get("key"), str) and "value" in condition and _is_simple(condition["value"]):
            return _property_is(condition["key"], condition["value"])
    elif kind == "event_property_contains":
        if isinstance(condition.get("key"), str) and "value" in condition and _is_simple(condition["value"]):
            return _property_contains(condition["key"], condition["value"])
    elif kind == "contains_display_name":
        return CONTAINS_DISPLAY_NAME
    elif kind == "room_member_count":
        return _member_count(condition.get("is"))
    elif kind == "sender_notification_permission":
        return _notification_permission(condition.get("key"))
    # Unknown kinds and malformed conditions never match (spec: "unrecognised conditions MUST NOT
    # match any events").
    return _never


@lru_cache(maxsize=65536)
def _interned_condition(text: bytes) -> Condition:
    return _build_condition(decode(text))


def compile_condition(condition: Mapping[str, Any]) -> Condition:
    """The compiled, interned form of one condition."""
    if not isinstance(condition, Mapping):
        return _never
    return _interned_condition(encode_kept(dict(sorted(condition.items()))))


# --- rules ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Outcome:
    """What the first matching rule decided."""

    rule_id: str
    kind: str
    actions: list[Any]
    notify: bool
    highlight: bool
    tweaks: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    conditions: tuple[Condition, ...]
    outcome: Outcome
    # A default body-scanning mention rule, off for events that carry `m.mentions`.
    legacy_mention: bool


def outcome_of(rule_id: str, kind: str, actions: Iterable[Any]) -> Outcome:
    """The meaning of a rule's actions: whether it notifies, highlights, and its tweaks."""
    kept = [a for a in actions if not (isinstance(a, str) and a in IGNORED_ACTIONS)]
    tweaks: dict[str, Any] = {}
    for action in kept:
        if isinstance(action, Mapping) and isinstance(action.get("set_tweak"), str):
            # A highlight tweak without a value means true (spec, "Tweaks").
            tweaks[action["set_tweak"]] = action.get("value", True if action["set_tweak"] == "highlight" else None)
    notify = "notify" in kept
    highlight = notify and tweaks.get("highlight") is True
    return Outcome(rule_id, kind, kept, notify, highlight, tweaks)


@dataclass(frozen=True, slots=True)
class CompiledRules:
    rules: tuple[CompiledRule, ...]

    def evaluate(self, view: EventView, facts: RoomFacts, display_name: str | None) -> Outcome | None:
        """The outcome of the first enabled rule whose conditions all hold, or None."""
        memo = view.memo
        for rule in self.rules:
            if rule.legacy_mention and view.has_mentions:
                continue
            for condition in rule.conditions:
                if condition is CONTAINS_DISPLAY_NAME:
                    if not _contains_display_name(view, display_name):
                        break
                    continue
                result = memo.get(condition)
                if result is None:
                    result = memo[condition] = condition(view, facts)
                if not result:
                    break
            else:
                return rule.outcome
        return None


def _contains_display_name(view: EventView, display_name: str | None) -> bool:
    if not display_name or view.body is None:
        return False
    result = view.name_memo.get(display_name)
    if result is None:
        # The name is matched literally, not as a glob.
        regex = _display_name_regex(display_name)
        result = view.name_memo[display_name] = regex.search(view.body) is not None
    return result


@lru_cache(maxsize=16384)
def _display_name_regex(display_name: str) -> re.Pattern[str]:
    return re.compile(_START_BOUNDARY + re.escape(display_name) + _END_BOUNDARY, re.IGNORECASE)


def compile_rules(rules: Iterable[PushRule]) -> CompiledRules:
    """Compile a merged rule list (evaluation order); disabled rules are dropped."""
    compiled = []
    for rule in rules:
        if not rule.enabled:
            continue
        conditions = tuple(compile_condition(c) for c in rule.match_conditions())
        if _never in conditions:
            continue
        compiled.append(CompiledRule(
            conditions=conditions,
            outcome=outcome_of(rule.rule_id, rule.kind, rule.actions),
            legacy_mention=rule.default and rule.rule_id in LEGACY_MENTION_RULE_IDS,
        ))
    return CompiledRules(tuple(compiled))
