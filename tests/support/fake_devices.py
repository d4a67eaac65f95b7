"""The device side of a fake remote server: its users' devices with real self-signed ed25519 keys,
one-time keys, cross-signing keys, a per-user `stream_id`, the EDUs a real server would send about
them, and the endpoints a real server serves for them (`GET /user/devices/{userId}`,
`POST /user/keys/query`, `POST /user/keys/claim`). Records how often each endpoint was asked."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from tests.support.fake_remote import FakeRemoteServer

V1 = "/_matrix/federation/v1"


def _public(key: Any) -> str:
    return encode_verify_key_base64(get_verify_key(key))


@dataclass
class FakeUser:
    user_id: str
    stream_id: int = 0
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # device_id -> signed keys
    names: dict[str, str] = field(default_factory=dict)
    one_time_keys: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    cross_signing: dict[str, dict[str, Any]] = field(default_factory=dict)
    master_signing_key: Any = None


class FakeDevices:
    def __init__(self) -> None:
        self.remote: FakeRemoteServer | None = None
        self.users: dict[str, FakeUser] = {}
        self.asked: Counter[str] = Counter()  # "devices", "query", "claim"
        self.claims: list[dict[str, Any]] = []

    def install(self, remote: FakeRemoteServer) -> None:
        self.remote = remote
        remote.route("GET", f"{V1}/user/devices/{{userId}}", self._user_devices)
        remote.route("POST", f"{V1}/user/keys/query", self._query)
        remote.route("POST", f"{V1}/user/keys/claim", self._claim)

    # --- state ---------------------------------------------------------------------------------
    def user(self, localpart: str) -> FakeUser:
        assert self.remote is not None
        user_id = f"@{localpart}:{self.remote.server_name}"
        return self.users.setdefault(user_id, FakeUser(user_id))

    def add_device(self, localpart: str, device_id: str, name: str | None = None,
                   one_time_keys: int = 0) -> dict[str, Any]:
        """A new device with self-signed keys; the `m.device_list_update` EDU announcing it."""
        user = self.user(localpart)
        key = generate_signing_key(device_id)
        keys = sign_json({"user_id": user.user_id, "device_id": device_id,
                          "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                          "keys": {f"curve25519:{device_id}": f"curve{device_id}",
                                   f"ed25519:{device_id}": _public(key)}}, user.user_id, key)
        user.devices[device_id] = keys
        if name is not None:
            user.names[device_id] = name
        user.one_time_keys[device_id] = [
            (f"signed_curve25519:AAA{i}", sign_json({"key": f"otk{device_id}{i}"}, user.user_id, key))
            for i in range(one_time_keys)]
        return self._bump(user, device_id)

    def delete_device(self, localpart: str, device_id: str) -> dict[str, Any]:
        user = self.user(localpart)
        del user.devices[device_id]
        return self._bump(user, device_id, deleted=True)

    def set_master_key(self, localpart: str) -> dict[str, Any]:
        """New master and self-signing keys; the `m.signing_key_update` EDU announcing them."""
        user = self.user(localpart)
        master_key = generate_signing_key("")
        master_key.version = _public(master_key)
        master = {"user_id": user.user_id, "usage": ["master"],
                  "keys": {f"ed25519:{_public(master_key)}": _public(master_key)}}
        ssk = generate_signing_key("")
        ssk.version = _public(ssk)
        self_signing = sign_json({"user_id": user.user_id, "usage": ["self_signing"],
                                  "keys": {f"ed25519:{_public(ssk)}": _public(ssk)}}, user.user_id, master_key)
        user.cross_signing = {"master": master, "self_signing": self_signing}
        user.master_signing_key = master_key
        return {"edu_type": "m.signing_key_update",
                "content": {"user_id": user.user_id, "master_key": master, "self_signing_key": self_signing}}

    def _bump(self, user: FakeUser, device_id: str, deleted: bool = False) -> dict[str, Any]:
        prev = user.stream_id
        user.stream_id += 1
        content: dict[str, Any] = {"user_id": user.user_id, "device_id": device_id, "stream_id": user.stream_id,
                                   "prev_id": [prev] if prev else []}
        if deleted:
            content["deleted"] = True
        else:
            content["keys"] = user.devices[device_id]
            if device_id in user.names:
                content["device_display_name"] = user.names[device_id]
        return {"edu_type": "m.device_list_update", "content": content}

    # --- endpoints -----------------------------------------------------------------------------
    async def _user_devices(self, request: web.Request) -> web.Response:
        self.asked["devices"] += 1
        user = self.users.get(request.match_info["userId"])
        if user is None:
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "no such user"}, status=404)
        body: dict[str, Any] = {
            "user_id": user.user_id, "stream_id": user.stream_id,
            "devices": [{"device_id": d, "keys": k, **({"device_display_name": user.names[d]}
                                                      if d in user.names else {})}
                        for d, k in user.devices.items()]}
        if user.cross_signing:
            body["master_key"] = user.cross_signing["master"]
            body["self_signing_key"] = user.cross_signing["self_signing"]
        return web.json_response(body)

    async def _query(self, request: web.Request) -> web.Response:
        self.asked["query"] += 1
        wanted = (await request.json())["device_keys"]
        out: dict[str, Any] = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
        for user_id, devices in wanted.items():
            user = self.users.get(user_id)
            if user is None:
                continue
            out["device_keys"][user_id] = {d: k for d, k in user.devices.items() if not devices or d in devices}
            if user.cross_signing:
                out["master_keys"][user_id] = user.cross_signing["master"]
                out["self_signing_keys"][user_id] = user.cross_signing["self_signing"]
        return web.json_response(out)

    async def _claim(self, request: web.Request) -> web.Response:
        self.asked["claim"] += 1
        wanted = (await request.json())["one_time_keys"]
        self.claims.append(wanted)
        out: dict[str, Any] = {}
        for user_id, devices in wanted.items():
            user = self.users.get(user_id)
            for device_id in devices:
                keys = user.one_time_keys.get(device_id) if user else None
                if keys:
                    key_id, key = keys.pop(0)
                    out.setdefault(user_id, {})[device_id] = {key_id: key}
        return web.json_response({"one_time_keys": out})
