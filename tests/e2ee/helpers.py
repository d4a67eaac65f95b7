"""Key material for E2EE tests: real ed25519 keys signed the way clients sign them."""

from __future__ import annotations

import copy
from typing import Any

from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from tests.accounts.helpers import login
from tests.support.rooms import User


def public_key(signing_key: Any) -> str:
    return encode_verify_key_base64(get_verify_key(signing_key))


def device_keys(user: User, signing_key: Any | None = None) -> tuple[dict[str, Any], Any]:
    """A device_keys object for the user's device, self-signed; (keys, signing key)."""
    key = signing_key or generate_signing_key(user.device_id)
    body = {
        "user_id": user.user_id,
        "device_id": user.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{user.device_id}": "curve" + user.device_id,
                 f"ed25519:{user.device_id}": public_key(key)},
    }
    return sign_json(body, user.user_id, key), key


def cross_signing_key(user: User, usage: str, signer: Any | None = None) -> tuple[dict[str, Any], Any]:
    """A cross-signing key object with `usage`, signed by `signer` when given; (key, its signing key)."""
    key = generate_signing_key("")
    pub = public_key(key)
    key.version = pub  # signedjson names the signature ed25519:<version>
    body = {"user_id": user.user_id, "usage": [usage], "keys": {f"ed25519:{pub}": pub}}
    if signer is not None:
        body = sign_json(body, user.user_id, signer)
    return body, key


def signed_copy(obj: dict[str, Any], user_id: str, key: Any) -> dict[str, Any]:
    return sign_json(copy.deepcopy(obj), user_id, key)


async def upload_device_keys(user: User, **extra: Any) -> tuple[dict[str, Any], Any]:
    keys, key = device_keys(user)
    await user.call("POST", "/keys/upload", {"device_keys": keys, **extra})
    return keys, key


async def set_up_cross_signing(user: User) -> dict[str, Any]:
    """Upload master, self-signing and user-signing keys (first time: no UIA); their signing keys."""
    master, master_key = cross_signing_key(user, "master")
    self_signing, ssk = cross_signing_key(user, "self_signing", master_key)
    user_signing, usk = cross_signing_key(user, "user_signing", master_key)
    await user.call("POST", "/keys/device_signing/upload",
                    {"master_key": master, "self_signing_key": self_signing, "user_signing_key": user_signing})
    return {"master": (master, master_key), "self_signing": (self_signing, ssk),
            "user_signing": (user_signing, usk)}


async def second_device(client: Any, user: User) -> User:
    """A new login (device) of the same user."""
    body = await login(client, user.user_id)
    return User(client, body)


def one_time_keys(prefix: str, count: int) -> dict[str, Any]:
    return {f"signed_curve25519:{prefix}{i}": signed_key(f"k{prefix}{i}") for i in range(count)}


def signed_key(key: str, **extra: Any) -> dict[str, Any]:
    """A one-time or fallback key object (the server does not check these signatures)."""
    return {"key": key, **extra, "signatures": {"@someone:test": {"ed25519:DEV": "c2lnbmF0dXJl"}}}
