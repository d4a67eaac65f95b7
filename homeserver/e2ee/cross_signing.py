"""Cross-signing: /keys/device_signing/upload and /keys/signatures/upload.

Replacing cross-signing keys resets who trusts whom, so it sits behind a password check, except
when the user has no master key yet (first set-up) or re-uploads exactly what is stored, both of
which Synapse also lets through without UIA. Uploaded signatures are only stored once they verify
against a key we hold: a device's keys signed by the owner's self-signing key, the owner's master
key signed by one of their devices, or another user's master key signed by our user-signing key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.requester import Requester
from homeserver.accounts.devices import check_password_stage_user
from homeserver.accounts.uia import PASSWORD, UserInteractiveAuth, check_auth_shape
from homeserver.clock import Clock
from homeserver.e2ee.device_lists import DeviceListService
from homeserver.e2ee.signing import ED25519, has_valid_signature, without_signatures
from homeserver.errors import MatrixError, bad_json, invalid_param, missing_param
from homeserver.identifiers import parse_user_id
from storage.stores.accounts import AccountStore
from storage.stores.e2ee import E2eeKeyStore, SignatureRow

# Body field -> (key type, the usage the key must declare).
UPLOAD_FIELDS = {
    "master_key": "master",
    "self_signing_key": "self_signing",
    "user_signing_key": "user_signing",
}
PASSWORD_FLOWS = [[PASSWORD]]


@dataclass(frozen=True)
class CrossSigningKey:
    key_type: str
    public_key: str
    key: dict[str, Any]

    @property
    def key_id(self) -> str:
        return f"{ED25519}:{self.public_key}"


def parse_cross_signing_key(value: Any, field: str, user_id: str, key_type: str) -> CrossSigningKey:
    """A cross-signing key object of the expected type, owned by `user_id`, with one ed25519 key."""
    if not isinstance(value, dict):
        raise bad_json(f"{field}: must be an object")
    if value.get("user_id") != user_id:
        raise invalid_param(f"{field}.user_id: must be your user ID {user_id}")
    usage = value.get("usage")
    if not isinstance(usage, list) or key_type not in usage:
        raise invalid_param(f"{field}.usage: must include {key_type!r}")
    keys = value.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        raise bad_json(f"{field}.keys: must hold exactly one key")
    ((key_id, public_key),) = keys.items()
    if not isinstance(public_key, str) or key_id != f"{ED25519}:{public_key}":
        raise bad_json(f"{field}.keys: the key ID must be ed25519:<the public key>")
    if "signatures" in value and not isinstance(value["signatures"], dict):
        raise bad_json(f"{field}.signatures: must be an object")
    return CrossSigningKey(key_type, public_key, value)


def stored_key(keys: dict[str, dict[str, Any]], key_type: str) -> CrossSigningKey | None:
    key = keys.get(key_type)
    if key is None:
        return None
    return CrossSigningKey(key_type, next(iter(key["keys"].values())), key)


def signature_failure(status: int, errcode: str, message: str) -> dict[str, Any]:
    return {"status": status, "errcode": errcode, "message": message}


class SignatureRejected(Exception):
    def __init__(self, status: int, errcode: str, message: str):
        super().__init__(message)
        self.failure = signature_failure(status, errcode, message)


class CrossSigningService:
    def __init__(self, server_name: str, store: E2eeKeyStore, device_lists: DeviceListService,
                 uia: UserInteractiveAuth, accounts: AccountStore, clock: Clock):
        self._server_name = server_name
        self._accounts = accounts
        self._store = store
        self._device_lists = device_lists
        self._uia = uia
        self._clock = clock

    async def upload_signing_keys(self, requester: Requester, body: dict[str, Any], *, uri: str) -> None:
        """/keys/device_signing/upload: store the user's master, self-signing and user-signing keys."""
        user_id = requester.user_id
        check_auth_shape(body)
        existing = (await self._store.get_cross_signing_keys([user_id])).get(user_id, {})
        uploaded = {f: body[f] for f in UPLOAD_FIELDS if body.get(f) is not None}
        unchanged = bool(uploaded) and all(existing.get(UPLOAD_FIELDS[f]) == v for f, v in uploaded.items())
        # Application services replace their users' keys without UIA (MSC4190).
        if "master" in existing and not unchanged and requester.app_service_id is None:
            completed, params, session_id = await self._uia.check(body, PASSWORD_FLOWS, uri=uri, method="POST",
                                                                  for_user=user_id)
            check_password_stage_user(completed, user_id)
            await self._store_signing_keys(user_id, params, existing)
            # A finished session must not authorise the same request again.
            await self._accounts.delete_uia_session(session_id)
            return
        await self._store_signing_keys(user_id, body, existing)

    async def _store_signing_keys(self, user_id: str, body: dict[str, Any],
                                  existing: dict[str, dict[str, Any]]) -> None:
        parsed = {key_type: parse_cross_signing_key(body[field], field, user_id, key_type)
                  for field, key_type in UPLOAD_FIELDS.items() if body.get(field) is not None}
        if not parsed:
            return
        master = parsed.get("master") or stored_key(existing, "master")
        for field, key_type in UPLOAD_FIELDS.items():
            if key_type == "master" or key_type not in parsed:
                continue
            if master is None:
                raise missing_param(f"{field}: no master key to verify it; upload master_key first or with it")
            if not has_valid_signature(parsed[key_type].key, user_id, master.key_id, master.public_key):
                raise MatrixError(400, "M_INVALID_SIGNATURE",
                                  f"{field}.signatures: must be signed by the master key {master.key_id}")
        changed = {t: (k.public_key, k.key) for t, k in parsed.items() if existing.get(t) != k.key}
        if changed:
            await self._store.set_cross_signing_keys(user_id, changed, self._clock.time_ms())
            await self._device_lists.notify_key_change(user_id)

    async def upload_signatures(self, requester: Requester, body: dict[str, Any]) -> dict[str, Any]:
        """/keys/signatures/upload: verify and store signatures; per-key `failures` for the rest."""
        user_id = requester.user_id
        failures: dict[str, dict[str, Any]] = {}
        rows: list[SignatureRow] = []
        for target_user, objects in body.items():
            parse_user_id(target_user, "user ID")
            if not isinstance(objects, dict):
                raise bad_json(f"{target_user}: must be an object of key ID to signed key")
            for key_id, signed in objects.items():
                try:
                    if not isinstance(signed, dict):
                        raise SignatureRejected(400, "M_BAD_JSON", f"{target_user}.{key_id}: must be an object")
                    if target_user == user_id:
                        rows += await self._own_signatures(user_id, key_id, signed)
                    else:
                        rows += await self._other_user_signatures(user_id, target_user, key_id, signed)
                except SignatureRejected as e:
                    failures.setdefault(target_user, {})[key_id] = e.failure
        if rows:
            await self._store.add_signatures(rows, announce=[user_id])
            await self._device_lists.notify_key_change(user_id)
        return {"failures": failures}

    async def _own_signatures(self, user_id: str, key_id: str, signed: dict[str, Any]) -> list[SignatureRow]:
        cross_signing = (await self._store.get_cross_signing_keys([user_id])).get(user_id, {})
        master = stored_key(cross_signing, "master")
        new_signatures = _signatures_by(signed, user_id)
        if master is not None and key_id == master.public_key:
            _check_same_key(signed, master.key)
            rows = []
            for signer_key_id, signature in new_signatures.items():
                algorithm, _, device_id = signer_key_id.partition(":")
                if signer_key_id == master.key_id or algorithm != ED25519:
                    continue
                device = await self._store.get_device_keys(user_id, device_id)
                public = (device or {}).get("keys", {}).get(signer_key_id)
                if public is None or not has_valid_signature(signed, user_id, signer_key_id, public):
                    raise SignatureRejected(400, "M_INVALID_SIGNATURE",
                                            f"signature by {signer_key_id} does not verify")
                rows.append(SignatureRow(user_id, signer_key_id, user_id, key_id, signature))
            if not rows:
                raise SignatureRejected(400, "M_INVALID_SIGNATURE", "no new signature by one of your devices")
            return rows
        device = await self._store.get_device_keys(user_id, key_id)
        if device is None:
            raise SignatureRejected(404, "M_NOT_FOUND", f"no device or master key {key_id}")
        _check_same_key(signed, device)
        self_signing = stored_key(cross_signing, "self_signing")
        if self_signing is None:
            raise SignatureRejected(400, "M_INVALID_SIGNATURE", "you have no self-signing key to sign devices with")
        signature = new_signatures.get(self_signing.key_id)
        if signature is None or not has_valid_signature(signed, user_id, self_signing.key_id,
                                                        self_signing.public_key):
            raise SignatureRejected(400, "M_INVALID_SIGNATURE",
                                    f"missing or bad signature by the self-signing key {self_signing.key_id}")
        return [SignatureRow(user_id, self_signing.key_id, user_id, key_id, signature)]

    async def _other_user_signatures(self, user_id: str, target_user: str, key_id: str,
                                     signed: dict[str, Any]) -> list[SignatureRow]:
        if target_user.partition(":")[2] != self._server_name:
            raise SignatureRejected(503, "M_UNKNOWN", "federation is not available on this server yet")
        keys = await self._store.get_cross_signing_keys([user_id, target_user])
        master = stored_key(keys.get(target_user, {}), "master")
        if master is None or key_id != master.public_key:
            raise SignatureRejected(404, "M_NOT_FOUND", f"{key_id} is not {target_user}'s master key")
        _check_same_key(signed, master.key)
        user_signing = stored_key(keys.get(user_id, {}), "user_signing")
        if user_signing is None:
            raise SignatureRejected(400, "M_INVALID_SIGNATURE", "you have no user-signing key to sign users with")
        signature = _signatures_by(signed, user_id).get(user_signing.key_id)
        if signature is None or not has_valid_signature(signed, user_id, user_signing.key_id,
                                                        user_signing.public_key):
            raise SignatureRejected(400, "M_INVALID_SIGNATURE",
                                    f"missing or bad signature by the user-signing key {user_signing.key_id}")
        return [SignatureRow(user_id, user_signing.key_id, target_user, key_id, signature)]


def _signatures_by(signed: dict[str, Any], user_id: str) -> dict[str, str]:
    signatures = signed.get("signatures")
    mine = signatures.get(user_id) if isinstance(signatures, dict) else None
    if not isinstance(mine, dict):
        raise SignatureRejected(400, "M_INVALID_SIGNATURE", f"signatures: none by {user_id}")
    return {k: v for k, v in mine.items() if isinstance(k, str) and isinstance(v, str)}


def _check_same_key(signed: dict[str, Any], stored: dict[str, Any]) -> None:
    if without_signatures(signed) != without_signatures(stored):
        raise SignatureRejected(400, "M_INVALID_SIGNATURE", "the signed object differs from the stored key")
