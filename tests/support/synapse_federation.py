"""A real Synapse (from PyPI) federating over TLS on loopback, for interop tests.

Synapse is named by an IP literal (`127.0.0.2:PORT` by default), listens with a certificate from the
test CA, trusts only that CA for outbound federation (`federation_custom_ca_list`) with certificate
verification on, and may reach loopback, which its default block list refuses.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.support.fake_remote import free_port
from tests.support.tls_ca import TestCA

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "synapse"))
import run_synapse  # noqa: E402  (a script directory, not a package)

STARTUP_TIMEOUT_SECONDS = 120.0
# Synapse's default ip_range_blacklist minus 127.0.0.0/8 and ::1.
SYNAPSE_BLOCKLIST_WITHOUT_LOOPBACK = [
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "192.0.0.0/24", "169.254.0.0/16",
    "192.88.99.0/24", "198.18.0.0/15", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",
    "fe80::/10", "fc00::/7", "2001:db8::/32", "ff00::/8", "fec0::/10",
]


@dataclass
class FederatingSynapse:
    server_name: str
    url: str  # https://host:port
    workdir: Path
    shared_secret: str
    ca: TestCA
    process: subprocess.Popen[bytes]

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca.ca_path)

    def stop(self) -> None:
        run_synapse.stop_pid(self.process.pid)
        self.process.wait()

    def log_tail(self, chars: int = 4000) -> str:
        path = self.workdir / "homeserver.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    async def register(self, localpart: str, displayname: str | None = None) -> dict[str, Any]:
        """A user made with the registration shared secret; its display name set when given."""
        connector = aiohttp.TCPConnector(ssl=self.ssl_context())
        async with aiohttp.ClientSession(self.url, connector=connector) as session:
            async with session.get("/_synapse/admin/v1/register") as resp:
                nonce = (await resp.json())["nonce"]
            password = "correct horse"
            mac = hmac.new(self.shared_secret.encode(), b"\x00".join(
                [nonce.encode(), localpart.encode(), password.encode(), b"notadmin"]), hashlib.sha1).hexdigest()
            body = {"nonce": nonce, "username": localpart, "password": password, "admin": False, "mac": mac}
            async with session.post("/_synapse/admin/v1/register", json=body) as resp:
                assert resp.status == 200, await resp.text()
                user = await resp.json()
            if displayname is not None:
                async with session.put(f"/_matrix/client/v3/profile/{user['user_id']}/displayname",
                                       json={"displayname": displayname},
                                       headers={"Authorization": f"Bearer {user['access_token']}"}) as resp:
                    assert resp.status == 200, await resp.text()
        return user


def federating_synapse_config(workdir: Path, host: str, port: int, secret: str, cert_path: str, key_path: str,
                              ca_path: str) -> dict[str, Any]:
    config = run_synapse.synapse_config(workdir, port, secret)
    server_name = f"{host}:{port}"
    config.update({
        "server_name": server_name,
        "public_baseurl": f"https://{server_name}/",
        "listeners": [{
            "port": port,
            "bind_addresses": [host],
            "type": "http",
            "tls": True,
            "x_forwarded": False,
            "resources": [{"names": ["client", "federation", "keys", "media"], "compress": False}],
        }],
        "tls_certificate_path": cert_path,
        "tls_private_key_path": key_path,
        "federation_verify_certificates": True,
        "federation_custom_ca_list": [ca_path],
        # Synapse applies ip_range_whitelist to names it resolves but not to IP-literal server names
        # (its IP-literal guard sees only the block list), so loopback is left off the block list too.
        "ip_range_blacklist": SYNAPSE_BLOCKLIST_WITHOUT_LOOPBACK,
        "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
        "trusted_key_servers": [],
        "allow_public_rooms_over_federation": True,
    })
    return config


def _wait_until_serving(url: str, context: ssl.SSLContext, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Synapse exited with status {process.returncode} during start-up")
        try:
            with urllib.request.urlopen(f"{url}/_matrix/client/versions", timeout=2, context=context) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"Synapse did not answer /versions within {STARTUP_TIMEOUT_SECONDS:.0f}s")


def start_federating_synapse(workdir: Path, ca: TestCA, host: str = "127.0.0.2",
                             overrides: dict[str, Any] | None = None) -> FederatingSynapse:
    """Configure and start Synapse; returns once its client API answers over TLS. `overrides` are
    top-level config keys laid over the federating config (the benchmarks lower `bcrypt_rounds`)."""
    import secrets

    python = run_synapse.ensure_synapse_installed()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port(host)
    secret = secrets.token_hex(16)
    cert = ca.issue(host)
    config_path = workdir / "homeserver.yaml"
    config = federating_synapse_config(workdir, host, port, secret, cert.certificate_path, cert.private_key_path,
                                       ca.ca_path)
    config.update(overrides or {})
    config_path.write_text(yaml.safe_dump(config))
    (workdir / "log.yaml").write_text(yaml.safe_dump(run_synapse._log_config(workdir)))
    module = "synapse.app.homeserver"
    subprocess.run([str(python), "-m", module, "-c", str(config_path), "--generate-keys"], check=True,
                   stdout=subprocess.DEVNULL)
    console = (workdir / "console.log").open("ab")
    process = subprocess.Popen([str(python), "-m", module, "-c", str(config_path)], cwd=workdir, stdout=console,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    console.close()
    server = FederatingSynapse(f"{host}:{port}", f"https://{host}:{port}", workdir, secret, ca, process)
    try:
        _wait_until_serving(server.url, server.ssl_context(), process)
    except Exception:
        server.stop()
        print((workdir / "console.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    return server


async def until(check: Callable[[], Awaitable[Any]], what: str, synapse: FederatingSynapse,
                timeout_s: float = 30.0) -> Any:
    """Poll `check()` until it gives a truthy value and return it; on timeout fail naming `what`,
    with the end of Synapse's log."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out: {what}\n{synapse.log_tail()}"
        await asyncio.sleep(0.25)
