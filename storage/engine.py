"""Build a migrated, ready-to-use Database from the `database` section of the configuration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storage.database import Database, DatabaseConfigError
from storage.migrations import apply_migrations

# key -> (type, default); a default of None means the key is required.
_COMMON: dict[str, tuple[type, Any]] = {
    "max_retries": (int, 8),
}
_ENGINE_KEYS: dict[str, dict[str, tuple[type, Any]]] = {
    "sqlite": {
        "path": (str, None),
        "readers": (int, 2),
        "busy_timeout_ms": (int, 5000),
        "synchronous": (str, "FULL"),
    },
    "postgres": {
        "dsn": (str, None),
        "pool_min": (int, 1),
        "pool_max": (int, 10),
        "pool_timeout": (float, 30.0),
        # Seconds between table upkeep rounds when the server's autovacuum is off; 0: never.
        "upkeep_interval_s": (float, 15.0),
    },
}
_ENGINE_ALIASES = {
    "sqlite": "sqlite",
    "sqlite3": "sqlite",
    "postgres": "postgres",
    "postgresql": "postgres",
    "psycopg": "postgres",
}


def parse_database_config(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Validate a database config dict; returns the engine name and its keyword arguments."""
    engine_value = config.get("engine", "sqlite")
    engine = _ENGINE_ALIASES.get(str(engine_value).lower())
    if engine is None:
        raise DatabaseConfigError(
            f"database.engine: unknown engine {engine_value!r}; use 'sqlite' or 'postgres'"
        )
    allowed = {**_COMMON, **_ENGINE_KEYS[engine]}
    unknown = sorted(set(config) - set(allowed) - {"engine"})
    if unknown:
        raise DatabaseConfigError(
            f"database.{unknown[0]}: not an option for the {engine} engine (options: {', '.join(sorted(allowed))})"
        )
    options: dict[str, Any] = {}
    for key, (kind, default) in allowed.items():
        if key not in config:
            if default is None:
                raise DatabaseConfigError(f"database.{key}: required for the {engine} engine")
            options[key] = default
            continue
        value = config[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise DatabaseConfigError(f"database.{key}: expected {kind.__name__}, got {value!r}")
        options[key] = value
    return engine, options


async def open_database(config: Mapping[str, Any]) -> Database:
    """Open (but do not migrate) the configured database."""
    engine, options = parse_database_config(config)
    db: Database
    if engine == "sqlite":
        from storage.sqlite import SqliteDatabase

        db = SqliteDatabase(options.pop("path"), **options)
    else:
        # Imported lazily so that SQLite-only deployments never load psycopg.
        from storage.postgres import PostgresDatabase

        db = PostgresDatabase(options.pop("dsn"), **options)
    try:
        await db.open()
    except BaseException:
        await db.close()
        raise
    return db


async def create_database(config: Mapping[str, Any]) -> Database:
    """Open the configured database and bring its schema up to date.

    Raises `SchemaTooNewError` when the database was migrated by a newer release.
    """
    db = await open_database(config)
    try:
        await apply_migrations(db)
    except BaseException:
        await db.close()
        raise
    return db
