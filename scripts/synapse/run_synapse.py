"""Run a real Synapse on loopback, for synctest and benchmarks.

    run_synapse.py synctest [SYNCTEST ARGS...]   start Synapse, run synctest against it, stop it;
                                                 exits with synctest's status
    run_synapse.py start [--port N] [--workdir D] start Synapse detached and print
                                                 "url=... pid=... workdir=... secret=..."
    run_synapse.py stop PID                      stop a Synapse started with `start`

Synapse runs from the test environment when that has it (`make test` installs it there), else
from a virtualenv of its own (.venv-synapse in the project root, created on first use) so its
Twisted dependency tree does not leak into the homeserver's environment.
Benchmarks can import this module and call ``start_synapse`` / ``SynapseServer.stop``.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SYNAPSE_VENV = PROJECT_ROOT / ".venv-synapse"
STARTUP_TIMEOUT_SECONDS = 120.0

# Generous enough that no test or benchmark is ever throttled, while keeping the config valid.
_UNLIMITED = {"per_second": 100000, "burst_count": 100000}
_RATE_LIMITS = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_registration_token_validity": _UNLIMITED,
    "rc_login": {"address": _UNLIMITED, "account": _UNLIMITED, "failed_attempts": _UNLIMITED},
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_invites": {"per_room": _UNLIMITED, "per_user": _UNLIMITED, "per_issuer": _UNLIMITED},
    "rc_admin_redaction": _UNLIMITED,
    "rc_third_party_invite": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_key_requests": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_delayed_event_mgmt": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_profile": _UNLIMITED,
    "rc_user_directory": _UNLIMITED,
    "rc_federation": {"window_size": 1000, "sleep_limit": 100000, "reject_limit": 100000, "concurrent": 1000},
}


@dataclass
class SynapseServer:
    url: str
    pid: int
    workdir: Path
    registration_shared_secret: str
    process: subprocess.Popen[bytes] | None = None
    # Where /_matrix/federation and /_matrix/key are served; None: on ``url`` with the client API.
    federation_url: str | None = None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if Synapse has not exited within ``timeout`` seconds."""
        stop_pid(self.pid, timeout)
        if self.process is not None:
            self.process.wait()


def _imports_synapse(python: str | Path) -> bool:
    return subprocess.run([str(python), "-c", "import synapse.app.homeserver"], capture_output=True).returncode == 0


def find_synapse_python() -> Path | None:
    """The Python to run Synapse with, without installing anything: $SYNAPSE_PYTHON; else this
    interpreter when it imports Synapse (the test extra installs it, so `make test` needs no
    second install); else .venv-synapse when Synapse is installed there; else None."""
    if os.environ.get("SYNAPSE_PYTHON"):
        return Path(os.environ["SYNAPSE_PYTHON"])
    if _imports_synapse(sys.executable):
        return Path(sys.executable)
    python = SYNAPSE_VENV / "bin" / "python"
    return python if python.exists() and _imports_synapse(python) else None


def ensure_synapse_installed() -> Path:
    """`find_synapse_python`, else .venv-synapse created and filled now.

    The install runs under a file lock: parallel test workers or benchmarks that all want Synapse
    must not run pip over files another one's Synapse has mapped (that ends in SIGBUS)."""
    found = find_synapse_python()
    if found is not None:
        return found
    python = SYNAPSE_VENV / "bin" / "python"
    with open(PROJECT_ROOT / ".venv-synapse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(SYNAPSE_VENV)], check=True)
        if not _imports_synapse(python):
            print("installing matrix-synapse into .venv-synapse ...", file=sys.stderr, flush=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "matrix-synapse"], check=True)
    return python


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listener(port: int, names: list[str]) -> dict:
    return {
        "port": port,
        "bind_addresses": ["127.0.0.1"],
        "type": "http",
        "tls": False,
        "x_forwarded": False,
        "resources": [{"names": names, "compress": False}],
    }


def synapse_config(workdir: Path, port: int, shared_secret: str, federation_port: int | None = None) -> dict:
    """A loopback-only, SQLite, no-TLS Synapse with open registration and no rate limits.

    With ``federation_port`` the server-server API gets a listener of its own, as in a deployment
    with a separate federation port; otherwise one listener serves everything.
    """
    server_name = f"localhost:{port}"
    if federation_port is None:
        listeners = [_listener(port, ["client", "federation", "keys", "media"])]
    else:
        listeners = [_listener(port, ["client", "media"]), _listener(federation_port, ["federation", "keys"])]
    return {
        "server_name": server_name,
        # Setting public_baseurl is what makes Synapse serve /.well-known/matrix/client.
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "pid_file": str(workdir / "homeserver.pid"),
        "listeners": listeners,
        "database": {"name": "sqlite3", "args": {"database": str(workdir / "homeserver.db")}},
        "log_config": str(workdir / "log.yaml"),
        "media_store_path": str(workdir / "media_store"),
        "signing_key_path": str(workdir / "signing.key"),
        "registration_shared_secret": shared_secret,
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "macaroon_secret_key": secrets.token_hex(16),
        "form_secret": secrets.token_hex(16),
        "report_stats": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "presence": {"enabled": True},
        # Synapse refuses to publish rooms to the directory by default; our server lets room admins
        # publish, so the directory cases test the same path on both.
        "room_list_publication_rules": [{"action": "allow"}],
        # The guest and login-token cases need both enabled on both servers.
        "allow_guest_access": True,
        "login_via_existing_session": {"enabled": True, "require_ui_auth": True},
        **_RATE_LIMITS,
    }


