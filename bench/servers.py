"""Start our homeserver or Synapse on a free loopback port with a fresh database, for benchmarks.

Both servers get rate limits off, cheap bcrypt (4 rounds) so that registering users measures
the server rather than password hashing, and a shared secret for the admin registration API.
With ``db="postgres"`` each start creates its own database on 127.0.0.1:5432 (user postgres,
``C`` collation as Synapse demands) and drops it again on stop.

    with start_server("synapse", "sqlite") as server:
        print(server.url, server.shared_secret, server.pid)
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts" / "synapse"))
import run_synapse  # noqa: E402  (a script directory, not a package)

SERVER_KINDS = ("ours", "synapse")
DB_KINDS = ("sqlite", "postgres")
POSTGRES_ADMIN_DSN = os.environ.get("BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
STARTUP_TIMEOUT_SECONDS = 120.0
BCRYPT_ROUNDS = 4


@dataclass
class RunningServer:
    kind: str
    url: str
    shared_secret: str
    process: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, SIGKILL after ``timeout``, then drop the database and the work directory."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for cleanup in reversed(self.cleanups):
            cleanup()
        self.cleanups.clear()


# --- PostgreSQL: one throwaway database per server start ------------------------------------------


def postgres_dsn(database: str) -> str:
    """The admin DSN with its database name swapped for ``database``."""
    base, _, _ = POSTGRES_ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


def create_postgres_database(prefix: str) -> tuple[str, Callable[[], None]]:
    """Create an empty UTF8/C-collated database; returns its name and a function that drops it."""
    import psycopg

    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(
            f"CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        )

    def drop() -> None:
        with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return name, drop


def _postgres_params(database: str) -> dict[str, object]:
    """Synapse wants libpq keywords rather than a URL; derive them from the admin DSN."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(POSTGRES_ADMIN_DSN)
    params["dbname"] = database
    return {
        "user": params.get("user", "postgres"),
        "password": params.get("password"),
        "host": params.get("host", "127.0.0.1"),
        "port": int(params.get("port", 5432)),
        "database": database,
    }


# --- waiting for a server -------------------------------------------------------------------------


def wait_until_serving(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode} during start-up")
        try:
            with urllib.request.urlopen(f"{url}/_matrix/client/versions", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer /versions within {timeout:.0f}s")


def _launch(kind: str, command: list[str], cwd: Path, workdir: Path, secret: str, url: str,
            cleanups: list[Callable[[], None]]) -> RunningServer:
    log_path = workdir / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    server = RunningServer(kind, url, secret, process, workdir, log_path, cleanups)
    try:
        wait_until_serving(url, process, STARTUP_TIMEOUT_SECONDS)
    except Exception:
        print(server.log_tail(), file=sys.stderr)
        server.stop()
        raise
    return server


# --- our homeserver -------------------------------------------------------------------------------


def start_ours(db: str, workdir: Path, cleanups: list[Callable[[], None]],
               profile: Path | None = None) -> RunningServer:
    """`homeserver generate-config --set ...` then `homeserver run`, as scripts/synctest_local.py does;
    with ``profile``, under cProfile (written there when the server exits on SIGTERM)."""
    port, metrics_port = run_synapse.free_port(), run_synapse.free_port()
    overrides = [
        f"listeners.0.port={port}",
        f"listeners.1={{host: 127.0.0.1, port: {metrics_port}, resources: [metrics]}}",  # metrics are opt-in
        "registration.enabled=true",
        "rate_limits.enabled=false",
        f"passwords.bcrypt_rounds={BCRYPT_ROUNDS}",
    ]
    if db == "postgres":
        name, drop = create_postgres_database("bench_ours")
        cleanups.append(drop)
        overrides += ["database.engine=postgres", f"database.dsn={postgres_dsn(name)}"]
    command = [sys.executable, "-m", "homeserver", "generate-config", "--server-name", f"localhost:{port}",
               "--data-dir", str(workdir), "--generate-keys"]
    for override in overrides:
        command += ["--set", override]
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    config_path = workdir / "homeserver.yaml"
    secret = yaml.safe_load(config_path.read_text())["registration"]["shared_secret"]
    profiler = ["-m", "cProfile", "-o", str(profile.resolve())] if profile else []
    run = [sys.executable, *profiler, "-m", "homeserver", "run", "--config", str(config_path)]
    return _launch("ours", run, ROOT, workdir, secret, f"http://127.0.0.1:{port}", cleanups)


# --- Synapse --------------------------------------------------------------------------------------


def ensure_synapse_postgres_driver(python: Path) -> None:
    """Synapse talks to PostgreSQL through psycopg2, which plain matrix-synapse does not pull in."""
    if subprocess.run([str(python), "-c", "import psycopg2"], capture_output=True).returncode != 0:
        print(f"installing psycopg2-binary for Synapse ({python}) ...", file=sys.stderr, flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "psycopg2-binary"], check=True)


