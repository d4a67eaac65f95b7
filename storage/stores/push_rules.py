"""Per-user push rules: the user's own rules, changes to server-default rules, and their versions.

Every write allocates a `push_rules` stream position first: that bumps the stream's row, which
serialises concurrent writers (storage/streams.py), so the read-modify-write of rule priorities
never loses a change. The position becomes the user's rule-set version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction
from storage.streams import allocate_stream_positions, get_stream_position

PUSH_RULES = "push_rules"


@dataclass(frozen=True, slots=True)
class StoredPushRule:
    """One of the user's own rules as stored."""

    kind: str
    rule_id: str
    actions: list[Any]
    enabled: bool
    conditions: list[dict[str, Any]] | None
    pattern: str | None


@dataclass(frozen=True, slots=True)
class StoredDefaultRuleChange:
    """The user's change to a server-default rule; None leaves that attribute at its default."""

    enabled: bool | None
    actions: list[Any] | None


class RuleToStore(Protocol):
    kind: str
    rule_id: str
    actions: list[Any]
    conditions: list[dict[str, Any]] | None
    pattern: str | None


@dataclass(slots=True)
class StoredPushRules:
    """Everything stored for one user; `version` is 0 until the user first changes a rule."""

    version: int
    user_rules: list[StoredPushRule] = field(default_factory=list)  # most important first within a kind
    default_changes: dict[tuple[str, str], StoredDefaultRuleChange] = field(default_factory=dict)


class PushRuleStore:
    def __init__(self, db: Database):
        self.db = db

    # --- reads ---------------------------------------------------------------------
    async def get_rules(self, user_id: str) -> StoredPushRules:
        return await self.db.run_interaction("get_push_rules", _read_rules, user_id, write=False)

    async def get_version(self, user_id: str) -> int:
        """The stream position of the user's latest rule change (0: never changed)."""
        version = await self.db.fetch_value(
            "get_push_rules_version", "SELECT stream_id FROM push_rules_versions WHERE user_id = ?", (user_id,)
        )
        return 0 if version is None else int(version)

    async def get_current_position(self) -> int:
        return await self.db.run_interaction("push_rules_position", get_stream_position, PUSH_RULES, write=False)

    # --- writes --------------------------------------------------------------------
    async def put_rule(self, user_id: str, rule: RuleToStore, place: Callable[[list[str]], list[str]]) -> int:
        """Create or replace a user rule; `place(current_order)` gives the kind's new order.

        Exceptions from `place` (e.g. an unknown `before` rule) roll the write back and propagate.
        Returns the new version.
        """

        async def txn_fn(txn: Transaction) -> int:
            (position,) = await allocate_stream_positions(txn, PUSH_RULES)
            rows = await txn.fetch_all(
                "SELECT rule_id, priority FROM push_rules WHERE user_id = ? AND kind = ? ORDER BY priority DESC",
                (user_id, rule.kind),
            )
            current = {rule_id: priority for rule_id, priority in rows}
            order = place([rule_id for rule_id, _ in rows])
            priorities = {rule_id: len(order) - index for index, rule_id in enumerate(order)}
            values = {
                "priority": priorities[rule.rule_id],
                "conditions": None if rule.conditions is None else encode_str(rule.conditions),
                "pattern": rule.pattern,
                "actions": encode_str(rule.actions),
            }
            # Re-putting a rule keeps whether it is enabled; a new rule starts enabled (spec).
            await txn.upsert("push_rules", {"user_id": user_id, "kind": rule.kind, "rule_id": rule.rule_id},
                             values, insertion_values={"enabled": True})
            moved = [(priority, user_id, rule.kind, rule_id) for rule_id, priority in priorities.items()
                     if rule_id != rule.rule_id and current.get(rule_id) != priority]
            await txn.executemany(
                "UPDATE push_rules SET priority = ? WHERE user_id = ? AND kind = ? AND rule_id = ?", moved
            )
            await _set_version(txn, user_id, position)
            return position

        return await self.db.run_interaction("put_push_rule", txn_fn, isolation="read_committed")

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> int | None:
        """Delete a user rule; the new version, or None when there was no such rule."""

        async def txn_fn(txn: Transaction) -> int:
            (position,) = await allocate_stream_positions(txn, PUSH_RULES)
            if not await txn.delete("push_rules", {"user_id": user_id, "kind": kind, "rule_id": rule_id}):
                raise _NoChange
            await _set_version(txn, user_id, position)
            return position

        return await self._run_change("delete_push_rule", txn_fn)

    async def set_user_rule_attribute(self, user_id: str, kind: str, rule_id: str, *,
                                      enabled: bool | None = None, actions: list[Any] | None = None) -> int | None:
        """Change `enabled` or `actions` of a user rule; None when there is no such rule."""
        updates = _attribute_values(enabled, actions)

        async def txn_fn(txn: Transaction) -> int:
            (position,) = await allocate_stream_positions(txn, PUSH_RULES)
            if not await txn.update("push_rules", {"user_id": user_id, "kind": kind, "rule_id": rule_id}, updates):
                raise _NoChange
            await _set_version(txn, user_id, position)
            return position

        return await self._run_change("set_push_rule_attribute", txn_fn)

    async def set_default_rule_attribute(self, user_id: str, kind: str, rule_id: str, *,
                                         enabled: bool | None = None, actions: list[Any] | None = None) -> int:
        """Record the user's `enabled` or `actions` for a server-default rule; returns the new version."""
        updates = _attribute_values(enabled, actions)

        async def txn_fn(txn: Transaction) -> int:
            (position,) = await allocate_stream_positions(txn, PUSH_RULES)
            await txn.upsert("push_rule_default_changes", {"user_id": user_id, "kind": kind, "rule_id": rule_id},
                             updates)
            await _set_version(txn, user_id, position)
            return position

        return await self.db.run_interaction("set_default_push_rule_attribute", txn_fn,
                                             isolation="read_committed")

    async def _run_change(self, name: str, txn_fn: Callable[[Transaction], Any]) -> int | None:
        try:
            return await self.db.run_interaction(name, txn_fn, isolation="read_committed")
        except _NoChange:
            return None