def _log_config(workdir: Path) -> dict:
    return {
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "plain",
                "filename": str(workdir / "homeserver.log"),
            }
        },
        "root": {"level": "INFO", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }


def wait_until_serving(url: str, process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"Synapse exited with status {process.returncode} during start-up")
        try:
            with urllib.request.urlopen(f"{url}/_matrix/client/versions", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"Synapse did not answer /versions within {timeout:.0f}s")


def start_synapse(
    workdir: Path | None = None, port: int | None = None, *, detach: bool = False,
    extra_config: dict | None = None, separate_federation_listener: bool = False,
) -> SynapseServer:
    """Configure and start Synapse; returns once /versions answers 200.

    ``extra_config`` is merged over the generated config (e.g. ``app_service_config_files``).
    ``separate_federation_listener`` serves the server-server API on a port of its own
    (``SynapseServer.federation_url``).
    """
    python = ensure_synapse_installed()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="synapse-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    federation_port = free_port() if separate_federation_listener else None
    secret = secrets.token_hex(16)
    config_path = workdir / "homeserver.yaml"
    config = synapse_config(workdir, port, secret, federation_port)
    config_path.write_text(yaml.safe_dump({**config, **(extra_config or {})}))
    (workdir / "log.yaml").write_text(yaml.safe_dump(_log_config(workdir)))
    module = "synapse.app.homeserver"
    subprocess.run(
        [str(python), "-m", module, "-c", str(config_path), "--generate-keys"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    console = (workdir / "console.log").open("ab")
    process = subprocess.Popen(
        [str(python), "-m", module, "-c", str(config_path)],
        cwd=workdir,
        stdout=console,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=detach,
    )
    console.close()
    url = f"http://127.0.0.1:{port}"
    federation_url = f"http://127.0.0.1:{federation_port}" if federation_port else None
    server = SynapseServer(url, process.pid, workdir, secret, None if detach else process, federation_url)
    try:
        wait_until_serving(url, process, STARTUP_TIMEOUT_SECONDS)
    except Exception:
        server.stop()
        print((workdir / "console.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    return server


def stop_pid(pid: int, timeout: float = 30.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # Reaps it if it is our child; otherwise only probes whether it still exists.
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def run_synctest(server: SynapseServer, extra: list[str]) -> int:
    command = [
        sys.executable,
        "-m",
        "synctest",
        "--base-url",
        server.url,
        "--federation-base-url",
        server.federation_url or server.url,
        # One argument: a secret that starts with "-" would otherwise read as an option.
        f"--registration-shared-secret={server.registration_shared_secret}",
        *extra,
    ]
    return subprocess.run(command, cwd=PROJECT_ROOT).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("synctest", help="start Synapse, run synctest, stop Synapse")
    run.add_argument("--keep-workdir", action="store_true", help="keep the data dir and logs afterwards")
    start = sub.add_parser("start", help="start Synapse detached and print its URL and pid")
    start.add_argument("--port", type=int)
    start.add_argument("--workdir", type=Path)
    stop = sub.add_parser("stop", help="stop a detached Synapse")
    stop.add_argument("pid", type=int)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("synctest", "start", "stop", "-h", "--help"):
        argv.insert(0, "synctest")  # bare synctest flags, e.g. `run_synapse.py --filter cors`
    args, extra = parser.parse_known_args(argv)

    if args.command == "start":
        server = start_synapse(args.workdir, args.port, detach=True)
        print(
            f"url={server.url} pid={server.pid} workdir={server.workdir} "
            f"secret={server.registration_shared_secret}",
            flush=True,
        )
        return 0
    if args.command == "stop":
        stop_pid(args.pid)
        return 0
    # A federation listener of its own, so the cases prove they reach the server-server API
    # through --federation-base-url and the client API through --base-url.
    server = start_synapse(separate_federation_listener=True)
    print(
        f"synapse at {server.url}, federation at {server.federation_url} "
        f"(pid {server.pid}, logs in {server.workdir})", file=sys.stderr, flush=True
    )
    try:
        return run_synctest(server, extra)
    finally:
        server.stop()
        if not args.keep_workdir:
            shutil.rmtree(server.workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
