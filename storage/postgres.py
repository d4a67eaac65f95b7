"""PostgreSQL engine: psycopg 3's async API over a psycopg_pool.AsyncConnectionPool.

Connections are in autocommit mode and each interaction issues its own
`BEGIN ISOLATION LEVEL ... READ WRITE|READ ONLY`, so the isolation level and read-only flag are
chosen per transaction without extra round trips to reconfigure the connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from storage.database import Database, DatabaseConfigError, InteractionFunc, Isolation, Row, Transaction
from storage.priority import PriorityPool
from storage.sql import POSTGRES

T = TypeVar("T")

_ISOLATION_SQL: dict[str, str] = {
    "repeatable_read": "REPEATABLE READ",
    "read_committed": "READ COMMITTED",
    "serializable": "SERIALIZABLE",
}
_TRANSIENT_ERRORS = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)


class PostgresTransaction(Transaction):
    def __init__(self, name: str, cursor: psycopg.AsyncCursor[Any]) -> None:
        super().__init__(POSTGRES, name)
        self._cursor = cursor

    async def _execute(self, sql: str, params: Sequence[Any]) -> tuple[list[Row], int]:
        cur = self._cursor
        # Always pass a (possibly empty) tuple: the translated SQL has `%%` for literal percent
        # signs, which psycopg only unescapes when parameters are given.
        await cur.execute(sql, params)  # type: ignore[arg-type]
        rows = await cur.fetchall() if cur.description is not None else []
        return rows, cur.rowcount

    async def _executemany(self, sql: str, seq_of_params: list[Sequence[Any]]) -> int:
        await self._cursor.executemany(sql, seq_of_params)  # type: ignore[arg-type]
        return self._cursor.rowcount

    async def _execute_script(self, statements: list[str]) -> None:
        for statement in statements:
            # No parameters, so psycopg takes the text verbatim (no `%` processing).
            await self._cursor.execute(statement)  # type: ignore[arg-type]


class PostgresDatabase(Database):
    """A PostgreSQL database reached through a pool of `pool_min`..`pool_max` connections."""

    dialect = POSTGRES

    def __init__(
        self,
        dsn: str,
        *,
        pool_min: int = 1,
        pool_max: int = 10,
        pool_timeout: float = 30.0,
        **retry_options: Any,
    ) -> None:
        super().__init__(**retry_options)
        if pool_min < 0 or pool_max < 1 or pool_min > pool_max:
            raise DatabaseConfigError(
                "database.pool_min/pool_max must satisfy 0 <= pool_min <= pool_max, pool_max >= 1"
            )
        self.dsn = dsn
        self._pool = AsyncConnectionPool(
            dsn,
            min_size=pool_min,
            max_size=pool_max,
            timeout=pool_timeout,
            kwargs={"autocommit": True},
            open=False,
            name="homeserver",
        )
        # Reads may hold all but a quarter of the pool (at least one connection): a burst of
        # reads (a thousand /sync long polls woken at once) then never makes a write wait for a
        # connection behind it. With a pool of one there is nothing to set aside.
        reserved = max(1, pool_max // 4) if pool_max > 1 else 0
        # Slots go to waiting urgent reads before bulk ones (storage/priority.py).
        self._read_slots: PriorityPool[int] = PriorityPool(range(pool_max - reserved))

    async def open(self) -> None:
        await self._pool.open(wait=True)

    def pool_stats(self) -> tuple[int, int]:
        stats = self._pool.get_stats()
        size = stats.get("pool_size", 0)
        return size, size - stats.get("pool_available", 0)

    def is_transient_error(self, error: BaseException) -> bool:
        return isinstance(error, _TRANSIENT_ERRORS)

    async def _run_transaction(
        self,
        name: str,
        func: InteractionFunc[T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        write: bool,
        isolation: Isolation,
    ) -> tuple[T, Transaction]:
        if write:
            return await self._run_on_pool(name, func, args, kwargs, "READ WRITE", isolation)
        slot = await self._read_slots.acquire()
        try:
            return await self._run_on_pool(name, func, args, kwargs, "READ ONLY", isolation)
        finally:
            self._read_slots.release(slot)

    async def _run_on_pool(
        self,
        name: str,
        func: InteractionFunc[T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        mode: str,
        isolation: Isolation,
    ) -> tuple[T, Transaction]:
        async with self._pool.connection() as conn, conn.cursor() as cur:
            txn = PostgresTransaction(name, cur)
            try:
                await cur.execute(f"BEGIN ISOLATION LEVEL {_ISOLATION_SQL[isolation]} {mode}")  # type: ignore[arg-type]
                result = await func(txn, *args, **kwargs)
                await cur.execute("COMMIT")  # type: ignore[arg-type]
            except BaseException:
                await _rollback_quietly(conn)
                raise
            return result, txn

    async def _close(self) -> None:
        await self._pool.close()


async def _rollback_quietly(conn: psycopg.AsyncConnection[Any]) -> None:
    # Never let a failed rollback hide the error that caused it; the pool discards connections
    # left in a broken state when they are returned.
    if conn.closed or conn.info.transaction_status == TransactionStatus.IDLE:
        return
    try:
        await conn.rollback()
    except Exception:
        pass
