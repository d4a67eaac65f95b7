"""Database engines (SQLite, PostgreSQL), schema migrations, and the stores built on them."""

from storage.database import (
    Database,
    DatabaseConfigError,
    DatabaseError,
    RetriesExhaustedError,
    Transaction,
)
from storage.engine import create_database, open_database
from storage.migrations import MigrationError, SchemaTooNewError

__all__ = [
    "Database",
    "DatabaseConfigError",
    "DatabaseError",
    "MigrationError",
    "RetriesExhaustedError",
    "SchemaTooNewError",
    "Transaction",
    "create_database",
    "open_database",
]