def start_synapse(db: str, workdir: Path, cleanups: list[Callable[[], None]],
                  profile: Path | None = None) -> RunningServer:
    """run_synapse's loopback config (rate limits off) with our database choice and bcrypt rounds."""
    if profile:
        raise ValueError("profiling is only wired up for our server")
    python = run_synapse.ensure_synapse_installed()
    port = run_synapse.free_port()
    secret = secrets.token_hex(16)
    config = run_synapse.synapse_config(workdir, port, secret)
    config["bcrypt_rounds"] = BCRYPT_ROUNDS
    if db == "postgres":
        ensure_synapse_postgres_driver(python)
        name, drop = create_postgres_database("bench_synapse")
        cleanups.append(drop)
        args = {k: v for k, v in _postgres_params(name).items() if v is not None}
        config["database"] = {"name": "psycopg2", "args": {**args, "cp_min": 5, "cp_max": 10}}
    config_path = workdir / "homeserver.yaml"
    config_path.write_text(yaml.safe_dump(config))
    (workdir / "log.yaml").write_text(yaml.safe_dump(run_synapse._log_config(workdir)))
    module = "synapse.app.homeserver"
    subprocess.run([str(python), "-m", module, "-c", str(config_path), "--generate-keys"],
                   check=True, stdout=subprocess.DEVNULL)
    run = [str(python), "-m", module, "-c", str(config_path)]
    return _launch("synapse", run, workdir, workdir, secret, f"http://127.0.0.1:{port}", cleanups)


_STARTERS = {"ours": start_ours, "synapse": start_synapse}


@contextmanager
def start_server(
    kind: str, db: str = "sqlite", *, keep_workdir: bool = False, profile: Path | None = None
) -> Iterator[RunningServer]:
    """Start a fresh ``kind`` server on ``db``; stop it and remove every trace on exit."""
    if kind not in _STARTERS:
        raise ValueError(f"unknown server {kind!r}; choose from {', '.join(SERVER_KINDS)}")
    if db not in DB_KINDS:
        raise ValueError(f"unknown database {db!r}; choose from {', '.join(DB_KINDS)}")
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-")).resolve()
    cleanups: list[Callable[[], None]] = []
    if not keep_workdir:
        cleanups.append(lambda: shutil.rmtree(workdir, ignore_errors=True))
    try:
        server = _STARTERS[kind](db, workdir, cleanups, profile)
    except BaseException:
        for cleanup in reversed(cleanups):
            cleanup()
        raise
    try:
        yield server
    finally:
        server.stop()


# --- memory ---------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(child) for child in f.read().split()]
    except OSError:
        pass
    return kids


def _high_water_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakRss:
    """Peak resident memory of a process and its descendants, from the kernel's VmHWM.

    VmHWM is each process's own high-water mark, so nothing between samples is missed; sampling
    only serves to notice children (and to keep the last mark of ones that have exited). The sum
    of per-process peaks can overstate a simultaneous peak, equally for both servers.
    """

    def __init__(self, pid: int) -> None:
        self.root = pid
        self.marks_kib: dict[int, int] = {}

    def sample(self) -> None:
        pending = [self.root]
        seen: set[int] = set()
        while pending and len(seen) < 10_000:
            pid = pending.pop()
            if pid in seen:
                continue
            seen.add(pid)
            mark = _high_water_kib(pid)
            if mark is not None:
                self.marks_kib[pid] = max(mark, self.marks_kib.get(pid, 0))
            pending += _children(pid)

    @property
    def peak_mib(self) -> float | None:
        return sum(self.marks_kib.values()) / 1024 if self.marks_kib else None
