"""Reading and changing a user's push rules; the `m.push_rules` account data /sync delivers.

Every change moves the `push_rules` stream and the user's rule-set version. Evaluation caches a
compiled form per user: either compare `UserPushRules.version`, or consume the
`PushRulesChanged` updates published on the stream bus to drop the user's entry.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from homeserver.errors import invalid_param, not_found
from homeserver.push.rules import (
    PushRule,
    check_kind,
    is_default_rule,
    merge_rules,
    parse_actions,
    parse_enabled,
    parse_new_rule,
    place_rule,
    rule_not_found,
    ruleset_json,
)
from homeserver.streams.bus import StreamBus
from homeserver.streams.updates import PushRulesChanged, RoomUpgraded
from storage.stores.push_rules import PushRuleStore, StoredPushRule

logger = logging.getLogger(__name__)

PUSH_RULES_ACCOUNT_DATA_TYPE = "m.push_rules"
# Merged rule lists kept in memory; a busy room's members are looked up on every message.
DEFAULT_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class UserPushRules:
    """A user's complete rule list in evaluation order, and the version it was read at."""

    user_id: str
    version: int
    rules: tuple[PushRule, ...]

    def to_json(self) -> dict[str, Any]:
        return ruleset_json(self.rules)

    def find(self, kind: str, rule_id: str) -> PushRule | None:
        for rule in self.rules:
            if rule.kind == kind and rule.rule_id == rule_id:
                return rule
        return None


