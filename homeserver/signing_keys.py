"""The server's own signing key: loaded at start-up, generated when missing."""

from __future__ import annotations

import json
import logging
import os
import secrets
import string
from typing import Any

from signedjson.types import SigningKey

from homeserver.events.signing import (
    decode_verify_key,
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
    key_id_of,
    read_signing_key_file,
    write_signing_key_file,
)

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


# --- old keys and rotation ------------------------------------------------------------
# Keys we signed with before a rotation stay published under `old_verify_keys` so that others can
# still check events we signed with them. The file is JSON: {"ed25519:abc": {"key": <base64 public
# key>, "expired_ts": <ms>}}.


def load_old_verify_keys(path: str) -> dict[str, dict[str, Any]]:
    """The old verify keys file, or {} when there is none; ValueError naming a malformed entry."""
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of key IDs")
    for key_id, entry in data.items():
        if (not isinstance(entry, dict) or not isinstance(entry.get("key"), str)
                or not isinstance(entry.get("expired_ts"), int)):
            raise ValueError(f"{path}: {key_id}: expected {{\"key\": <base64>, \"expired_ts\": <ms>}}")
        decode_verify_key(key_id, entry["key"])  # raises ValueError when unusable
    return data


def rotate_signing_key(signing_key_path: str, old_keys_path: str, now_ms: int) -> tuple[SigningKey, str]:
    """Replace the signing key with a new one; the old one's public half goes to the old keys file with
    `expired_ts` = now. Returns (new key, old key ID)."""
    old = load_signing_key(signing_key_path)
    old_keys = load_old_verify_keys(old_keys_path)
    old_keys[key_id_of(old)] = {"key": encode_verify_key_base64(get_verify_key(old)), "expired_ts": now_ms}
    new = generate_signing_key(new_key_version())
    while key_id_of(new) in old_keys:
        new = generate_signing_key(new_key_version())
    os.makedirs(os.path.dirname(os.path.abspath(old_keys_path)), exist_ok=True)
    tmp = old_keys_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(old_keys, f, indent=2, sort_keys=True)
    os.replace(tmp, old_keys_path)  # the old key is recorded before the key file forgets it
    write_signing_key_file(signing_key_path, [new])
    return new, key_id_of(old)
