"""PostgreSQL engine: psycopg 3's async API over a psycopg_pool.AsyncConnectionPool.

Connections are in autocommit mode and each interaction issues its own
`BEGIN ISOLATION LEVEL ... READ WRITE|READ ONLY`, so the isolation level and read-only flag are
chosen per transaction without extra round trips to reconfigure the connection.

Round trips are what a loaded machine makes expensive, so an interaction costs as few as it can:
the `BEGIN` travels with the first statement in one pipeline (a transaction that runs no
statement sends nothing), independent reads given together to `fetch_all_batch` share one
pipeline too, and a read-only transaction's `COMMIT` is sent after its result is handed back
(everything was read from one snapshot already; the connection returns to the pool once the
`COMMIT` is answered). A one-statement read (or one batch) is one round trip, a write two. A read
declared `single_statement` runs outside a transaction block: no BEGIN, no COMMIT at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
from psycopg.types.array import ListBinaryDumper
from psycopg_pool import AsyncConnectionPool

from storage.database import (
    Database,
    DatabaseConfigError,
    DatabaseError,
    InteractionFunc,
    Isolation,
    Row,
    Transaction,
)
from storage.pg_upkeep import TableUpkeep
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
    def __init__(self, name: str, conn: psycopg.AsyncConnection[Any], cursor: psycopg.AsyncCursor[Any],
                 begin: tuple[str, ...] | None) -> None:
        super().__init__(POSTGRES, name)
        self._conn = conn
        self._cursor = cursor
        # The BEGIN (and settings of the transaction) not sent yet; they go out with the first
        # statement. None from the start: one round trip outside a transaction block, no more.
        self._begin: tuple[str, ...] | None = begin
        self._single = begin is None
        self._round_trips = 0

    @property
    def begun(self) -> bool:
        """Whether a transaction block was opened (and so needs its COMMIT)."""
        return self._begin is None and not self._single

    async def _send_begin(self) -> None:
        self._round_trips += 1
        if self._single and self._round_trips > 1:
            raise DatabaseError(f"interaction {self.name!r} was declared single_statement but made a second"
                                " round trip")
        begin, self._begin = self._begin, None
        for statement in begin or ():
            await self._conn.execute(statement)  # type: ignore[arg-type]

    async def _execute(self, sql: str, params: Sequence[Any]) -> tuple[list[Row], int]:
        cur = self._cursor
        # Always pass a (possibly empty) tuple: the translated SQL has `%%` for literal percent
        # signs, which psycopg only unescapes when parameters are given.
        if self._single:
            await self._send_begin()  # counts the round trip; sends nothing
            await cur.execute(sql, params)  # type: ignore[arg-type]
        elif self._begin is not None:
            # BEGIN and the first statement in one round trip; leaving the pipeline waits for
            # both results (an error in either is raised there) and puts the statement's on `cur`.
            async with self._conn.pipeline():
                await self._send_begin()
                await cur.execute(sql, params)  # type: ignore[arg-type]
        else:
            await cur.execute(sql, params)  # type: ignore[arg-type]
        rows = await cur.fetchall() if cur.description is not None else []
        return rows, cur.rowcount

    async def _fetch_batch(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[list[Row]]:
        # Every statement (and the BEGIN, if not sent yet) in one pipeline: one round trip.
        cursors = []
        async with self._conn.pipeline():
            await self._send_begin()
            for sql, params in statements:
                cur = self._conn.cursor()
                await cur.execute(sql, params)  # type: ignore[arg-type]
                cursors.append(cur)
        return [await cur.fetchall() if cur.description is not None else [] for cur in cursors]

    async def _executemany(self, sql: str, seq_of_params: list[Sequence[Any]]) -> int:
        await self._send_begin()
        await self._cursor.executemany(sql, seq_of_params)  # type: ignore[arg-type]
        return self._cursor.rowcount

    async def _execute_script(self, statements: list[str]) -> None:
        await self._send_begin()
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
        upkeep_interval_s: float = 15.0,
        **retry_options: Any,
    ) -> None:
        super().__init__(**retry_options)
        if pool_min < 0 or pool_max < 1 or pool_min > pool_max:
            raise DatabaseConfigError(
                "database.pool_min/pool_max must satisfy 0 <= pool_min <= pool_max, pool_max >= 1"
            )
        self.dsn = dsn
        self.upkeep_interval_s = upkeep_interval_s
        self._pool = AsyncConnectionPool(
            dsn,
            min_size=pool_min,
            max_size=pool_max,
            timeout=pool_timeout,
            kwargs={"autocommit": True},
            configure=_configure_connection,
            open=False,
            name="homeserver",
        )
        # Reads may hold all but a quarter of the pool (at least one connection): a burst of
        # reads (a thousand /sync long polls woken at once) then never makes a write wait for a
        # connection behind it. With a pool of one there is nothing to set aside.
        reserved = max(1, pool_max // 4) if pool_max > 1 else 0
        # Slots go to waiting urgent reads before bulk ones (storage/priority.py).
        self._read_slots: PriorityPool[int] = PriorityPool(range(pool_max - reserved))
        # Read-only transactions whose COMMIT is still on its way (see the module docstring).
        self._finishing: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        await self._pool.open(wait=True)

    def table_upkeep(self) -> TableUpkeep:
        return TableUpkeep(self.dsn, self.upkeep_interval_s)

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
        durable: bool,
        single_statement: bool,
    ) -> tuple[T, Transaction]:
        if write:
            return await self._run_on_pool(name, func, args, kwargs, write, isolation, None, durable, False)
        slot = await self._read_slots.acquire()
        return await self._run_on_pool(name, func, args, kwargs, write, isolation,
                                       lambda: self._read_slots.release(slot), durable, single_statement)

    async def _run_on_pool(
        self,
        name: str,
        func: InteractionFunc[T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        write: bool,
        isolation: Isolation,
        release_slot: Callable[[], None] | None,
        durable: bool,
        single_statement: bool,
    ) -> tuple[T, Transaction]:
        """Run `func` on a pooled connection; the connection (and the read slot, if any) is given
        back here, or by the task that finishes a read-only transaction's COMMIT."""
        handed_off = False
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            conn = await self._pool.getconn()
            try:
                if task is not None and task.cancelling() > cancels:
                    # psycopg_pool waits with asyncio.wait_for, which on Python 3.11 hands back a
                    # connection that arrived just as its caller was cancelled and drops the
                    # cancellation. Honour it: a task that was told to stop must not carry on.
                    raise asyncio.CancelledError()
                mode = "READ WRITE" if write else "READ ONLY"
                begin = f"BEGIN ISOLATION LEVEL {_ISOLATION_SQL[isolation]} {mode}"
                # Not durable: the commit returns before its WAL record is flushed; the next
                # synchronous commit flushes it, and only a crash of PostgreSQL itself can lose it.
                settings = () if durable or not write else ("SET LOCAL synchronous_commit = off",)
                # A single statement is atomic on its own: no transaction block to open or commit.
                txn = PostgresTransaction(name, conn, conn.cursor(), None if single_statement else (begin, *settings))
                try:
                    result = await func(txn, *args, **kwargs)
                    if txn.begun:
                        if write:
                            # commit() sends the bare command: no cursor, no query preparation.
                            await conn.commit()
                        else:
                            task = asyncio.get_running_loop().create_task(self._finish_read(conn, release_slot))
                            self._finishing.add(task)
                            task.add_done_callback(self._finishing.discard)
                            handed_off = True
                except BaseException:
                    await _rollback_quietly(conn)
                    raise
            finally:
                if not handed_off:
                    await self._pool.putconn(conn)
        finally:
            if release_slot is not None and not handed_off:
                release_slot()
        return result, txn

    async def _finish_read(self, conn: psycopg.AsyncConnection[Any], release_slot: Callable[[], None] | None) -> None:
        try:
            await conn.commit()
        except Exception:
            # Nothing was written; the pool discards a connection left broken.
            await _rollback_quietly(conn)
        finally:
            try:
                await self._pool.putconn(conn)
            finally:
                if release_slot is not None:
                    release_slot()

    async def _close(self) -> None:
        while self._finishing:
            await asyncio.gather(*self._finishing, return_exceptions=True)
        await self._pool.close()


async def _configure_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    # Lists (the `= ANY(?)` and `unnest(?)` parameters) travel in binary: psycopg builds a text array
    # in Python, quoting element by element, which costs milliseconds for a page of a thousand event
    # IDs; the binary form is packed in C.
    conn.adapters.register_dumper(list, ListBinaryDumper)


async def _rollback_quietly(conn: psycopg.AsyncConnection[Any]) -> None:
    # Never let a failed rollback hide the error that caused it; the pool discards connections
    # left in a broken state when they are returned.
    if conn.closed or conn.info.transaction_status == TransactionStatus.IDLE:
        return
    try:
        await conn.rollback()
    except Exception:
        pass
