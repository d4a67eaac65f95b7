"""Signing JSON and events with ed25519 keys (appendices "Signing JSON"; server-server
API "Signing Events"), and Synapse-format signing key files.

Keys are signedjson/PyNaCl `SigningKey` / `VerifyKey` objects (they carry `alg` and
`version`), so they interoperate with anything else in the tree that uses signedjson.
Unlike signedjson's `sign_json`, nothing here mutates its input.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import nacl.signing
from signedjson.key import NACL_ED25519, SigningKey, VerifyKey
from unpaddedbase64 import decode_base64, encode_base64

from homeserver.events.canonical_json import encode_canonical_json
from homeserver.events.redaction import redact
from homeserver.events.room_versions import RoomVersion

ED25519 = NACL_ED25519  # "ed25519"
# Key versions are limited to [a-zA-Z0-9_] by the key ID grammar Synapse enforces.
_KEY_VERSION_RE = re.compile(r"^[A-Za-z0-9_]+\Z")


class SignatureError(Exception):
    """A signature is missing, malformed or does not verify."""


class SigningKeyFileError(ValueError):
    """A signing key file line cannot be parsed; the message names the line."""


# --- keys ---------------------------------------------------------------------------


def key_id_of(key: SigningKey | VerifyKey) -> str:
    """The key identifier `ed25519:<version>` of a signing or verify key."""
    return f"{key.alg}:{key.version}"


def _check_version(version: str) -> None:
    if not _KEY_VERSION_RE.match(version):
        raise ValueError(f"invalid key version {version!r}: use letters, digits and '_'")


def signing_key_from_seed(seed: bytes, version: str) -> SigningKey:
    """An ed25519 signing key from its 32-byte seed."""
    _check_version(version)
    key = nacl.signing.SigningKey(seed)
    key.alg = ED25519
    key.version = version
    return key


def generate_signing_key(version: str, seed: bytes | None = None) -> SigningKey:
    """A new ed25519 signing key; `seed` (32 bytes) makes it deterministic for tests."""
    return signing_key_from_seed(seed if seed is not None else os.urandom(32), version)


def get_verify_key(signing_key: SigningKey) -> VerifyKey:
    """The public verify key of a signing key, with the same alg and version."""
    verify_key = signing_key.verify_key
    verify_key.alg = signing_key.alg
    verify_key.version = signing_key.version
    return verify_key


def encode_verify_key_base64(verify_key: VerifyKey) -> str:
    """The unpadded base64 public key, as published in `/_matrix/key/v2/server`."""
    return encode_base64(verify_key.encode())


def decode_verify_key(key_id: str, key_base64: str) -> VerifyKey:
    """A VerifyKey from a key ID (`ed25519:abc`) and its unpadded base64 public key."""
    alg, _, version = key_id.partition(":")
    if alg != ED25519 or not version:
        raise ValueError(f"unsupported key ID {key_id!r}: expected 'ed25519:<version>'")
    try:
        raw = decode_base64(key_base64)
    except Exception as e:
        raise ValueError(f"key {key_id} is not valid base64") from e
    if len(raw) != 32:
        raise ValueError(f"key {key_id} is {len(raw)} bytes, an ed25519 key has 32")
    verify_key = nacl.signing.VerifyKey(raw)
    verify_key.alg = alg
    verify_key.version = version
    return verify_key


# --- key files (Synapse's format: `ed25519 <version> <base64 seed>` per line) ----------


def parse_signing_keys(text: str) -> list[SigningKey]:
    """All signing keys of a Synapse-format key file; blank lines are skipped."""
    keys = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise SigningKeyFileError(f"line {lineno}: expected 'ed25519 <key version> <base64 seed>'")
        alg, version, seed_b64 = parts
        if alg != ED25519:
            raise SigningKeyFileError(f"line {lineno}: unsupported algorithm {alg!r}, only ed25519")
        try:
            seed = decode_base64(seed_b64)
        except Exception:
            raise SigningKeyFileError(f"line {lineno}: the seed is not valid base64") from None
        if len(seed) != 32:
            raise SigningKeyFileError(f"line {lineno}: the seed is {len(seed)} bytes, expected 32")
        try:
            keys.append(signing_key_from_seed(seed, version))
        except ValueError as e:
            raise SigningKeyFileError(f"line {lineno}: {e}") from None
    return keys


def format_signing_keys(keys: Iterable[SigningKey]) -> str:
    """The Synapse-format key file text for `keys`."""
    return "".join(f"{k.alg} {k.version} {encode_base64(k.encode())}\n" for k in keys)


def read_signing_key_file(path: str | os.PathLike[str]) -> list[SigningKey]:
    """Read a Synapse-format signing key file."""
    with open(path, encoding="utf-8") as f:
        return parse_signing_keys(f.read())


def write_signing_key_file(path: str | os.PathLike[str], keys: Iterable[SigningKey]) -> None:
    """Write a Synapse-format signing key file readable only by its owner."""
    text = format_signing_keys(keys)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


# --- JSON signatures -----------------------------------------------------------------


def _signable_bytes(obj: Mapping[str, Any]) -> bytes:
    return encode_canonical_json({k: v for k, v in obj.items() if k != "signatures" and k != "unsigned"})


def compute_json_signature(obj: Mapping[str, Any], signing_key: SigningKey) -> str:
    """The unpadded base64 signature over `obj` minus `signatures` and `unsigned`."""
    return encode_base64(signing_key.sign(_signable_bytes(obj)).signature)


def _with_signature(obj: Mapping[str, Any], name: str, key_id: str, signature: str) -> dict[str, Any]:
    out = dict(obj)
    signatures = {n: dict(sigs) for n, sigs in (obj.get("signatures") or {}).items()}
    signatures.setdefault(name, {})[key_id] = signature
    out["signatures"] = signatures
    return out


def sign_json(obj: Mapping[str, Any], signing_name: str, signing_key: SigningKey) -> dict[str, Any]:
    """A copy of `obj` with this key's signature added under `signatures[signing_name]`."""
    return _with_signature(obj, signing_name, key_id_of(signing_key), compute_json_signature(obj, signing_key))


