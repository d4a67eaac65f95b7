"""Checking ed25519 signatures on client-signed key objects (pure functions)."""

from __future__ import annotations

from typing import Any

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64

ED25519 = "ed25519"


def has_valid_signature(obj: dict[str, Any], signer_user_id: str, key_id: str, public_key: str) -> bool:
    """Whether `obj` carries a valid signature by `signer_user_id` with key `key_id` (`ed25519:<id>`)."""
    algorithm, _, version = key_id.partition(":")
    if algorithm != ED25519 or not version:
        return False
    signatures = obj.get("signatures")
    if not isinstance(signatures, dict) or not isinstance(signatures.get(signer_user_id), dict):
        return False
    if not isinstance(signatures[signer_user_id].get(key_id), str):
        return False
    try:
        verify_key = decode_verify_key_bytes(key_id, decode_base64(public_key))
        verify_signed_json(obj, signer_user_id, verify_key)
    except (SignatureVerifyException, ValueError, TypeError):
        return False
    except Exception:  # noqa: BLE001 - malformed base64 or key bytes surface as assorted errors
        return False
    return True


def without_signatures(obj: dict[str, Any]) -> dict[str, Any]:
    """The signed part of a key object: what a signature covers."""
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def merge_signatures(obj: dict[str, Any], extra: dict[str, dict[str, str]]) -> dict[str, Any]:
    """A copy of `obj` with more {user_id: {key_id: signature}} added to its `signatures`."""
    if not extra:
        return obj
    merged = {user: dict(sigs) for user, sigs in (obj.get("signatures") or {}).items() if isinstance(sigs, dict)}
    for user, sigs in extra.items():
        merged.setdefault(user, {}).update(sigs)
    return {**obj, "signatures": merged}
