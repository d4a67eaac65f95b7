"""Device keys, one-time keys and fallback keys: /keys/upload, /keys/query, /keys/claim, /keys/changes.

A device's identity keys are fixed for its lifetime: a client that lost them must log in as a new
device, because other users' devices have already trusted (and maybe verified) the old ones, so a
silent swap would be an impersonation vector. Re-uploading the same keys (with more signatures,
say) is accepted.

Users of other servers: /keys/query answers from the cache of their device lists
(homeserver/e2ee/remote_devices.py) for users who share a room with one of ours, and asks their
server (`/user/keys/query`) for the others; /keys/claim always asks their server. Servers are
asked side by side, for at most the request's `timeout`; a server that fails or is too slow is
reported in `failures` under its name, as Synapse does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.clock import Clock
from homeserver.e2ee.device_lists import SIGNED_CURVE25519, DeviceListService
from homeserver.e2ee.remote_devices import RemoteDeviceLists, RemoteKeyQueries
from homeserver.e2ee.signing import ED25519, has_valid_signature, merge_signatures
from homeserver.errors import MatrixError, bad_json, invalid_param, missing_param
from homeserver.identifiers import parse_user_id
from homeserver.requester import Requester
from homeserver.streams.bus import StreamBus
from homeserver.streams.client_tokens import parse_sync_token
from homeserver.streams.updates import DeviceCreated, DeviceRenamed, DevicesDeleted, OneTimeKeysChanged
from storage.stores.e2ee import ClaimRequest, E2eeKeyStore, OneTimeKeyConflict

logger = logging.getLogger(__name__)

MAX_ONE_TIME_KEYS_PER_UPLOAD = 1000
MAX_QUERY_USERS = 1000
MAX_CLAIMS = 1000
CROSS_SIGNING_TYPES = ("master", "self_signing", "user_signing")
REMOTE_FAILURE = {"status": 503, "message": "Federation is not enabled on this server"}
# How long other servers are waited for when the request names no `timeout` (as Synapse).
DEFAULT_REMOTE_TIMEOUT_MS = 10_000
MAX_REMOTE_TIMEOUT_MS = 60_000


def parse_timeout(body: dict[str, Any]) -> float:
    """The request's `timeout` (ms) for other servers, in seconds."""
    timeout = body.get("timeout", DEFAULT_REMOTE_TIMEOUT_MS)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise invalid_param("timeout: must be a non-negative integer (milliseconds)")
    return min(timeout, MAX_REMOTE_TIMEOUT_MS) / 1000


