"""The engine-neutral database interface: transactions, interactions, retries, simple helpers.

An *interaction* is an `async def func(txn, *args)` run inside one database transaction. The
same function runs unchanged on SQLite and PostgreSQL: every statement is `await txn.execute(...)`
with `?` placeholders, and results are buffered on the transaction (`txn.fetchone()`,
`txn.fetchall()`, `txn.rowcount`). A transaction that fails with a transient conflict (a
PostgreSQL serialization failure or deadlock, SQLite's "database is locked") is rolled back and
the whole function is run again, so it must not have effects outside the transaction: queue
those with `txn.call_after_commit(...)`.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeVar

from storage.sql import Dialect, check_identifier

logger = logging.getLogger(__name__)

T = TypeVar("T")
Row = tuple[Any, ...]
Isolation = Literal["repeatable_read", "read_committed", "serializable"]
ISOLATION_LEVELS: tuple[Isolation, ...] = ("repeatable_read", "read_committed", "serializable")


# The interaction the current task is inside, to catch nested interactions: on SQLite a write
# nested in a write would wait forever for the writer it already holds.
_current_interaction: contextvars.ContextVar[str | None] = contextvars.ContextVar("interaction", default=None)


class DatabaseError(Exception):
    """Base class of the storage layer's own errors."""


class DatabaseConfigError(DatabaseError, ValueError):
    """The database section of the configuration is wrong; the message names the key."""


class RetriesExhaustedError(DatabaseError):
    """A transaction kept conflicting with others and was given up on."""


