"""Encrypted attachments as Matrix clients make them (spec: "Sending encrypted attachments").

AES-256-CTR with a random key and a random 64-bit IV prefix (the counter half zero), the SHA-256 of
the ciphertext, and the key as a JSON Web Key. The result's `file` object goes into an `m.file`
message, so clients decrypt the export themselves; the homeserver only stores ciphertext.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def encrypt_attachment(plaintext: bytes) -> tuple[bytes, dict[str, Any]]:
    """Ciphertext, and the EncryptedFile object without `url`."""
    key = os.urandom(32)
    iv = os.urandom(8) + b"\0" * 8
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    info = {
        "v": "v2",
        "key": {"kty": "oct", "alg": "A256CTR", "ext": True, "key_ops": ["encrypt", "decrypt"],
                "k": _b64(key).replace("+", "-").replace("/", "_")},
        "iv": _b64(iv),
        "hashes": {"sha256": _b64(hashlib.sha256(ciphertext).digest())},
    }
    return ciphertext, info


def decrypt_attachment(ciphertext: bytes, info: dict[str, Any]) -> bytes:
    """The inverse, checking the hash first (ValueError when it does not match)."""
    if _b64(hashlib.sha256(ciphertext).digest()) != info["hashes"]["sha256"].rstrip("="):
        raise ValueError("sha256 of the ciphertext does not match")
    decryptor = Cipher(algorithms.AES(_unb64(info["key"]["k"])), modes.CTR(_unb64(info["iv"]))).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()