def _string_map(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise bad_json(f"{field}: must be an object of strings")
    return value


def parse_device_keys(value: Any, user_id: str, device_id: str) -> dict[str, Any]:
    """A well-formed `device_keys` object of this device (its self-signature is the clients' to check)."""
    field = "device_keys"
    if not isinstance(value, dict):
        raise bad_json(f"{field}: must be an object")
    if value.get("user_id") != user_id:
        raise invalid_param(f"{field}.user_id: must be your user ID {user_id}")
    if value.get("device_id") != device_id:
        raise invalid_param(f"{field}.device_id: must be this session's device ID {device_id}")
    algorithms = value.get("algorithms")
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise bad_json(f"{field}.algorithms: must be a list of strings")
    keys = _string_map(value.get("keys"), f"{field}.keys")
    key_id = f"{ED25519}:{device_id}"
    if key_id not in keys:
        raise bad_json(f"{field}.keys: must contain the device's {key_id} key")
    signatures = value.get("signatures")
    if not isinstance(signatures, dict) or not all(
            isinstance(by, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in by.items())
            for by in signatures.values()):
        raise bad_json(f"{field}.signatures: must be an object of objects of strings")
    # The self-signature is not verified here: every client verifies it on /keys/query before
    # trusting the device, and refusing the upload would leave the device with no keys at all.
    if not has_valid_signature(value, user_id, key_id, keys[key_id]):
        logger.info("Storing device keys of %s %s whose self-signature does not verify", user_id, device_id)
    # `unsigned` is the server's to fill in (the device's display name).
    return {k: v for k, v in value.items() if k != "unsigned"}


def parse_key_map(value: Any, field: str) -> list[tuple[str, str, Any]]:
    """`{"<algorithm>:<key_id>": key}` as (algorithm, key_id, key) triples."""
    if not isinstance(value, dict):
        raise bad_json(f"{field}: must be an object")
    out = []
    for name, key in value.items():
        algorithm, sep, key_id = name.partition(":")
        if not sep or not algorithm or not key_id:
            raise bad_json(f"{field}: key name {name!r} must be <algorithm>:<key_id>")
        if isinstance(key, dict):
            _check_key_object(key, f"{field}.{name}")
        elif not isinstance(key, str):
            raise bad_json(f"{field}.{name}: must be a string or a signed key object")
        out.append((algorithm, key_id, key))
    return out


def _check_key_object(key: dict[str, Any], field: str) -> None:
    """A signed key object: `key` and `signatures` are what claimers need (Synapse insists too)."""
    if not isinstance(key.get("key"), str):
        raise bad_json(f"{field}.key: required, a string")
    signatures = key.get("signatures")
    if not isinstance(signatures, dict) or not all(
            isinstance(sigs, dict) and all(isinstance(v, str) for v in sigs.values())
            for sigs in signatures.values()):
        raise bad_json(f"{field}.signatures: required, an object of user ID to {{key ID: signature}}")
    if "fallback" in key and not isinstance(key["fallback"], bool):
        raise bad_json(f"{field}.fallback: must be a boolean")


def parse_fallback_keys(value: Any, field: str) -> list[tuple[str, str, Any]]:
    keys = parse_key_map(value, field)
    algorithms = [algorithm for algorithm, _, _ in keys]
    if len(set(algorithms)) != len(algorithms):
        raise bad_json(f"{field}: at most one fallback key per algorithm")
    return keys


def parse_query(body: dict[str, Any]) -> dict[str, list[str]]:
    """`device_keys` of a /keys/query body: {user_id: [device_id, ...]} (empty list: all devices)."""
    device_keys = body.get("device_keys")
    if not isinstance(device_keys, dict):
        raise bad_json("device_keys: required, an object of user ID to device ID list")
    if len(device_keys) > MAX_QUERY_USERS:
        raise MatrixError(400, "M_TOO_LARGE", f"device_keys: at most {MAX_QUERY_USERS} users per query")
    out = {}
    for user_id, devices in device_keys.items():
        parse_user_id(user_id, "device_keys")
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise bad_json(f"device_keys.{user_id}: must be a list of device IDs")
        out[user_id] = list(dict.fromkeys(devices))
    return out


def parse_claim(body: dict[str, Any]) -> list[ClaimRequest]:
    """`one_time_keys` of a /keys/claim body: {user_id: {device_id: algorithm}}."""
    one_time_keys = body.get("one_time_keys")
    if not isinstance(one_time_keys, dict):
        raise bad_json("one_time_keys: required, an object of user ID to {device ID: algorithm}")
    requests = []
    for user_id, devices in one_time_keys.items():
        parse_user_id(user_id, "one_time_keys")
        if not isinstance(devices, dict):
            raise bad_json(f"one_time_keys.{user_id}: must be an object of device ID to algorithm")
        for device_id, algorithm in devices.items():
            if not isinstance(algorithm, str) or not algorithm:
                raise bad_json(f"one_time_keys.{user_id}.{device_id}: must be an algorithm name")
            requests.append(ClaimRequest(user_id, device_id, algorithm))
    if len(requests) > MAX_CLAIMS:
        raise MatrixError(400, "M_TOO_LARGE", f"one_time_keys: at most {MAX_CLAIMS} keys per claim")
    return requests


def _server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


class KeysService:
    def __init__(self, server_name: str, store: E2eeKeyStore, device_lists: DeviceListService, clock: Clock,
                 bus: StreamBus | None = None, *, remote_devices: RemoteDeviceLists | None = None,
                 remote: RemoteKeyQueries | None = None):
        self._server_name = server_name
        # None: federation is off, and users of other servers are reported in `failures`.
        self._remote_devices = remote_devices
        self._remote = remote
        # Questions to other servers whose client stopped waiting, kept until they finish.
        self._late: set[asyncio.Future[Any]] = set()
        self._store = store
        self._device_lists = device_lists
        self._clock = clock
        self._bus = bus

    async def upload(self, requester: Requester, body: dict[str, Any]) -> dict[str, Any]:
        """/keys/upload: store device, one-time and fallback keys; the one-time key counts."""
        user_id, device_id = requester.user_id, requester.device_id
        if device_id is None:
            raise invalid_param("device_id: this access token has no device to upload keys for")
        device_keys = None
        if body.get("device_keys") is not None:
            device_keys = parse_device_keys(body["device_keys"], user_id, device_id)
        one_time = []
        if body.get("one_time_keys") is not None:
            one_time = parse_key_map(body["one_time_keys"], "one_time_keys")
            if len(one_time) > MAX_ONE_TIME_KEYS_PER_UPLOAD:
                raise MatrixError(400, "M_TOO_LARGE",
                                  f"one_time_keys: at most {MAX_ONE_TIME_KEYS_PER_UPLOAD} per upload")
        fallback_field = next((f for f in ("fallback_keys", "org.matrix.msc2732.fallback_keys")
                               if body.get(f) is not None), None)
        fallback = parse_fallback_keys(body[fallback_field], fallback_field) if fallback_field else []

        if device_keys is not None:
            existing = await self._store.get_device_keys(user_id, device_id)
            if existing is not None and existing.get("keys") != device_keys["keys"]:
                raise invalid_param("device_keys.keys: this device already has different identity keys;"
                                    " log in as a new device to use new keys")
            if existing != device_keys:
                await self._store.set_device_keys(user_id, device_id, device_keys, self._clock.time_ms())
                await self._device_lists.notify_key_change(user_id)
        if one_time:
            try:
                await self._store.add_one_time_keys(user_id, device_id, one_time, self._clock.time_ms())
            except OneTimeKeyConflict as e:
                raise invalid_param(f"one_time_keys: key {e.key_id} was already uploaded with other content"
                                    ) from None
        if fallback:
            await self._store.set_fallback_keys(user_id, device_id, fallback)
        if (one_time or fallback) and self._bus is not None:
            await self._bus.publish(OneTimeKeysChanged(user_id, (device_id,)))
        counts = await self._store.count_one_time_keys(user_id, device_id)
        return {"one_time_key_counts": {SIGNED_CURVE25519: 0, **counts}}

    async def query(self, requester: Requester, body: dict[str, Any]) -> dict[str, Any]:
        """/keys/query: device and cross-signing keys of local users and of users of other servers."""
        wanted = parse_query(body)
        timeout = parse_timeout(body)
        local = {u: d for u, d in wanted.items() if _server_of(u) == self._server_name}
        response, own = await self._query_local(local, requester.user_id)
        if requester.user_id in local and "user_signing" in own:
            response["user_signing_keys"] = {requester.user_id: own["user_signing"]}
        else:
            response["user_signing_keys"] = {}
        response["failures"] = {}
        by_server: dict[str, dict[str, list[str]]] = {}
        for user_id, devices in wanted.items():
            if user_id not in local:
                by_server.setdefault(_server_of(user_id), {})[user_id] = devices
        answers = await asyncio.gather(*(self._remote_part(server, users, timeout, self._query_server)
                                         for server, users in by_server.items()))
        for server, (answer, failure) in zip(by_server, answers, strict=True):
            if failure is not None:
                response["failures"][server] = failure
            for field in ("device_keys", "master_keys", "self_signing_keys"):
                response[field].update(answer.get(field, {}))
        return response

    async def query_for_federation(self, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /_matrix/federation/v1/user/keys/query`: keys of our users only (others are left out)."""
        wanted = {u: d for u, d in parse_query(body).items() if _server_of(u) == self._server_name}
        return (await self._query_local(wanted, None))[0]

    async def _query_local(self, local: dict[str, list[str]], requester_user_id: str | None
                           ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """The keys of local users, and the requester's own cross-signing keys (by type) when the
        requester is among them.

        Three independent reads (together on PostgreSQL, in one on SQLite): the devices' keys, the
        cross-signing keys (the requester's too) and every signature over these users' keys,
        which is then matched to the devices and master keys returned."""
        device_keys: dict[str, dict[str, Any]] = {user_id: {} for user_id in local}
        rows, cross_signing, signatures = await self._store.query_keys(local)
        # Only needed when the requester asked about themselves (their user-signing key).
        own = cross_signing.get(requester_user_id, {}) if requester_user_id is not None else {}
        devices = {(r.user_id, r.device_id) for r in rows}
        extra: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
        for s in signatures:
            if (s.target_user_id, s.target_key_id) in devices:
                extra.setdefault((s.target_user_id, s.target_key_id), {}).setdefault(
                    s.signer_user_id, {})[s.signer_key_id] = s.signature
        for row in rows:
            keys = merge_signatures(row.keys, extra.get((row.user_id, row.device_id), {}))
            if row.display_name is not None:
                keys = {**keys, "unsigned": {"device_display_name": row.display_name}}
            device_keys[row.user_id][row.device_id] = keys

        response: dict[str, Any] = {"device_keys": device_keys, "master_keys": {}, "self_signing_keys": {}}
        masters = {u: k["master"] for u, k in cross_signing.items() if "master" in k}
        master_targets = {(u, _public_key(k)) for u, k in masters.items()}
        master_sigs: dict[str, dict[str, dict[str, str]]] = {}
        for s in signatures:
            if (s.target_user_id, s.target_key_id) not in master_targets:
                continue
            # Signatures others made on a master key are theirs to see: only the key's owner's and
            # the requester's own are shown (Synapse shows the requester's).
            if s.signer_user_id in (requester_user_id, s.target_user_id):
                master_sigs.setdefault(s.target_user_id, {}).setdefault(
                    s.signer_user_id, {})[s.signer_key_id] = s.signature
        for user_id, master in masters.items():
            response["master_keys"][user_id] = merge_signatures(master, master_sigs.get(user_id, {}))
        for user_id, keys in cross_signing.items():
            if "self_signing" in keys:
                response["self_signing_keys"][user_id] = keys["self_signing"]
        return response, own

    async def _remote_part(self, server: str, part: Any, timeout: float,
                           ask: Callable[[str, Any], Awaitable[dict[str, Any]]]
                           ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(answer, failure) of asking one server, within the timeout.

        A server too slow for the client is not cancelled: what it answers later (a device list
        being fetched and cached, say) is still stored, so the client's retry finds it.
        """
        if self._remote is None:
            return {}, REMOTE_FAILURE
        task = asyncio.ensure_future(ask(server, part))
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            self._late.add(task)
            task.add_done_callback(self._forget_late)
            return {}, {"status": 504, "message": f"{server} did not answer within {int(timeout * 1000)} ms"}
        try:
            return task.result(), None
        except MatrixError as e:
            return {}, {"status": e.http_status, "message": e.message}

    def _forget_late(self, task: asyncio.Future[Any]) -> None:
        self._late.discard(task)
        if not task.cancelled() and task.exception() is not None and not isinstance(task.exception(), MatrixError):
            logger.warning("a late answer from another server failed: %r", task.exception())

    async def _query_server(self, server: str, users: dict[str, list[str]]) -> dict[str, Any]:
        """Keys of one server's users: cached lists where we keep them, the server's answer for the rest."""
        out: dict[str, Any] = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
        cached = await self._remote_devices.device_lists(list(users)) if self._remote_devices else {}
        for user_id, device_list in cached.items():
            wanted = set(users[user_id])
            out["device_keys"][user_id] = {
                d.device_id: _with_display_name(d.keys, d.display_name) for d in device_list.devices
                if d.keys is not None and (not wanted or d.device_id in wanted)}
            for key_type, field in (("master", "master_keys"), ("self_signing", "self_signing_keys")):
                if key_type in device_list.cross_signing:
                    out[field][user_id] = device_list.cross_signing[key_type]
        rest = {u: d for u, d in users.items() if u not in cached}
        if rest:
            assert self._remote is not None
            answer = await self._remote.query_keys(server, rest)
            for field in out:
                out[field].update(answer.get(field, {}))
        return out

    async def claim(self, body: dict[str, Any]) -> dict[str, Any]:
        """/keys/claim: one one-time key per requested device, or its fallback key when none is left."""
        requests = parse_claim(body)
        timeout = parse_timeout(body)
        one_time_keys = await self._claim_local([r for r in requests if _server_of(r.user_id) == self._server_name])
        by_server: dict[str, dict[str, dict[str, str]]] = {}
        for r in requests:
            if _server_of(r.user_id) != self._server_name:
                by_server.setdefault(_server_of(r.user_id), {}).setdefault(r.user_id, {})[r.device_id] = r.algorithm
        failures: dict[str, Any] = {}
        answers = await asyncio.gather(*(self._remote_part(server, wanted, timeout, self._claim_server)
                                         for server, wanted in by_server.items()))
        for server, (answer, failure) in zip(by_server, answers, strict=True):
            if failure is not None:
                failures[server] = failure
            one_time_keys.update(answer.get("one_time_keys", {}))
        return {"one_time_keys": one_time_keys, "failures": failures}

    async def claim_for_federation(self, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /_matrix/federation/v1/user/keys/claim`: keys of our users' devices only."""
        requests = [r for r in parse_claim(body) if _server_of(r.user_id) == self._server_name]
        return {"one_time_keys": await self._claim_local(requests)}

    async def _claim_server(self, server: str, wanted: dict[str, dict[str, str]]) -> dict[str, Any]:
        assert self._remote is not None
        return await self._remote.claim_keys(server, wanted)

    async def _claim_local(self, local: list[ClaimRequest]) -> dict[str, dict[str, dict[str, Any]]]:
        claimed = await self._store.claim_keys(local)
        one_time_keys: dict[str, dict[str, dict[str, Any]]] = {}
        for request, (key_id, key) in claimed.items():
            one_time_keys.setdefault(request.user_id, {}).setdefault(request.device_id, {})[
                f"{request.algorithm}:{key_id}"] = key
        if self._bus is not None:
            for user_id, devices in one_time_keys.items():
                await self._bus.publish(OneTimeKeysChanged(user_id, tuple(devices)))
        return one_time_keys

    async def user_devices_for_federation(self, user_id: str) -> dict[str, Any]:
        """`GET /_matrix/federation/v1/user/devices/{userId}`: a local user's devices with keys, the
        stream ID their `m.device_list_update`s continue from, and their shared cross-signing keys."""
        devices = []
        for row in await self._store.get_devices_with_keys(user_id):
            if not row.keys:
                continue  # as Synapse: a device without keys is of no use to the other side yet
            device: dict[str, Any] = {"device_id": row.device_id, "keys": row.keys}
            if row.display_name is not None:
                device["device_display_name"] = row.display_name
            devices.append(device)
        response: dict[str, Any] = {"user_id": user_id, "stream_id": await self._store.get_last_device_change(user_id),
                                    "devices": devices}
        cross_signing = (await self._store.get_cross_signing_keys([user_id])).get(user_id, {})
        for key_type, field in (("master", "master_key"), ("self_signing", "self_signing_key")):
            if key_type in cross_signing:
                response[field] = cross_signing[key_type]
        return response

    async def changes(self, requester: Requester, from_text: str | None, to_text: str | None) -> dict[str, Any]:
        """/keys/changes: users whose device lists changed between two sync tokens."""
        if from_text is None:
            raise missing_param("from: required")
        if to_text is None:
            raise missing_param("to: required")
        start = parse_sync_token(from_text, "from").get("device_lists")
        end = parse_sync_token(to_text, "to").get("device_lists")
        end = min(end, await self._device_lists.current_position())
        changed, left = await self._device_lists.get_changes(requester.user_id, start, end)
        return {"changed": changed, "left": left}

    async def on_device_created(self, update: DeviceCreated) -> None:
        """A new device is a device-list change, so others fetch its keys once it has some."""
        await self._store.record_device_change(update.user_id, [update.device_id])
        await self._device_lists.notify_key_change(update.user_id)

    async def on_device_renamed(self, update: DeviceRenamed) -> None:
        """A device's name travels with its keys to other servers (and to /keys/query)."""
        await self._store.record_device_change(update.user_id, [update.device_id])
        await self._device_lists.notify_key_change(update.user_id)

    async def on_devices_deleted(self, update: DevicesDeleted) -> None:
        """Forget the devices' keys and inboxes, and tell who shares a room."""
        if not update.device_ids:
            return
        await self._store.delete_device_keys(update.user_id, list(update.device_ids))
        await self._device_lists.notify_key_change(update.user_id)


def _with_display_name(keys: dict[str, Any], display_name: str | None) -> dict[str, Any]:
    if display_name is None:
        return keys
    return {**keys, "unsigned": {**(keys.get("unsigned") or {}), "device_display_name": display_name}}


def _public_key(key: dict[str, Any]) -> str:
    """The public part of a (validated, stored) cross-signing key."""
    return next(iter(key["keys"].values()))
