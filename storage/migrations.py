"""Schema migrations: numbered SQL files in `storage/schema/`, applied in one transaction at start-up.

File names are `NNN_description.sql`, used by both engines, or a pair
`NNN_description.sqlite.sql` + `NNN_description.postgres.sql` where the dialects differ. Schema
files may use `{{TOKEN}}` markers (see `Dialect.schema_tokens`) for the small differences, such
as auto-increment ids. Applied versions are recorded in `schema_version`, one row per migration.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from storage.database import Database, DatabaseError, Transaction
from storage.sql import Dialect

SCHEMA_DIR = Path(__file__).parent / "schema"

_FILE_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>[a-z0-9_]+?)(?:\.(?P<engine>sqlite|postgres))?\.sql\Z")

# Arbitrary constant that identifies "this homeserver's migrations" among advisory locks.
_ADVISORY_LOCK_KEY = 0x6D_6174_7269_78  # "matrix"


class MigrationError(DatabaseError):
    """The schema files or the recorded schema history are inconsistent."""


class SchemaTooNewError(MigrationError):
    """The database was migrated by a newer homeserver than this one."""

    def __init__(self, database_version: int, code_version: int) -> None:
        super().__init__(
            f"The database schema is at version {database_version}, but this homeserver only knows "
            f"versions up to {code_version}. It was upgraded by a newer release: run that release, "
            f"or restore a backup taken before the upgrade. Refusing to start."
        )
        self.database_version = database_version
        self.code_version = code_version


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: Dialect, directory: Path = SCHEMA_DIR) -> list[Migration]:
    """The migrations for one engine, in version order, with schema tokens already substituted."""
    by_version: dict[int, dict[str | None, Path]] = {}
    names: dict[int, str] = {}
    for path in sorted(directory.iterdir()):
        if not path.name.endswith(".sql"):
            continue
        m = _FILE_NAME.match(path.name)
        if not m:
            raise MigrationError(
                f"schema file {path.name} is not named NNN_description[.sqlite|.postgres].sql"
            )
        version, name = int(m["version"]), m["name"]
        if names.setdefault(version, name) != name:
            raise MigrationError(f"schema version {version} has two names: {names[version]} and {name}")
        variants = by_version.setdefault(version, {})
        if m["engine"] in variants:
            raise MigrationError(f"schema file {path.name} duplicates version {version}")
        variants[m["engine"]] = path

    migrations = []
    for version in sorted(by_version):
        variants = by_version[version]
        if None in variants and len(variants) > 1:
            raise MigrationError(f"schema version {version} has both a shared file and engine-specific files")
        path = variants.get(dialect.name) or variants.get(None)
        if path is None:
            raise MigrationError(f"schema version {version} has no file for {dialect.name}")
        sql = dialect.render_schema(path.read_text(encoding="utf-8"))
        migrations.append(Migration(version, names[version], sql))
    return migrations


async def current_schema_version(db: Database) -> int:
    """The highest applied migration, 0 for an empty database."""

    async def read(txn: Transaction) -> int:
        if not await _schema_table_exists(txn):
            return 0
        return await txn.fetch_value("SELECT COALESCE(MAX(version), 0) FROM schema_version") or 0

    return await db.run_interaction("current_schema_version", read, write=False)


async def apply_migrations(db: Database, migrations: list[Migration] | None = None) -> list[int]:
    """Bring the schema up to date in one transaction; returns the versions applied now."""
    if migrations is None:
        migrations = load_migrations(db.dialect)
    latest = migrations[-1].version if migrations else 0
    # READ COMMITTED, not the default REPEATABLE READ: a repeatable-read snapshot would be taken
    # by the advisory-lock statement itself, before the lock is granted, and so would miss the
    # versions recorded by the process that held the lock.
    return await db.run_interaction(
        "apply_migrations", _migrate, migrations, latest, isolation="read_committed"
    )


async def _migrate(txn: Transaction, migrations: list[Migration], latest: int) -> list[int]:
    if txn.dialect.is_postgres:
        # Held until commit: a second process starting at the same time waits here, then sees
        # the versions the first one recorded and applies nothing.
        await txn.execute(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK_KEY})")
    await txn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_ts BIGINT NOT NULL)"
    )
    done = {row[0] for row in await txn.fetch_all("SELECT version FROM schema_version")}
    current = max(done, default=0)
    if current > latest:
        raise SchemaTooNewError(current, latest)
    applied = []
    for migration in migrations:
        # By set, not by maximum: a lower-numbered file that arrived later (parallel work) still runs.
        if migration.version in done:
            continue
        await txn.execute_script(migration.sql)
        await txn.execute(
            "INSERT INTO schema_version (version, name, applied_ts) VALUES (?, ?, ?)",
            (migration.version, migration.name, int(time.time() * 1000)),
        )
        applied.append(migration.version)
    return applied


async def _schema_table_exists(txn: Transaction) -> bool:
    if txn.dialect.is_postgres:
        sql = (
            "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?"
        )
    else:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return await txn.fetch_one(sql, ("schema_version",)) is not None
