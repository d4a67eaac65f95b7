"""`homeserver register-user`: create an account through the running server's shared-secret API."""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import urllib.error
import urllib.request
from typing import Any

from homeserver.config import Config


def admin_base_url(config: Config) -> str:
    for listener in config.listeners:
        if "admin" in listener.resources:
            host = "127.0.0.1" if listener.host in ("0.0.0.0", "::", "") else listener.host
            host = f"[{host}]" if ":" in host else host
            return f"{'https' if listener.tls else 'http'}://{host}:{listener.port}"
    raise SystemExit("No listener serves the admin API; add 'admin' to a listener's resources")


def _request(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")
        raise SystemExit(f"Registration failed ({e.code}): {detail}") from None
    except urllib.error.URLError as e:
        raise SystemExit(f"Could not reach the homeserver at {url}: {e.reason}. Is it running?") from None


def register_user(config: Config, username: str, password: str, admin: bool, base_url: str | None = None) -> dict:
    secret = config.registration.get("shared_secret")
    if not secret:
        raise SystemExit("registration.shared_secret is not set in the config")
    url = (base_url or admin_base_url(config)) + "/_synapse/admin/v1/register"
    nonce = _request(url)["nonce"]
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(f"{nonce}\0{username}\0{password}\0".encode() + (b"admin" if admin else b"notadmin"))
    return _request(url, {"nonce": nonce, "username": username, "password": password, "admin": admin,
                          "mac": mac.hexdigest()})


def prompt_missing(username: str | None, password: str | None) -> tuple[str, str]:
    if not username:
        username = input("Username: ").strip()
    if password is None:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Confirm password: "):
            raise SystemExit("Passwords do not match")
    if not password:
        raise SystemExit("An empty password is not allowed")
    return username, password
