"""SQLite engine: WAL mode, one writer thread, a few reader threads, never blocking the event loop.

Every sqlite3 call happens on a thread that owns its connection. Each thread is a one-worker
executor, so calls to one connection run strictly in submission order: that is what makes
rolling back after a cancellation safe (the ROLLBACK queues behind whatever is still running).
Write transactions additionally hold an asyncio lock for their whole length, so at most one
writes at a time and `BEGIN IMMEDIATE` never waits on ourselves.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from storage.database import Database, DatabaseConfigError, InteractionFunc, Isolation, Row, Transaction
from storage.priority import PriorityPool
from storage.sql import SQLITE

T = TypeVar("T")
logger = logging.getLogger(__name__)

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
# Page cache of each reader connection, in KiB (SQLite's default is 2,000). In WAL mode a
# connection drops its whole cache when it begins a read after another connection wrote, so under
# writes a reader's cache holds little for long; the operating system's file cache still has the
# pages. The writer keeps the default: its cache stays valid across its own writes.
READER_CACHE_KIB = 512
_TRANSIENT_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _journal_mode(conn: sqlite3.Connection | None) -> str:
    assert conn is not None
    return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()


def _decode_boolean(value: bytes) -> bool:
    return value not in (b"0", b"")


class _Connection:
    """A sqlite3 connection together with the single thread allowed to use it."""

    def __init__(self, label: str) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{label}")
        self.conn: sqlite3.Connection | None = None
        # A reader whose last read transaction is still open: its COMMIT rides on the next hop.
        self.lingering = False

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args))

    async def open(self, path: str, pragmas: Sequence[str]) -> None:
        def connect() -> sqlite3.Connection:
            # isolation_level=None: the module must not open transactions behind our back;
            # BEGIN/COMMIT are issued explicitly.
            conn = sqlite3.connect(
                path,
                isolation_level=None,
                check_same_thread=False,
                detect_types=sqlite3.PARSE_DECLTYPES,
                uri=path.startswith("file:"),
            )
            for pragma in pragmas:
                conn.execute(pragma).fetchall()
            return conn

        self.conn = await self.call(connect)

    async def close(self) -> None:
        if self.conn is not None:
            await self.call(self.conn.close)
            self.conn = None
        self.executor.shutdown(wait=False)


# Each helper below runs on the connection's thread and first issues the transaction's pending
# BEGIN, if any: opening the transaction together with its first statement saves a thread hop
# (about 50us here, and up to the interpreter's switch interval when the event loop is busy) per
# transaction. A reader may still be inside the read transaction of its previous interaction,
# whose COMMIT was left for this hop to issue (SqliteDatabase._run_on).


def _open(conn: sqlite3.Connection, begin: Sequence[str] | None) -> None:
    if begin:
        if conn.in_transaction:
            conn.execute("COMMIT")
        for statement in begin:
            conn.execute(statement)


def _execute(
    conn: sqlite3.Connection, begin: Sequence[str] | None, sql: str, params: Sequence[Any]
) -> tuple[list[Row], int]:
    _open(conn, begin)
    cur = conn.execute(sql, params)
    try:
        if cur.description is None:
            return [], cur.rowcount
        rows = cur.fetchall()
        # PostgreSQL reports the number of returned rows for SELECT and RETURNING; match it.
        return rows, len(rows)
    finally:
        cur.close()


def _executemany(conn: sqlite3.Connection, begin: Sequence[str] | None, sql: str, seq: list[Sequence[Any]]) -> int:
    _open(conn, begin)
    cur = conn.executemany(sql, seq)
    try:
        return cur.rowcount
    finally:
        cur.close()


def _execute_script(conn: sqlite3.Connection, begin: Sequence[str] | None, statements: list[str]) -> None:
    _open(conn, begin)
    # Not conn.executescript(): that commits any open transaction first, and migrations must
    # run inside the transaction that also records them.
    for statement in statements:
        conn.execute(statement).close()


def _commit_if_open(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("COMMIT")


def _rollback_if_open(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _end_relaxed(conn: sqlite3.Connection, end: Callable[[sqlite3.Connection], None], restore: str) -> None:
    # The safety level can only change outside a transaction: a relaxed one sets NORMAL before its
    # BEGIN (in WAL mode its commit is then written to the WAL without a sync, which the next FULL
    # commit's sync covers) and the configured level comes back right after its end.
    try:
        end(conn)
    finally:
        conn.execute(f"PRAGMA synchronous = {restore}")


def _fetch_batch(conn: sqlite3.Connection, begin: Sequence[str] | None, statements: list[tuple[str, tuple[Any, ...]]]
                 ) -> list[list[Row]]:
    return [_execute(conn, begin if i == 0 else None, sql, params)[0] for i, (sql, params) in enumerate(statements)]


class SqliteTransaction(Transaction):
    def __init__(self, name: str, connection: _Connection, begin: tuple[str, ...]) -> None:
        super().__init__(SQLITE, name)
        self._connection = connection
        self._pending_begin: tuple[str, ...] | None = begin

    def _take_begin(self) -> tuple[str, ...] | None:
        # Cleared before the hop is awaited: once submitted, the BEGIN will run even if this
        # task is cancelled, and the rollback path checks conn.in_transaction anyway.
        begin, self._pending_begin = self._pending_begin, None
        if begin:
            self._connection.lingering = False  # the helper commits it before this BEGIN
        return begin

    async def _execute(self, sql: str, params: Sequence[Any]) -> tuple[list[Row], int]:
        return await self._connection.call(_execute, self._connection.conn, self._take_begin(), sql, params)

    async def _fetch_batch(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[list[Row]]:
        # One hop to the connection's thread for the whole batch.
        return await self._connection.call(_fetch_batch, self._connection.conn, self._take_begin(), statements)

    async def _executemany(self, sql: str, seq_of_params: list[Sequence[Any]]) -> int:
        return await self._connection.call(
            _executemany, self._connection.conn, self._take_begin(), sql, seq_of_params
        )

    async def _execute_script(self, statements: list[str]) -> None:
        await self._connection.call(_execute_script, self._connection.conn, self._take_begin(), statements)


class SqliteDatabase(Database):
    """A SQLite database file opened for one process: one writer, `readers` reader connections."""

    dialect = SQLITE

    def __init__(
        self,
        path: str,
        *,
        readers: int = 2,
        busy_timeout_ms: int = 5000,
        synchronous: str = "FULL",
        **retry_options: Any,
    ) -> None:
        super().__init__(**retry_options)
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise DatabaseConfigError(f"database.synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        if readers < 0:
            raise DatabaseConfigError("database.readers must be 0 or more")
        self.path = path
        self._in_memory = path == ":memory:" or "mode=memory" in path
        # A private in-memory database exists only on its one connection, so there is nothing to
        # share with readers: reads then go through the writer.
        self._reader_count = 0 if self._in_memory else readers
        self._busy_timeout_ms = busy_timeout_ms
        self._synchronous = synchronous.upper()
        self._writer = _Connection("writer")
        self._write_lock = asyncio.Lock()
        self._readers: list[_Connection] = []
        # Handed to waiting reads urgent-first (storage/priority.py).
        self._idle_readers: PriorityPool[_Connection] = PriorityPool()

    async def open(self) -> None:
        sqlite3.register_converter("BOOLEAN", _decode_boolean)
        common = [f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}"]
        # WAL lets readers run beside the writer; synchronous=FULL makes every commit durable
        # across power loss, which acknowledged events require.
        await self._writer.open(
            self.path, ["PRAGMA journal_mode = WAL", f"PRAGMA synchronous = {self._synchronous}", *common]
        )
        mode = await self._writer.call(_journal_mode, self._writer.conn)
        if mode != "wal" and not self._in_memory:
            logger.warning(
                "SQLite database %s is in %s mode, not WAL: readers will wait for writers", self.path, mode
            )
        for index in range(self._reader_count):
            reader = _Connection(f"reader{index}")
            await reader.open(self.path, [*common, "PRAGMA query_only = ON",
                                           f"PRAGMA cache_size = -{READER_CACHE_KIB}"])
            self._readers.append(reader)
            self._idle_readers.add(reader)

    def pool_stats(self) -> tuple[int, int]:
        busy_readers = len(self._readers) - self._idle_readers.idle_count()
        return 1 + len(self._readers), busy_readers + (1 if self._write_lock.locked() else 0)

    def is_transient_error(self, error: BaseException) -> bool:
        if not isinstance(error, sqlite3.OperationalError):
            return False
        code = getattr(error, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in _TRANSIENT_CODES
        message = str(error)
        return "database is locked" in message or "database is busy" in message

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
        # `single_statement` changes nothing here: a read's BEGIN rides with its first statement and
        # its commit is deferred to the connection's next use, so neither costs a hop of its own.
        # Without readers (in-memory databases) reads share the writer, unenforced as read-only.
        if write or not self._readers:
            async with self._write_lock:
                # IMMEDIATE takes the file's write lock up front, so a conflict with another
                # process surfaces as "database is locked" at the first statement (and is
                # retried) rather than when a read lock must be upgraded midway.
                if durable or self._synchronous not in ("FULL", "EXTRA"):
                    return await self._run_on(self._writer, ("BEGIN IMMEDIATE",), name, func, args, kwargs)
                return await self._run_on(self._writer, ("PRAGMA synchronous = NORMAL", "BEGIN IMMEDIATE"),
                                          name, func, args, kwargs, restore=self._synchronous)
        reader = await self._idle_readers.acquire()
        try:
            # A read transaction pins one WAL snapshot for all its statements.
            return await self._run_on(reader, ("BEGIN",), name, func, args, kwargs, defer_commit=True)
        finally:
            self._idle_readers.release(reader)

    async def _run_on(
        self,
        connection: _Connection,
        begin: tuple[str, ...],
        name: str,
        func: InteractionFunc[T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        defer_commit: bool = False,
        restore: str | None = None,
    ) -> tuple[T, Transaction]:
        """`restore`: the safety level to set again after a transaction whose `begin` lowered it."""
        conn = connection.conn
        assert conn is not None, "database is not open"
        txn = SqliteTransaction(name, connection, begin)
        try:
            result = await func(txn, *args, **kwargs)
            if txn._pending_begin is None or connection.lingering:
                if defer_commit and self._idle_readers.has_waiters():
                    # A read transaction has nothing to commit: when another read waits for this
                    # reader, its first hop ends this one (one hop per read instead of two).
                    connection.lingering = True
                else:
                    if restore is not None:
                        await connection.call(_end_relaxed, conn, _commit_if_open, restore)
                    else:
                        await connection.call(_commit_if_open, conn)
                    connection.lingering = False
        except BaseException:
            # Shielded so that a second cancellation cannot skip it; the connection's single
            # thread runs it only after any statement still in flight.
            connection.lingering = False
            if restore is not None and txn._pending_begin is None:
                await asyncio.shield(connection.call(_end_relaxed, conn, _rollback_if_open, restore))
            else:
                await asyncio.shield(connection.call(_rollback_if_open, conn))
            raise
        return result, txn

    async def _close(self) -> None:
        async with self._write_lock:
            for _ in self._readers:
                await self._idle_readers.acquire()
            for reader in self._readers:
                await reader.close()
            await self._writer.close()