class PushRulesService:
    def __init__(self, store: PushRuleStore, bus: StreamBus, cache_size: int = DEFAULT_CACHE_SIZE):
        self._store = store
        self._bus = bus
        self._cache: OrderedDict[str, UserPushRules] = OrderedDict()
        self._cache_size = cache_size
        self._cache_hits = self._cache_misses = 0
        # Bumped on every change: a read that overlapped a change must not be cached, even when
        # the stored version it then checks was read before that change committed.
        self._generation = 0

    # --- reading ----------------------------------------------------------------------
    async def get_user_rules(self, user_id: str) -> UserPushRules:
        """The user's merged rules (defaults, their changes and their own rules) in evaluation order."""
        cached = self._cache.get(user_id)
        if cached is not None:
            self._cache.move_to_end(user_id)
            self._cache_hits += 1
            return cached
        self._cache_misses += 1
        generation = self._generation
        stored = await self._store.get_rules(user_id)
        rules = UserPushRules(user_id, stored.version,
                              tuple(merge_rules(user_id, [_rule_of(r) for r in stored.user_rules],
                                                stored.default_changes)))
        # A change committed while we read would have invalidated an entry we then overwrite with
        # stale data; only cache what is at least as new as the version now stored.
        if stored.version >= await self._store.get_version(user_id) and generation == self._generation:
            self._cache[user_id] = rules
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return rules

    def cache_stats(self) -> dict[str, tuple[int, int, int]]:
        """(entries, hits, misses) of the per-user rules cache, for metrics."""
        return {"push_rules": (len(self._cache), self._cache_hits, self._cache_misses)}

    async def get_ruleset(self, user_id: str) -> dict[str, Any]:
        """The body of GET /pushrules/: `{"global": {kind: [rule, ...]}}`."""
        return (await self.get_user_rules(user_id)).to_json()

    async def account_data_content(self, user_id: str) -> dict[str, Any]:
        """The content of the user's `m.push_rules` account data event (the same as GET /pushrules/)."""
        return await self.get_ruleset(user_id)

    async def get_kind(self, user_id: str, kind: str) -> list[dict[str, Any]]:
        """The user's rules of one kind, most important first (GET /pushrules/global/{kind}/)."""
        check_kind(kind)
        return (await self.get_ruleset(user_id))["global"][kind]

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> dict[str, Any]:
        return (await self._find(user_id, kind, rule_id)).to_json()

    async def get_enabled(self, user_id: str, kind: str, rule_id: str) -> bool:
        return (await self._find(user_id, kind, rule_id)).enabled

    async def get_actions(self, user_id: str, kind: str, rule_id: str) -> list[Any]:
        return (await self._find(user_id, kind, rule_id)).actions

    async def version(self, user_id: str) -> int:
        """The `push_rules` stream position of the user's latest change (0: never changed)."""
        return await self._store.get_version(user_id)

    async def current_position(self) -> int:
        """The latest position of the `push_rules` stream, for sync tokens."""
        return await self._store.get_current_position()

    # --- changing ---------------------------------------------------------------------
    async def put_rule(self, user_id: str, kind: str, rule_id: str, body: dict[str, Any], *,
                       before: str | None = None, after: str | None = None) -> None:
        """Create or replace one of the user's own rules, optionally placed relative to another."""
        rule = parse_new_rule(kind, rule_id, body)

        def place(order: list[str]) -> list[str]:
            try:
                return place_rule(order, rule_id, before=before, after=after)
            except ValueError as e:
                raise invalid_param(str(e)) from None

        await self._changed(user_id, await self._store.put_rule(user_id, rule, place))

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        """Delete one of the user's own rules; server-default rules can only be disabled."""
        check_kind(kind)
        if is_default_rule(kind, rule_id):
            # 404 like Synapse: there is no user-defined rule of that name to delete.
            raise not_found(f"{rule_id!r} is a server-default rule: it cannot be deleted, only disabled")
        position = await self._store.delete_rule(user_id, kind, rule_id)
        if position is None:
            raise rule_not_found(kind, rule_id)
        await self._changed(user_id, position)

    async def set_enabled(self, user_id: str, kind: str, rule_id: str, body: Any) -> None:
        """Enable or disable a rule, the user's own or a server default."""
        await self._set_attribute(user_id, kind, rule_id, enabled=parse_enabled(body))

    async def set_actions(self, user_id: str, kind: str, rule_id: str, body: Any) -> None:
        """Replace the actions of a rule, the user's own or a server default."""
        await self._set_attribute(user_id, kind, rule_id, actions=parse_actions(body))

    async def on_room_upgraded(self, update: RoomUpgraded) -> None:
        """Copy each user's rules about the old room to the new one, as Synapse does on upgrade:
        the room rule named by the old room ID, and override/underride rules with a condition
        on it (the rule ID and condition get the new room ID)."""
        old_room_id, new_room_id = update.old_room_id, update.new_room_id
        for user_id in update.local_user_ids:
            rules = await self.get_user_rules(user_id)
            existing = {(rule.kind, rule.rule_id) for rule in rules.rules}
            for rule in rules.rules:
                if rule.default or old_room_id not in rule.rule_id and not _mentions_room(rule, old_room_id):
                    continue
                copy = _rule_for_room(rule, old_room_id, new_room_id)
                if copy is None or (copy.kind, copy.rule_id) in existing:
                    continue
                position = await self._store.put_rule(
                    user_id, copy, lambda order, new=copy.rule_id, old=rule.rule_id: place_rule(order, new, before=old))
                if not rule.enabled:
                    position = await self._store.set_user_rule_attribute(user_id, copy.kind, copy.rule_id,
                                                                         enabled=False) or position
                await self._changed(user_id, position)

    async def _set_attribute(self, user_id: str, kind: str, rule_id: str, *, enabled: bool | None = None,
                             actions: list[Any] | None = None) -> None:
        check_kind(kind)
        if is_default_rule(kind, rule_id):
            position: int | None = await self._store.set_default_rule_attribute(
                user_id, kind, rule_id, enabled=enabled, actions=actions)
        else:
            position = await self._store.set_user_rule_attribute(
                user_id, kind, rule_id, enabled=enabled, actions=actions)
        if position is None:
            raise rule_not_found(kind, rule_id)
        await self._changed(user_id, position)

    async def _find(self, user_id: str, kind: str, rule_id: str) -> PushRule:
        check_kind(kind)
        rule = (await self.get_user_rules(user_id)).find(kind, rule_id)
        if rule is None:
            raise rule_not_found(kind, rule_id)
        return rule

    async def _changed(self, user_id: str, position: int) -> None:
        self._generation += 1
        self._cache.pop(user_id, None)
        await self._bus.publish(PushRulesChanged(user_id, position))


def _rule_of(stored: StoredPushRule) -> PushRule:
    return PushRule(stored.kind, stored.rule_id, stored.actions, default=False, enabled=stored.enabled,
                    conditions=stored.conditions, pattern=stored.pattern)


def _mentions_room(rule: PushRule, room_id: str) -> bool:
    return any(isinstance(c, dict) and c.get("kind") == "event_match" and c.get("key") == "room_id"
               and c.get("pattern") == room_id for c in rule.conditions or [])


def _rule_for_room(rule: PushRule, old_room_id: str, new_room_id: str) -> PushRule | None:
    """A copy of `rule` about the new room instead of the old one; None when it is not about it."""
    if rule.kind == "room":
        if rule.rule_id != old_room_id:
            return None
        return dataclasses.replace(rule, rule_id=new_room_id)
    if rule.kind not in ("override", "underride") or not _mentions_room(rule, old_room_id):
        return None
    conditions = [{**c, "pattern": new_room_id}
                  if isinstance(c, dict) and c.get("kind") == "event_match" and c.get("key") == "room_id"
                  and c.get("pattern") == old_room_id else c for c in rule.conditions or []]
    return dataclasses.replace(rule, rule_id=rule.rule_id.replace(old_room_id, new_room_id), conditions=conditions)
