"""The PostgreSQL test support: isolated throwaway databases, and a throwaway cluster as fallback."""

from __future__ import annotations

import concurrent.futures

import psycopg
import pytest

from tests.support.postgres import (
    PostgresServer,
    PostgresUnavailableError,
    answers,
    fresh_database,
    start_throwaway_cluster,
)


def database_exists(server: PostgresServer, dsn: str) -> bool:
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def test_each_fresh_database_is_new_empty_and_dropped_afterwards(postgres_server: PostgresServer) -> None:
    # Its own dropper: the shared one may hold every database this worker's earlier tests used.
    dropper = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    with (fresh_database(postgres_server, dropper=dropper) as first,
          fresh_database(postgres_server, dropper=dropper) as second):
        assert first != second
        with psycopg.connect(first, autocommit=True) as conn:
            conn.execute("CREATE TABLE only_here (x int)")
        with psycopg.connect(second) as conn:
            tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
            assert tables == (0,)
        # A connection left open must not stop the drop.
        leaked = psycopg.connect(first)
    dropper.shutdown(wait=True)
    assert not database_exists(postgres_server, first)
    assert not database_exists(postgres_server, second)
    leaked.close()


def test_a_throwaway_cluster_starts_serves_and_disappears() -> None:
    try:
        server = start_throwaway_cluster()
    except PostgresUnavailableError as error:
        pytest.skip(f"cannot start a throwaway cluster here: {error}")
    try:
        assert answers(server.admin_dsn)
        with fresh_database(server) as dsn, psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
        cluster_dir = server.cluster_dir
    finally:
        server.stop()
    assert cluster_dir is not None and not cluster_dir.exists()
    assert not answers(server.admin_dsn, timeout=1)
