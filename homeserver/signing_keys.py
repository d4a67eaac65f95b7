"""The server's ed25519 signing key file (Synapse's format: `ed25519 <version> <seed>` per line)."""

from __future__ import annotations

import logging
import os
import secrets
import string
from typing import Any

from signedjson.key import generate_signing_key, read_signing_keys, write_signing_keys

logger = logging.getLogger(__name__)


def new_key_version() -> str:
    alphabet = string.ascii_letters + string.digits
    return "a_" + "".join(secrets.choice(alphabet) for _ in range(4))


def write_new_signing_key(path: str) -> Any:
    """Generate a key and write it to `path` (owner-readable only)."""
    key = generate_signing_key(new_key_version())
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        write_signing_keys(f, [key])
    return key


def load_signing_key(path: str) -> Any:
    with open(path) as f:
        keys = read_signing_keys(f)
    if not keys:
        raise ValueError(f"{path}: no signing key found")
    return keys[0]


def load_or_create_signing_key(path: str) -> Any:
    if not os.path.exists(path):
        logger.warning("No signing key at %s: generating a new one", path)
        return write_new_signing_key(path)
    return load_signing_key(path)
