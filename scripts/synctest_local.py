#!/usr/bin/env python3
"""Start a fresh homeserver (SQLite, temp dir, free ports), run synctest against it, stop it.

Used by `make test`; exits with synctest's status.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory(prefix="synctest-hs-") as tmp:
        port = free_port()
        config_path = os.path.join(tmp, "homeserver.yaml")
        subprocess.run(
            [sys.executable, "-m", "homeserver", "generate-config", "--server-name", f"localhost:{port}",
             "--data-dir", tmp, "--generate-keys",
             "--set", f"listeners.0.port={port}",
             "--set", "registration.enabled=true", "--set", "rate_limits.enabled=false",
             "--set", "registration.allow_guests=true",
             "--set", "sessions.login_via_existing_session.enabled=true",
             "--set", "passwords.bcrypt_rounds=4"],
            check=True, cwd=root, stdout=subprocess.DEVNULL,
        )
        with open(config_path) as f:
            secret = yaml.safe_load(f)["registration"]["shared_secret"]
        log = open(os.path.join(tmp, "server.log"), "w")
        server = subprocess.Popen([sys.executable, "-m", "homeserver", "run", "--config", config_path],
                                  cwd=root, stdout=log, stderr=subprocess.STDOUT)
        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(base_url + "/_matrix/client/versions", timeout=1).read()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        log.flush()
                        print(open(log.name).read(), file=sys.stderr)
                        print("homeserver did not start", file=sys.stderr)
                        return 1
                    time.sleep(0.1)
            result = subprocess.run(
                # The federation resource shares the one listener here.
                [sys.executable, "-m", "synctest", "--base-url", base_url, "--federation-base-url", base_url,
                 # One argument: a secret that starts with "-" would otherwise read as an option.
                 f"--registration-shared-secret={secret}", *sys.argv[1:]],
                cwd=root,
            )
            return result.returncode
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()


if __name__ == "__main__":
    sys.exit(main())
