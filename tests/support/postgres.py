"""PostgreSQL for tests: one brand-new database per test, on whichever server can be had.

Where the server comes from, in order:
1. env `HS_TEST_POSTGRES`, a libpq DSN (it must answer: a configured server that is down is an error);
2. 127.0.0.1:5432 as user `postgres` with trust authentication;
3. a throwaway cluster made with `initdb`/`pg_ctl` in a temporary directory on a free port,
   stopped and deleted at the end of the session.
With none of these, tests needing PostgreSQL are skipped, except under `CI=true`, where that is
an error: CI must exercise both engines.

Use the fixtures by importing them into a conftest: `from tests.support.postgres import
postgres_server, postgres_dsn`.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

ENV_DSN = "HS_TEST_POSTGRES"
LOCAL_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server could be found or started."""


@dataclass
class PostgresServer:
    """A server tests may create databases on, through `admin_dsn` (a superuser DSN)."""

    admin_dsn: str
    # Set when this process started the cluster and so must stop it.
    cluster_dir: Path | None = None
    _run_as: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.cluster_dir is None:
            return
        data_dir = self.cluster_dir / "data"
        pg_ctl = _find_binary("pg_ctl")
        if pg_ctl is not None and data_dir.exists():
            subprocess.run(
                [*self._run_as, pg_ctl, "-D", str(data_dir), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.cluster_dir, ignore_errors=True)
        self.cluster_dir = None


def answers(dsn: str, timeout: int = 3) -> bool:
    """Whether a PostgreSQL server accepts a connection with this DSN."""
    try:
        with psycopg.connect(dsn, connect_timeout=timeout, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # Debian keeps server binaries off PATH, one directory per major version; prefer the newest.
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    candidates.sort(key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0, reverse=True)
    return candidates[0] if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unprivileged_user() -> tuple[list[str], int, int]:
    """How to run a command as a non-root user (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return [], os.getuid(), os.getgid()
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        prefix = [
            "setpriv",
            f"--reuid={entry.pw_uid}",
            f"--regid={entry.pw_gid}",
            "--clear-groups",
            "--reset-env",
        ]
        return prefix, entry.pw_uid, entry.pw_gid
    raise PostgresUnavailableError(
        "running as root and found no postgres or nobody user to run PostgreSQL as"
    )


def start_throwaway_cluster() -> PostgresServer:
    """initdb + pg_ctl start a private cluster on a free loopback port; stop() removes it."""
    initdb, pg_ctl = _find_binary("initdb"), _find_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise PostgresUnavailableError("initdb/pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin")
    run_as, uid, gid = _unprivileged_user()
    cluster_dir = Path(tempfile.mkdtemp(prefix="hs-test-pg-"))
    os.chown(cluster_dir, uid, gid)
    server = PostgresServer(admin_dsn="", cluster_dir=cluster_dir, _run_as=run_as)
    data_dir, log_file = cluster_dir / "data", cluster_dir / "server.log"
    port = _free_port()
    try:
        subprocess.run(
            [
                *run_as,
                initdb,
                "-D",
                str(data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            capture_output=True,
            check=True,
        )
        # fsync off: the cluster dies with the test session, durability buys nothing here.
        options = f"-p {port} -k {cluster_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [
                *run_as,
                pg_ctl,
                "-D",
                str(data_dir),
                "-l",
                str(log_file),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            capture_output=True,
            check=True,
        )
    except subprocess.CalledProcessError as error:
        output = (error.stdout or b"").decode(errors="replace") + (error.stderr or b"").decode(
            errors="replace"
        )
        server.stop()
        raise PostgresUnavailableError(f"could not start a throwaway PostgreSQL: {output.strip()}") from error
    atexit.register(server.stop)
    server.admin_dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    return server


_server: PostgresServer | None = None
_searched = False


def get_postgres_server() -> PostgresServer | None:
    """The server for this test process (found or started once), or None if none can be had.

    Raises instead of returning None when `CI=true`, or when HS_TEST_POSTGRES names a server
    that does not answer.
    """
    global _server, _searched
    if _searched:
        return _server
    _searched = True
    configured = os.environ.get(ENV_DSN)
    if configured:
        if not answers(configured):
            raise PostgresUnavailableError(f"{ENV_DSN}={configured!r} does not accept connections")
        _server = PostgresServer(configured)
    elif answers(LOCAL_DSN):
        _server = PostgresServer(LOCAL_DSN)
    else:
        try:
            _server = start_throwaway_cluster()
        except PostgresUnavailableError:
            if os.environ.get("CI", "").lower() == "true":
                raise
            _server = None
    return _server


def _drop_database(server: PostgresServer, name: str) -> None:
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        # FORCE: a test that leaked a connection must not leak the database too.
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# Dropping a database takes a few hundred milliseconds; tests hand that to this thread.
_dropper = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-dropper")


def wait_for_pending_drops() -> None:
    """Block until every database handed to the dropper so far is gone (the dropper is FIFO)."""
    _dropper.submit(lambda: None).result()


@contextlib.contextmanager
def fresh_database(server: PostgresServer, template: str = "template0", *,
                   dropper: concurrent.futures.Executor | None = None) -> Iterator[str]:
    """Create a database with a random name (a copy of `template`), yield its DSN, then drop it
    (in `dropper`, by default the shared background thread)."""
    name = f"hs_test_{os.getpid()}_{secrets.token_hex(6)}"
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} ENCODING 'UTF8'").format(sql.Identifier(name), sql.Identifier(template))
        )
    try:
        yield make_conninfo(server.admin_dsn, dbname=name)
    finally:
        (dropper or _dropper).submit(_drop_database, server, name)


def migrated_template(server: PostgresServer) -> str:
    """A database holding the current schema, made once per test session, to copy for each test.

    Copying a migrated template is several times faster than migrating an empty database per test.
    """
    import asyncio

    from storage.engine import create_database

    name = f"hs_template_{os.getpid()}_{secrets.token_hex(6)}"
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name)))

    async def migrate() -> None:
        dsn = make_conninfo(server.admin_dsn, dbname=name)
        db = await create_database({"engine": "postgres", "dsn": dsn, "pool_min": 1, "pool_max": 1})
        await db.close()

    asyncio.run(migrate())
    atexit.register(_drop_database, server, name)
    return name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drop_databases_of_dead_runs(server: PostgresServer) -> int:
    """Drop the test databases whose creating process is gone (a run that was killed, or a worker
    that exited before its dropper finished): they would pile up and slow every CREATE DATABASE.
    Names carry the creator's PID; a database of a live process (another worker) is never touched.
    One worker does it (the others, starting at the same moment, find the lock taken and go on)."""
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        if not conn.execute("SELECT pg_try_advisory_lock(hashtext('hs_test_drop_dead_runs'))").fetchone()[0]:
            return 0
        names = [row[0] for row in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'hs\\_test\\_%' OR datname LIKE 'hs\\_template\\_%'")]
        dropped = 0
        for name in names:
            parts = name.split("_")
            pid = parts[2] if len(parts) >= 4 else ""
            if pid.isdigit() and _pid_alive(int(pid)):
                continue
            _drop_database(server, name)
            dropped += 1
    return dropped


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = get_postgres_server()
    if server is None:
        pytest.skip(f"no PostgreSQL: set {ENV_DSN}, run one on 127.0.0.1:5432, or install initdb/pg_ctl")
    drop_databases_of_dead_runs(server)
    yield server
    wait_for_pending_drops()
    server.stop()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A DSN for a brand-new, empty database that exists for this one test."""
    with fresh_database(postgres_server) as dsn:
        yield dsn


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> str:
    return migrated_template(postgres_server)


@pytest.fixture
def migrated_postgres_dsn(postgres_server: PostgresServer, postgres_template: str) -> Iterator[str]:
    """A DSN for a new database that already has the current schema, for this one test."""
    with fresh_database(postgres_server, template=postgres_template) as dsn:
        yield dsn
