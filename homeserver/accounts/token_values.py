"""Opaque tokens: high-entropy, typed by prefix, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def random_string(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_token(prefix: str) -> str:
    """A token with 256 bits of entropy; the prefix (`syt`, `syr`, `sylt`) tells its kind in logs."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    # A fast hash is right here: tokens are random, so there is nothing to brute-force.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_device_id() -> str:
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(10))
