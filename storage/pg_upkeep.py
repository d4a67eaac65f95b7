"""Table upkeep on a PostgreSQL whose autovacuum is off: what autovacuum would do, done by us.

Without autovacuum nothing refreshes the planner's statistics or clears dead rows. The planner
then guesses that `room_id = ?` matches half a percent of any table, whatever the room's size,
and picks plans whose cost grows with the room: a page of 1,000 events out of 5,000 took 26 ms
instead of 2.5 once the tables were analyzed (EXPLAIN ANALYZE on a fresh benchmark database).
Tables whose rows we update often (stream positions, device inboxes) also bloat.

So when the server finds `autovacuum = off` it checks its tables every `interval_s` seconds and
runs `ANALYZE` or `VACUUM` on those past autovacuum's own thresholds, read from the server's
settings (`autovacuum_analyze_threshold` and `_scale_factor`, the same for vacuum and for vacuum
after inserts). Per-table storage parameters are not read. Vacuum is throttled like autovacuum's
(`vacuum_cost_delay` set to `autovacuum_vacuum_cost_delay`). Each round opens its own
connection and closes it, so nothing is held between rounds and no statement of it goes through
the pool. With autovacuum on this does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Thresholds:
    """autovacuum's trigger points: an action is due past `threshold + scale_factor * rows`."""

    analyze_threshold: int = 50
    analyze_scale_factor: float = 0.1
    vacuum_threshold: int = 50
    vacuum_scale_factor: float = 0.2
    insert_threshold: int = 1000  # -1: vacuum is never triggered by inserts
    insert_scale_factor: float = 0.2


@dataclass(frozen=True)
class TableActivity:
    name: str
    rows: float  # pg_class.reltuples; -1 when never vacuumed or analyzed
    modified_since_analyze: int
    dead_rows: int
    inserted_since_vacuum: int


def actions_due(table: TableActivity, limits: Thresholds) -> tuple[bool, bool]:
    """(vacuum, analyze): what autovacuum would run on this table now."""
    rows = max(table.rows, 0.0)
    analyze = table.modified_since_analyze > limits.analyze_threshold + limits.analyze_scale_factor * rows
    vacuum = table.dead_rows > limits.vacuum_threshold + limits.vacuum_scale_factor * rows or (
        limits.insert_threshold >= 0
        and table.inserted_since_vacuum > limits.insert_threshold + limits.insert_scale_factor * rows)
    return vacuum, analyze


_SETTINGS = ("autovacuum", "autovacuum_analyze_threshold", "autovacuum_analyze_scale_factor",
             "autovacuum_vacuum_threshold", "autovacuum_vacuum_scale_factor",
             "autovacuum_vacuum_insert_threshold", "autovacuum_vacuum_insert_scale_factor",
             "autovacuum_vacuum_cost_delay")

_ACTIVITY = (
    "SELECT s.relname, c.reltuples, s.n_mod_since_analyze, s.n_dead_tup, s.n_ins_since_vacuum"
    " FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
    " WHERE s.schemaname = current_schema() ORDER BY s.relname"
)


class TableUpkeep:
    """The rounds described above, as a background service (`start` / `stop`)."""

    def __init__(self, dsn: str, interval_s: float):
        self._dsn = dsn
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._interval_s > 0:
            self._task = asyncio.create_task(self._run(), name="postgres-table-upkeep")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        warned = False
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                done = await self.run_once()
            except (psycopg.Error, OSError) as error:
                logger.warning("table upkeep failed, tried again in %.0f s: %s", self._interval_s, error)
                continue
            if done is None:
                return  # autovacuum is on (a server's setting, changed only by a restart of it)
            if not warned:
                logger.warning("PostgreSQL's autovacuum is off: this server analyzes and vacuums its own tables"
                               " at autovacuum's thresholds, checking every %.0f s (database.upkeep_interval_s)",
                               self._interval_s)
                warned = True

    async def run_once(self, *, even_with_autovacuum: bool = False) -> list[tuple[str, str]] | None:
        """One round: (table, "VACUUM" / "ANALYZE" / "VACUUM ANALYZE") for what it ran; None, having
        run nothing, when autovacuum is on."""
        done: list[tuple[str, str]] = []
        async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True) as conn:
            settings = await _read_settings(conn)
            if settings.get("autovacuum") != "off" and not even_with_autovacuum:
                return None
            limits = _thresholds_of(settings)
            cursor = await conn.execute(_ACTIVITY)
            tables = [TableActivity(name, float(rows), int(modified or 0), int(dead or 0), int(inserted or 0))
                      for name, rows, modified, dead, inserted in await cursor.fetchall()]
            delay = settings.get("autovacuum_vacuum_cost_delay", "-1")
            if not delay.startswith("-"):  # -1: autovacuum uses vacuum_cost_delay, as we then do
                await conn.execute(sql.SQL("SET vacuum_cost_delay = {}").format(sql.Literal(delay)))
            for table in tables:
                vacuum, analyze = actions_due(table, limits)
                if not (vacuum or analyze):
                    continue
                action = "VACUUM ANALYZE" if vacuum and analyze else "VACUUM" if vacuum else "ANALYZE"
                started = time.monotonic()
                await conn.execute(sql.SQL(action + " {}").format(sql.Identifier(table.name)))
                logger.info("%s %s: %d rows, %d modified since analyze, %d dead (%.0f ms)", action, table.name,
                            max(table.rows, 0), table.modified_since_analyze, table.dead_rows,
                            (time.monotonic() - started) * 1000)
                done.append((table.name, action))
        return done


async def _read_settings(conn: psycopg.AsyncConnection[object]) -> dict[str, str]:
    cursor = await conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(_SETTINGS),))
    return {str(name): str(value) for name, value in await cursor.fetchall()}


def _thresholds_of(settings: dict[str, str]) -> Thresholds:
    defaults = Thresholds()

    def number(name: str, default: float) -> float:
        try:
            return float(settings[name])
        except (KeyError, ValueError):
            return default

    return Thresholds(
        analyze_threshold=int(number("autovacuum_analyze_threshold", defaults.analyze_threshold)),
        analyze_scale_factor=number("autovacuum_analyze_scale_factor", defaults.analyze_scale_factor),
        vacuum_threshold=int(number("autovacuum_vacuum_threshold", defaults.vacuum_threshold)),
        vacuum_scale_factor=number("autovacuum_vacuum_scale_factor", defaults.vacuum_scale_factor),
        insert_threshold=int(number("autovacuum_vacuum_insert_threshold", defaults.insert_threshold)),
        insert_scale_factor=number("autovacuum_vacuum_insert_scale_factor", defaults.insert_scale_factor),
    )
