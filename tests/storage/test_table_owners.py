"""One owner per table: only a table's owning module in storage/stores/ writes it.

The rule and the readers allowed to join an owned table are in docs/architecture.md ("Table
owners"). This test reads the Python source of every store module (no database) and finds the
writes it can see:

- SQL text in string literals (f-strings included, their placeholders read as `{}`):
  `INSERT INTO t`, `UPDATE t`, `DELETE FROM t`;
- the table-driven helpers (`simple_insert("t", ...)`, `txn.upsert("t", ...)`, ...) called with
  the table name as a literal;
- a literal table name listed in a tuple or list in a module that builds writes from a table
  name (`f"DELETE FROM {table}"`), as the purge and erasure loops did before each table's delete
  moved to its owner.

It does not follow a table name through a variable or a constant defined elsewhere; reviews catch
those. Reads are not checked.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

STORES = Path(__file__).resolve().parents[2] / "storage" / "stores"

# table -> the module (file name in storage/stores/) that alone writes it.
OWNERS = {
    "sliding_sync_connection_positions": "sliding_sync.py",
    "sliding_sync_connection_rooms": "sliding_sync.py",
    "current_state_events": "room_state.py",
    "event_to_state_groups": "events.py",
    "event_txn_ids": "events.py",
    "receipts": "receipts.py",
    "event_push_actions": "notifications.py",
    "event_push_counts": "notifications.py",
    "filters": "filters.py",
    "ui_auth_sessions": "uia_sessions.py",
    "ui_auth_session_credentials": "uia_sessions.py",
    "access_tokens": "access_tokens.py",
    "refresh_tokens": "refresh_tokens.py",
    "login_tokens": "login_tokens.py",
    "openid_tokens": "openid_tokens.py",
    "devices": "devices.py",
    "user_ips": "client_ips.py",
    "registration_tokens": "registration_tokens.py",
    # The event DAG and what the persister derives from it.
    "rooms": "events.py",
    "events": "events.py",
    "event_json": "events.py",
    "event_edges": "events.py",
    "event_auth": "events.py",
    "event_forward_extremities": "events.py",
    "event_backward_extremities": "events.py",
    "redactions": "events.py",
    "room_memberships": "events.py",
    "room_forgotten": "events.py",
    "state_groups": "events.py",
    "state_group_edges": "events.py",
    "state_groups_state": "events.py",
    "event_relations": "relations.py",
    "event_search": "search.py",
    "content_reports": "reports.py",
    "room_aliases": "aliases.py",
    "device_list_membership_changes": "e2ee.py",
    "server_notice_rooms": "admin.py",
    # A user's own data, emptied by deactivation and erasure.
    "profiles": "profiles.py",
    "profile_fields": "profiles.py",
    "presence_state": "presence.py",
    "account_data": "account_data.py",
    "room_account_data": "account_data.py",
    "push_rules": "push_rules.py",
    "push_rule_default_changes": "push_rules.py",
    "e2e_room_keys": "key_backup.py",
    "e2e_room_keys_versions": "key_backup.py",
    "users": "users.py",
    # Durable outbound delivery: one queue for every kind; federation's store goes through it.
    "outbound_queue": "outbound.py",
    "outbound_destinations": "outbound.py",
    "to_device_txns": "to_device.py",
    "to_device_inbox": "to_device.py",
}

_WRITE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)
_DYNAMIC_WRITE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\{", re.IGNORECASE)
_HELPERS = {"insert", "insert_many", "upsert", "update", "delete",
            "simple_insert", "simple_upsert", "simple_update", "simple_delete"}


def _text(node: ast.AST) -> str | None:
    """The text of a string literal; an f-string's placeholders become `{}`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def writes_in(source: str) -> set[str]:
    """The tables a module's source visibly writes."""
    tree = ast.parse(source)
    texts = [t for node in ast.walk(tree) if (t := _text(node)) is not None]
    written = {m.group(1).lower() for t in texts for m in _WRITE.finditer(t)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _HELPERS
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            written.add(node.args[0].value)
    if any(_DYNAMIC_WRITE.search(t) for t in texts):
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List)):
                written |= {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return written


def test_every_owner_module_exists_and_writes_its_tables():
    for table, owner in OWNERS.items():
        path = STORES / owner
        assert path.is_file(), f"{table}: owner {owner} is missing"
        assert table in writes_in(path.read_text()), f"{owner} is named owner of {table} but never writes it"


def test_no_store_writes_a_table_another_module_owns():
    trespasses = []
    for path in sorted(STORES.glob("*.py")):
        for table in sorted(writes_in(path.read_text()) & OWNERS.keys()):
            if OWNERS[table] != path.name:
                trespasses.append(f"{path.name} writes {table} (owner: {OWNERS[table]})")
    assert trespasses == []


def schema_tables() -> set[str]:
    create = re.compile(r"CREATE\s+(?:VIRTUAL\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)
    return {m.group(1).lower() for path in (STORES.parent / "schema").glob("*.sql")
            for m in create.finditer(path.read_text())}


def test_every_table_the_stores_write_has_one_writer():
    """Beyond the declared map: no table of the schema is written by two store modules."""
    tables = schema_tables()
    writers: dict[str, set[str]] = {}
    for path in sorted(STORES.glob("*.py")):
        for table in writes_in(path.read_text()) & tables:
            writers.setdefault(table, set()).add(path.name)
    assert {t: sorted(w) for t, w in writers.items() if len(w) > 1} == {}


def test_the_scan_sees_each_kind_of_write():
    source = '''
async def f(txn, db, table):
    await txn.execute("DELETE FROM receipts WHERE user_id = ?", ())
    await txn.execute("INSERT INTO filters (user_id) VALUES (?)"
                      " ON CONFLICT DO NOTHING", ())
    await txn.execute(f"UPDATE event_push_counts SET n = 0 WHERE {table}", ())
    await db.simple_upsert("event_txn_ids", {}, {})
    for name in ("current_state_events", "other"):
        await txn.execute(f"DELETE FROM {name} WHERE room_id = ?", ())
    await txn.execute("SELECT * FROM event_to_state_groups", ())
'''
    assert writes_in(source) == {"receipts", "filters", "event_push_counts", "event_txn_ids",
                                 "current_state_events", "other"}