def verify_json_signature(obj: Mapping[str, Any], signing_name: str, verify_key: VerifyKey) -> None:
    """Raise SignatureError unless `obj` carries a valid signature by `verify_key`."""
    key_id = key_id_of(verify_key)
    signatures = obj.get("signatures")
    if not isinstance(signatures, Mapping):
        raise SignatureError("no signatures on this object")
    by_name = signatures.get(signing_name)
    if not isinstance(by_name, Mapping) or key_id not in by_name:
        raise SignatureError(f"missing signature for {signing_name}, {key_id}")
    signature_b64 = by_name[key_id]
    try:
        signature = decode_base64(signature_b64)
    except Exception:
        raise SignatureError(f"invalid signature base64 for {signing_name}, {key_id}") from None
    try:
        verify_key.verify(_signable_bytes(obj), signature)
    except Exception as e:  # nacl BadSignatureError, or ValueError for a wrong length
        raise SignatureError(f"unable to verify signature for {signing_name}, {key_id}: {e}") from None


# --- event signatures ----------------------------------------------------------------


def compute_event_signature(
    pdu: Mapping[str, Any], room_version: RoomVersion, signing_key: SigningKey
) -> str:
    """The signature of `pdu`: over its redacted form, so it survives redaction."""
    return compute_json_signature(redact(pdu, room_version), signing_key)


def sign_event(
    pdu: Mapping[str, Any], room_version: RoomVersion, signing_name: str, signing_key: SigningKey
) -> dict[str, Any]:
    """A copy of `pdu` signed by `signing_name`; `hashes` must already be filled in."""
    signature = compute_event_signature(pdu, room_version, signing_key)
    return _with_signature(pdu, signing_name, key_id_of(signing_key), signature)


def verify_event_signature(
    pdu: Mapping[str, Any], room_version: RoomVersion, signing_name: str, verify_key: VerifyKey
) -> None:
    """Raise SignatureError unless `signing_name` validly signed `pdu` with `verify_key`."""
    verify_json_signature(redact(pdu, room_version), signing_name, verify_key)


def event_signature_key_ids(pdu: Mapping[str, Any], signing_name: str) -> list[str]:
    """The ed25519 key IDs `signing_name` claims to have signed `pdu` with."""
    signatures = pdu.get("signatures")
    if not isinstance(signatures, Mapping):
        return []
    by_name = signatures.get(signing_name)
    if not isinstance(by_name, Mapping):
        return []
    return [k for k in by_name if isinstance(k, str) and k.startswith(ED25519 + ":")]
