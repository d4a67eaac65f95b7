"""The service's own small database: SQLite (stdlib, one worker thread) or PostgreSQL (psycopg).

SQL is written once with `?` placeholders; the PostgreSQL driver gets `%s`. The schema is created
on start-up (`schema.py`); there is no migration history yet beyond `CREATE ... IF NOT EXISTS`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from appservices.privacy.config import DatabaseConfig
from appservices.privacy.schema import schema_statements

Row = tuple[Any, ...]


class Database:
    """`execute`, `fetch_all`, `fetch_one` and `transaction` over either engine."""

    def __init__(self, config: DatabaseConfig):
        self.engine = config.engine
        self._config = config
        self._sqlite: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pg: Any = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self.engine == "sqlite":
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="privacy-db")
            path = self._config.path
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)

            def connect() -> sqlite3.Connection:
                conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA foreign_keys=ON")
                return conn

            self._sqlite = await self._run(connect)
        else:
            import psycopg

            self._pg = await psycopg.AsyncConnection.connect(self._config.dsn, autocommit=True)
        for statement in schema_statements(self.engine):
            await self.execute(statement)

    async def close(self) -> None:
        if self._sqlite is not None:
            conn, self._sqlite = self._sqlite, None
            await self._run(conn.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._pg is not None:
            await self._pg.close()
            self._pg = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.engine == "postgres" else sql

    async def transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
        """Run the statements atomically; returns each statement's rows (empty for writes)."""
        async with self._lock:
            if self.engine == "sqlite":
                return await self._run(self._sqlite_tx, statements)
            results: list[list[Row]] = []
            async with self._pg.transaction():
                for sql, params in statements:
                    cur = await self._pg.execute(self._sql(sql), tuple(params) if params else None)
                    results.append(list(await cur.fetchall()) if cur.description else [])
            return results

    def _sqlite_tx(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
        conn = self._sqlite
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            results = [conn.execute(sql, tuple(params)).fetchall() for sql, params in statements]
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return results

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return (await self.transaction([(sql, params)]))[0]

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self.execute(sql, params)

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.execute(sql, params)
        return rows[0] if rows else None
