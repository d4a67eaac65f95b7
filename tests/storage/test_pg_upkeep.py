"""Table upkeep on PostgreSQL without autovacuum: autovacuum's thresholds, and a real round."""

from __future__ import annotations

import psycopg
import pytest

from storage.pg_upkeep import TableActivity, TableUpkeep, Thresholds, actions_due

DEFAULTS = Thresholds()


@pytest.mark.parametrize(("table", "expected"), [
    # A table never analyzed (reltuples -1) counts as empty: 51 changed rows are enough.
    (TableActivity("t", -1, 51, 0, 51), (False, True)),
    (TableActivity("t", -1, 50, 0, 50), (False, False)),
    # 10,000 rows: analyze past 50 + 1,000 changes, vacuum past 50 + 2,000 dead rows.
    (TableActivity("t", 10_000, 1_050, 0, 0), (False, False)),
    (TableActivity("t", 10_000, 1_051, 0, 0), (False, True)),
    (TableActivity("t", 10_000, 0, 2_051, 0), (True, False)),
    (TableActivity("t", 10_000, 2_100, 2_100, 0), (True, True)),
    # Inserts alone call for a vacuum past 1,000 + 20% (visibility map, index-only scans).
    (TableActivity("t", 10_000, 0, 0, 3_001), (True, False)),
    (TableActivity("t", 10_000, 0, 0, 3_000), (False, False)),
])
def test_actions_follow_autovacuums_thresholds(table: TableActivity, expected: tuple[bool, bool]) -> None:
    assert actions_due(table, DEFAULTS) == expected


def test_inserts_trigger_nothing_when_their_threshold_is_off() -> None:
    limits = Thresholds(insert_threshold=-1)
    assert actions_due(TableActivity("t", 0, 0, 0, 1_000_000), limits) == (False, False)


def stats(dsn: str, table: str) -> tuple[int, int, float]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute("SELECT s.analyze_count, s.vacuum_count, c.reltuples FROM pg_stat_user_tables s"
                           " JOIN pg_class c ON c.oid = s.relid WHERE s.relname = %s", (table,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), float(row[2])


async def test_a_round_analyzes_and_vacuums_the_tables_past_their_thresholds(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE busy (id INT PRIMARY KEY, v TEXT)")
        conn.execute("CREATE TABLE quiet (id INT PRIMARY KEY)")
        conn.execute("INSERT INTO busy SELECT g, 'x' FROM generate_series(1, 5000) g")
        conn.execute("INSERT INTO quiet VALUES (1), (2)")
        # The counters a round reads are flushed by the backend that made the changes.
        conn.execute("SELECT pg_stat_force_next_flush()")
    upkeep = TableUpkeep(postgres_dsn, interval_s=60)
    done = await upkeep.run_once(even_with_autovacuum=True)
    assert done is not None
    # 5,000 inserts into a table never analyzed: past both thresholds. Two rows: neither.
    assert dict(done) == {"busy": "VACUUM ANALYZE"}
    analyzed, vacuumed, rows = stats(postgres_dsn, "busy")
    assert (analyzed, vacuumed, rows) == (1, 1, 5000)
    assert stats(postgres_dsn, "quiet")[:2] == (0, 0)

    # Deleting a fifth of the rows leaves dead rows under the vacuum threshold (50 + 20% of 5,000)
    # and changes over the analyze one (50 + 10%).
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM busy WHERE id <= 1000")
        conn.execute("SELECT pg_stat_force_next_flush()")
    assert dict(await upkeep.run_once(even_with_autovacuum=True) or []) == {"busy": "ANALYZE"}
    assert stats(postgres_dsn, "busy") == (2, 1, 4000)


async def test_the_service_starts_and_stops_without_a_round(postgres_dsn: str) -> None:
    upkeep = TableUpkeep(postgres_dsn, interval_s=3600)
    await upkeep.start()
    await upkeep.stop()
    # Interval 0: no task at all.
    off = TableUpkeep(postgres_dsn, interval_s=0)
    await off.start()
    assert off._task is None
    await off.stop()