class Transaction(abc.ABC):
    """One open database transaction, handed to interaction functions."""

    dialect: Dialect

    def __init__(self, dialect: Dialect, name: str) -> None:
        self.dialect = dialect
        self.name = name
        self._rows: list[Row] = []
        self._cursor_pos = 0
        self.rowcount = -1
        # Statements sent to the engine (an executemany counts once), for the database's tally.
        self.statements = 0
        self._after_commit: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    @property
    def engine(self) -> str:
        return self.dialect.name

    @abc.abstractmethod
    async def _execute(self, sql: str, params: Sequence[Any]) -> tuple[list[Row], int]:
        """Run one translated statement, returning all result rows and the affected-row count."""

    @abc.abstractmethod
    async def _executemany(self, sql: str, seq_of_params: list[Sequence[Any]]) -> int:
        """Run one translated statement once per parameter set, returning the total row count."""

    @abc.abstractmethod
    async def _execute_script(self, statements: list[str]) -> None:
        """Run already-split statements verbatim (no placeholder handling)."""

    async def _fetch_batch(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[list[Row]]:
        """Run translated statements in order, returning each one's rows; engines that can send
        them together override this."""
        return [(await self._execute(sql, params))[0] for sql, params in statements]

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement; its result rows (if any) become available via fetchone/fetchall."""
        self.statements += 1
        self._rows, self.rowcount = await self._execute(self.dialect.translate(sql), tuple(params))
        self._cursor_pos = 0

    async def fetch_all_batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
        """The rows of each of several statements that do not depend on each other's results.

        On PostgreSQL they travel together, so the batch costs one round trip however long it is.
        """
        self.statements += len(statements)
        self._rows, self._cursor_pos, self.rowcount = [], 0, -1
        if not statements:
            return []
        return await self._fetch_batch([(self.dialect.translate(sql), tuple(params)) for sql, params in statements])

    async def execute_batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run several statements, in order, none of which needs another's result: on PostgreSQL
        one round trip for all of them (see `fetch_all_batch`)."""
        await self.fetch_all_batch(statements)

    async def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]]) -> None:
        batch = [tuple(p) for p in seq_of_params]
        self.statements += 1 if batch else 0
        self._rows, self._cursor_pos = [], 0
        self.rowcount = await self._executemany(self.dialect.translate(sql), batch) if batch else 0

    async def execute_script(self, script: str) -> None:
        """Run a multi-statement script such as a migration; no placeholders are interpreted."""
        await self._execute_script(self.dialect.split_script(script))
        self._rows, self._cursor_pos, self.rowcount = [], 0, -1

    def fetchone(self) -> Row | None:
        if self._cursor_pos >= len(self._rows):
            return None
        row = self._rows[self._cursor_pos]
        self._cursor_pos += 1
        return row

    def fetchall(self) -> list[Row]:
        rows = self._rows[self._cursor_pos :]
        self._cursor_pos = len(self._rows)
        return rows

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        await self.execute(sql, params)
        return self.fetchone()

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        await self.execute(sql, params)
        return self.fetchall()

    async def fetch_value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None when there is no row."""
        row = await self.fetch_one(sql, params)
        return None if row is None else row[0]

    def call_after_commit(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run `callback(*args)` once this transaction has committed; dropped on rollback or retry."""
        self._after_commit.append((callback, args))

    # Simple, table-driven statements. Table and column names are checked to be plain identifiers
    # because they are pasted into the SQL; values always travel as parameters.

    async def select_one(
        self, table: str, keyvalues: Mapping[str, Any], retcols: Sequence[str], *, allow_none: bool = False
    ) -> dict[str, Any] | None:
        rows = await self.select_list(table, keyvalues, retcols, limit=2)
        if len(rows) > 1:
            raise DatabaseError(f"more than one row in {table} matched {dict(keyvalues)!r}")
        if not rows:
            if allow_none:
                return None
            raise DatabaseError(f"no row in {table} matched {dict(keyvalues)!r}")
        return rows[0]

    async def select_list(
        self,
        table: str,
        keyvalues: Mapping[str, Any],
        retcols: Sequence[str],
        *,
        order_by: Sequence[str] = (),
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        columns = [check_identifier(c) for c in retcols]
        where, params = _where(keyvalues)
        sql = f"SELECT {', '.join(columns)} FROM {check_identifier(table)}{where}"
        if order_by:
            sql += " ORDER BY " + ", ".join(check_identifier(c) for c in order_by)
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = await self.fetch_all(sql, params)
        return [dict(zip(columns, row, strict=True)) for row in rows]

    async def insert(self, table: str, values: Mapping[str, Any]) -> None:
        columns = [check_identifier(c) for c in values]
        sql = (
            f"INSERT INTO {check_identifier(table)} ({', '.join(columns)})"
            f" VALUES ({', '.join('?' * len(columns))})"
        )
        await self.execute(sql, tuple(values.values()))

    async def insert_many(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        cols = [check_identifier(c) for c in columns]
        sql = (
            f"INSERT INTO {check_identifier(table)} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        )
        await self.executemany(sql, rows)

    async def upsert(
        self,
        table: str,
        keyvalues: Mapping[str, Any],
        values: Mapping[str, Any],
        insertion_values: Mapping[str, Any] | None = None,
    ) -> None:
        """Insert a row, or update `values` on the row with these `keyvalues`.

        `keyvalues` must name the columns of a unique constraint. `insertion_values` are only
        written when the row is new.
        """
        if not keyvalues:
            raise ValueError("upsert needs at least one key column")
        row = {**keyvalues, **(insertion_values or {}), **values}
        columns = [check_identifier(c) for c in row]
        keys = [check_identifier(c) for c in keyvalues]
        sql = (
            f"INSERT INTO {check_identifier(table)} ({', '.join(columns)})"
            f" VALUES ({', '.join('?' * len(columns))}) ON CONFLICT ({', '.join(keys)})"
        )
        if values:
            sql += " DO UPDATE SET " + ", ".join(f"{check_identifier(c)} = excluded.{c}" for c in values)
        else:
            sql += " DO NOTHING"
        await self.execute(sql, tuple(row.values()))

    async def update(self, table: str, keyvalues: Mapping[str, Any], updatevalues: Mapping[str, Any]) -> int:
        if not updatevalues:
            raise ValueError("update needs at least one column to set")
        assignments = ", ".join(f"{check_identifier(c)} = ?" for c in updatevalues)
        where, params = _where(keyvalues)
        await self.execute(
            f"UPDATE {check_identifier(table)} SET {assignments}{where}", (*updatevalues.values(), *params)
        )
        return self.rowcount

    async def delete(self, table: str, keyvalues: Mapping[str, Any]) -> int:
        where, params = _where(keyvalues)
        await self.execute(f"DELETE FROM {check_identifier(table)}{where}", params)
        return self.rowcount


def _where(keyvalues: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
    if not keyvalues:
        return "", ()
    # `IS NULL` rather than `= NULL`, which would match nothing.
    clauses = [
        f"{check_identifier(c)} IS NULL" if v is None else f"{check_identifier(c)} = ?"
        for c, v in keyvalues.items()
    ]
    return " WHERE " + " AND ".join(clauses), tuple(v for v in keyvalues.values() if v is not None)


InteractionFunc = Callable[..., Awaitable[T]]


class BackgroundUpkeep(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Database(abc.ABC):
    """An open database: run interactions, plus one-statement conveniences built on them."""

    dialect: Dialect

    def __init__(
        self, *, max_retries: int = 8, retry_base_delay: float = 0.005, retry_max_delay: float = 0.5
    ) -> None:
        self.max_retries = max_retries
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self._closed = False
        # Committed transactions and their statements since the database was opened (tests count
        # these to catch N+1 query patterns; metrics may export them).
        self.transactions_run = 0
        self.statements_run = 0
        # Transactions retried after a conflict, and interactions running or waiting for a connection.
        self.transaction_retries = 0
        self.interactions_in_flight = 0
        # Called with (name, write, seconds) after each committed transaction; the metrics wiring sets it.
        self.on_transaction: Callable[[str, bool, float], None] | None = None

    @property
    def engine(self) -> str:
        return self.dialect.name

    @abc.abstractmethod
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
        """Run `func` in one transaction and commit it, rolling back on any exception."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect; called once before the first interaction."""

    @abc.abstractmethod
    def is_transient_error(self, error: BaseException) -> bool:
        """Whether retrying the whole transaction may succeed."""

    @abc.abstractmethod
    async def _close(self) -> None: ...

    def pool_stats(self) -> tuple[int, int]:
        """(connections open, connections busy in a transaction), for metrics."""
        return 0, 0

    def table_upkeep(self) -> BackgroundUpkeep | None:
        """A background service that keeps the engine's tables in shape, where the engine needs one."""
        return None

    async def run_interaction(
        self,
        name: str,
        func: InteractionFunc[T],
        *args: Any,
        write: bool = True,
        isolation: Isolation = "repeatable_read",
        durable: bool = True,
        single_statement: bool = False,
        **kwargs: Any,
    ) -> T:
        """Run `func(txn, *args, **kwargs)` in a transaction, retrying it on transient conflicts.

        `write=False` runs it read-only (a SQLite reader connection, a PostgreSQL READ ONLY
        transaction). `isolation` only matters on PostgreSQL; SQLite's single writer is serializable.
        `durable=False` commits without waiting for the disk (SQLite `synchronous=NORMAL`,
        PostgreSQL `synchronous_commit = off`): only for writes that can be redone from durable
        data and that record how far they got in the same transaction, like a stream stage's
        results with its position. A crash of our process loses nothing; a crash of the machine
        (or of PostgreSQL) may lose such commits made after the last durable one, never a durable
        one, and the stage redoes them.
        `single_statement=True` (reads only) promises that on PostgreSQL `func` makes one round trip:
        one statement, or one batch whose statements need no common snapshot. PostgreSQL then runs it outside a
        transaction block, without BEGIN and COMMIT; a second round trip is an error.
        """
        if single_statement and write:
            raise ValueError("single_statement is for reads (write=False)")
        if self._closed:
            raise DatabaseError("database is closed")
        if isolation not in ISOLATION_LEVELS:
            raise ValueError(f"unknown isolation level {isolation!r}")
        outer = _current_interaction.get()
        if outer is not None:
            raise DatabaseError(
                f"interaction {name!r} started inside interaction {outer!r}; use the transaction you were given"
            )
        attempt = 0
        while True:
            started = time.monotonic()
            self.interactions_in_flight += 1
            try:
                result, txn = await self._run_transaction_marked(name, func, args, kwargs, write, isolation,
                                                                 durable, single_statement)
            except Exception as error:
                if not self.is_transient_error(error):
                    raise
                if attempt >= self.max_retries:
                    raise RetriesExhaustedError(
                        f"transaction {name!r} still conflicting after {attempt + 1} attempts: {error}"
                    ) from error
                delay = min(self.retry_max_delay, self.retry_base_delay * 2**attempt)
                delay *= random.uniform(0.5, 1.5)  # jitter, so conflicting retries do not collide again
                logger.info(
                    "transaction %s conflicted (%s); retry %d in %.3fs", name, error, attempt + 1, delay
                )
                attempt += 1
                self.transaction_retries += 1
                await asyncio.sleep(delay)
                continue
            finally:
                self.interactions_in_flight -= 1
            elapsed = time.monotonic() - started
            logger.debug("transaction %s took %.1fms", name, elapsed * 1000)
            self.transactions_run += 1
            self.statements_run += txn.statements
            if self.on_transaction is not None:
                self.on_transaction(name, write, elapsed)
            await _run_after_commit(name, txn)
            return result

    async def _run_transaction_marked(
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
        token = _current_interaction.set(name)
        try:
            return await self._run_transaction(name, func, args, kwargs, write, isolation, durable, single_statement)
        finally:
            _current_interaction.reset(token)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._close()

    # One-statement conveniences; each is its own interaction (a read: a single statement, see
    # `run_interaction`).

    async def execute(self, name: str, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one writing statement in its own transaction; returns the affected row count."""

        async def run(txn: Transaction) -> int:
            await txn.execute(sql, params)
            return txn.rowcount

        return await self.run_interaction(name, run)

    async def fetch_one(self, name: str, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return await self.run_interaction(name, _fetch_one, sql, params, write=False, single_statement=True)

    async def fetch_all(self, name: str, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self.run_interaction(name, _fetch_all, sql, params, write=False, single_statement=True)

    async def fetch_value(self, name: str, sql: str, params: Sequence[Any] = ()) -> Any:
        return await self.run_interaction(name, _fetch_value, sql, params, write=False, single_statement=True)

    async def simple_select_one(
        self, table: str, keyvalues: Mapping[str, Any], retcols: Sequence[str], *, allow_none: bool = False
    ) -> dict[str, Any] | None:
        return await self.run_interaction(
            f"select_one_{table}",
            Transaction.select_one,
            table,
            keyvalues,
            retcols,
            allow_none=allow_none,
            write=False,
        )

    async def simple_select_list(
        self,
        table: str,
        keyvalues: Mapping[str, Any],
        retcols: Sequence[str],
        *,
        order_by: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        return await self.run_interaction(
            f"select_list_{table}",
            Transaction.select_list,
            table,
            keyvalues,
            retcols,
            order_by=order_by,
            write=False,
        )

    async def simple_insert(self, table: str, values: Mapping[str, Any]) -> None:
        await self.run_interaction(f"insert_{table}", Transaction.insert, table, values)

    async def simple_upsert(
        self,
        table: str,
        keyvalues: Mapping[str, Any],
        values: Mapping[str, Any],
        insertion_values: Mapping[str, Any] | None = None,
    ) -> None:
        await self.run_interaction(
            f"upsert_{table}", Transaction.upsert, table, keyvalues, values, insertion_values
        )

    async def simple_update(
        self, table: str, keyvalues: Mapping[str, Any], updatevalues: Mapping[str, Any]
    ) -> int:
        return await self.run_interaction(
            f"update_{table}", Transaction.update, table, keyvalues, updatevalues
        )

    async def simple_delete(self, table: str, keyvalues: Mapping[str, Any]) -> int:
        return await self.run_interaction(f"delete_{table}", Transaction.delete, table, keyvalues)


async def _fetch_one(txn: Transaction, sql: str, params: Sequence[Any]) -> Row | None:
    return await txn.fetch_one(sql, params)


async def _fetch_all(txn: Transaction, sql: str, params: Sequence[Any]) -> list[Row]:
    return await txn.fetch_all(sql, params)


async def _fetch_value(txn: Transaction, sql: str, params: Sequence[Any]) -> Any:
    return await txn.fetch_value(sql, params)


async def _run_after_commit(name: str, txn: Transaction) -> None:
    # The transaction is already durable: a failing callback must not make the caller believe
    # otherwise, so it is logged rather than raised.
    for callback, args in txn._after_commit:
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("after-commit callback %r of transaction %s failed", callback, name)
