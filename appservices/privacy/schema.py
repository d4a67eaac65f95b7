"""The tables of the privacy service's database, for SQLite and PostgreSQL.

`audit_log` is append-only: a trigger refuses UPDATE and DELETE on both engines.
"""

from __future__ import annotations

TABLES = [
    # Privacy requests (export, erase, consent, signout ...) with their timestamps and outcome.
    """CREATE TABLE IF NOT EXISTS requests (
        request_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        created_ts BIGINT NOT NULL,
        updated_ts BIGINT NOT NULL,
        completed_ts BIGINT,
        code TEXT,
        detail TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX IF NOT EXISTS requests_open ON requests (status, created_ts)",
    "CREATE INDEX IF NOT EXISTS requests_user ON requests (user_id, created_ts)",
    """CREATE TABLE IF NOT EXISTS consents (
        user_id TEXT NOT NULL,
        version TEXT NOT NULL,
        ts BIGINT NOT NULL,
        request_id TEXT,
        PRIMARY KEY (user_id, version)
    )""",
    """CREATE TABLE IF NOT EXISTS audit_log (
        seq {serial} PRIMARY KEY,
        ts BIGINT NOT NULL,
        actor TEXT NOT NULL,
        user_id TEXT,
        action TEXT NOT NULL,
        request_id TEXT,
        detail TEXT NOT NULL DEFAULT '{}'
    )""",
    # The DM room of each member with the bot.
    """CREATE TABLE IF NOT EXISTS dm_rooms (
        user_id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        updated_ts BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS preferences (
        user_id TEXT PRIMARY KEY,
        language TEXT
    )""",
    # Transactions from the homeserver: stored before they are acknowledged, processed after.
    """CREATE TABLE IF NOT EXISTS inbox (
        txn_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        event TEXT NOT NULL,
        processed BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (txn_id, idx)
    )""",
    "CREATE TABLE IF NOT EXISTS transactions (txn_id TEXT PRIMARY KEY, received_ts BIGINT NOT NULL)",
    # Exports uploaded as media, deleted from the homeserver when they expire.
    """CREATE TABLE IF NOT EXISTS export_files (
        mxc TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        request_id TEXT NOT NULL,
        expires_ts BIGINT NOT NULL,
        deleted_ts BIGINT
    )""",
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # Inactivity warnings sent, so the erasure follows a warning by at least its notice period.
    """CREATE TABLE IF NOT EXISTS inactivity_warnings (
        user_id TEXT PRIMARY KEY,
        warned_ts BIGINT NOT NULL,
        last_seen_ts BIGINT
    )""",
    """CREATE TABLE IF NOT EXISTS retention_runs (
        run_id TEXT PRIMARY KEY,
        started_ts BIGINT NOT NULL,
        finished_ts BIGINT,
        trigger TEXT NOT NULL,
        counts TEXT NOT NULL DEFAULT '{}'
    )""",
]

SQLITE_GUARDS = [
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
]

POSTGRES_GUARDS = [
    """CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
    """CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
       FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
]


def schema_statements(engine: str) -> list[str]:
    serial = "INTEGER" if engine == "sqlite" else "BIGSERIAL"
    tables = [t.replace("{serial}", serial) for t in TABLES]
    return tables + (SQLITE_GUARDS if engine == "sqlite" else POSTGRES_GUARDS)