class _NoChange(Exception):
    """Raised inside a transaction to roll back its stream allocation when nothing matched."""


def _attribute_values(enabled: bool | None, actions: list[Any] | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if enabled is not None:
        values["enabled"] = enabled
    if actions is not None:
        values["actions"] = encode_str(actions)
    if not values:
        raise ValueError("nothing to change: give enabled or actions")
    return values


async def _set_version(txn: Transaction, user_id: str, position: int) -> None:
    await txn.upsert("push_rules_versions", {"user_id": user_id}, {"stream_id": position})


async def _read_rules(txn: Transaction, user_id: str) -> StoredPushRules:
    version = await txn.fetch_value("SELECT stream_id FROM push_rules_versions WHERE user_id = ?", (user_id,))
    stored = StoredPushRules(version=0 if version is None else int(version))
    if version is None:
        return stored  # never changed: nothing else can be stored either
    for kind, rule_id, conditions, pattern, actions, enabled in await txn.fetch_all(
        "SELECT kind, rule_id, conditions, pattern, actions, enabled FROM push_rules"
        " WHERE user_id = ? ORDER BY kind, priority DESC",
        (user_id,),
    ):
        stored.user_rules.append(StoredPushRule(
            kind, rule_id, decode(actions), enabled=bool(enabled),
            conditions=None if conditions is None else decode(conditions), pattern=pattern,
        ))
    for kind, rule_id, enabled, actions in await txn.fetch_all(
        "SELECT kind, rule_id, enabled, actions FROM push_rule_default_changes WHERE user_id = ?", (user_id,)
    ):
        stored.default_changes[(kind, rule_id)] = StoredDefaultRuleChange(
            enabled=None if enabled is None else bool(enabled),
            actions=None if actions is None else decode(actions),
        )
    return stored


async def delete_user_push_rules_txn(txn: Transaction, user_id: str) -> None:
    """The user's own rules and their changes to the server-default rules (a deactivation)."""
    await txn.execute("DELETE FROM push_rules WHERE user_id = ?", (user_id,))
    await txn.execute("DELETE FROM push_rule_default_changes WHERE user_id = ?", (user_id,))
