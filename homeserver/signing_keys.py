"""The server's own signing key: loaded at start-up, generated when missing."""

from __future__ import annotations

import logging
import os
import secrets
import string

from signedjson.types import SigningKey

from homeserver.events.signing import generate_signing_key, read_signing_key_file, write_signing_key_file

logger = logging.getLogger(__name__)


def new_key_version() -> str:
    alphabet = string.ascii_letters + string.digits
    return "a_" + "".join(secrets.choice(alphabet) for _ in range(4))


def write_new_signing_key(path: str) -> SigningKey:
    """Generate a key and write it to `path`."""
    key = generate_signing_key(new_key_version())
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_signing_key_file(path, [key])
    return key


def load_signing_key(path: str) -> SigningKey:
    keys = read_signing_key_file(path)
    if not keys:
        raise ValueError(f"{path}: no signing key found")
    return keys[0]


def load_or_create_signing_key(path: str) -> SigningKey:
    if not os.path.exists(path):
        logger.warning("No signing key at %s: generating a new one", path)
        return write_new_signing_key(path)
    return load_signing_key(path)
