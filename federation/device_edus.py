"""Inbound device EDUs: `m.direct_to_device`, `m.device_list_update` and `m.signing_key_update`.

Each EDU is checked against the server that sent it (the users it speaks for must be that
server's) and against the spec's shape; one that fails is logged and dropped (an EDU has no answer
to carry an error). `handlers()` is the edu_type -> handler table the inbound /send uses.

- `m.direct_to_device`: stored for our users' devices once per (sender, `message_id`), so a
  transaction re-sent after a lost answer delivers nothing twice.
- `m.device_list_update`: applied to the cached device list or triggers a resync
  (homeserver/e2ee/remote_devices.py).
- `m.signing_key_update`: the cached user's new master / self-signing keys.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from homeserver.e2ee.remote_devices import DeviceListUpdate, RemoteDeviceLists, checked_device_keys
from homeserver.e2ee.to_device import ToDeviceService
from homeserver.errors import MatrixError
from homeserver.identifiers import parse_user_id

logger = logging.getLogger(__name__)

EduHandler = Callable[[str, Any], Awaitable[None]]

DIRECT_TO_DEVICE = "m.direct_to_device"
DEVICE_LIST_UPDATE = "m.device_list_update"
SIGNING_KEY_UPDATE = "m.signing_key_update"
MAX_MESSAGE_ID_LENGTH = 255


class EduRejected(Exception):
    """An EDU that is malformed or not the origin's to send; the message says which field."""


def _user_of(value: Any, field: str, server: str | None = None) -> str:
    if not isinstance(value, str):
        raise EduRejected(f"{field}: must be a user ID")
    try:
        _, user_server = parse_user_id(value, field)
    except MatrixError:
        raise EduRejected(f"{field}: {value!r} is not a user ID") from None
    if server is not None and user_server != server:
        raise EduRejected(f"{field}: {value} is not a user of {server}")
    return value


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EduRejected(f"{field}: must be an integer")
    return value


def parse_direct_to_device(origin: str, server_name: str, content: Any
                           ) -> tuple[str, str, str, list[tuple[str, str, dict[str, Any]]]]:
    """(sender, type, message_id, [(our user, device ID or `*`, content)]) of an `m.direct_to_device`."""
    if not isinstance(content, dict):
        raise EduRejected("content: must be an object")
    sender = _user_of(content.get("sender"), "sender", origin)
    event_type = content.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise EduRejected("type: must be a non-empty string")
    message_id = content.get("message_id")
    if not isinstance(message_id, str) or not message_id or len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise EduRejected(f"message_id: must be a string of 1 to {MAX_MESSAGE_ID_LENGTH} characters")
    messages = content.get("messages")
    if not isinstance(messages, dict):
        raise EduRejected("messages: must be an object of user ID to {device ID: content}")
    out = []
    for user_id, devices in messages.items():
        _user_of(user_id, "messages", server_name)
        if not isinstance(devices, dict):
            raise EduRejected(f"messages.{user_id}: must be an object of device ID to content")
        for device_id, message in devices.items():
            if not device_id or not isinstance(message, dict):
                raise EduRejected(f"messages.{user_id}.{device_id}: must be an object under a device ID")
            out.append((user_id, device_id, message))
    return sender, event_type, message_id, out


def parse_device_list_update(origin: str, content: Any) -> DeviceListUpdate:
    if not isinstance(content, dict):
        raise EduRejected("content: must be an object")
    user_id = _user_of(content.get("user_id"), "user_id", origin)
    device_id = content.get("device_id")
    if not isinstance(device_id, str) or not device_id:
        raise EduRejected("device_id: must be a non-empty string")
    stream_id = _int(content.get("stream_id"), "stream_id")
    prev_ids = content.get("prev_id", [])
    if not isinstance(prev_ids, list):
        raise EduRejected("prev_id: must be a list of integers")
    prev = tuple(_int(p, "prev_id") for p in prev_ids)
    deleted = content.get("deleted", False)
    if not isinstance(deleted, bool):
        raise EduRejected("deleted: must be a boolean")
    name = content.get("device_display_name")
    if name is not None and not isinstance(name, str):
        raise EduRejected("device_display_name: must be a string")
    keys = None
    if not deleted and content.get("keys") is not None:
        keys = checked_device_keys(content["keys"], user_id, device_id)
        if keys is None:
            raise EduRejected("keys: not this device's keys, or not self-signed by it")
    return DeviceListUpdate(user_id, device_id, stream_id, prev, deleted, name, keys)


def parse_signing_key_update(origin: str, content: Any) -> tuple[str, dict[str, dict[str, Any]]]:
    """(user_id, {key_type: key}) of an `m.signing_key_update` (the keys are checked by the cache)."""
    if not isinstance(content, dict):
        raise EduRejected("content: must be an object")
    user_id = _user_of(content.get("user_id"), "user_id", origin)
    keys = {}
    for field, key_type in (("master_key", "master"), ("self_signing_key", "self_signing")):
        value = content.get(field)
        if value is None:
            continue
        if not isinstance(value, dict) or value.get("user_id") != user_id:
            raise EduRejected(f"{field}: must be a cross-signing key of {user_id}")
        keys[key_type] = value
    return user_id, keys


class DeviceEdus:
    """The device EDUs' handlers for the inbound /send."""

    def __init__(self, server_name: str, to_device: ToDeviceService, remote_devices: RemoteDeviceLists):
        self._server_name = server_name
        self._to_device = to_device
        self._remote_devices = remote_devices

    def handlers(self) -> Mapping[str, EduHandler]:
        return {
            DIRECT_TO_DEVICE: self.receive_direct_to_device,
            DEVICE_LIST_UPDATE: self.receive_device_list_update,
            SIGNING_KEY_UPDATE: self.receive_signing_key_update,
        }

    async def receive_direct_to_device(self, origin: str, content: Any) -> None:
        try:
            sender, event_type, message_id, messages = parse_direct_to_device(origin, self._server_name, content)
        except EduRejected as e:
            logger.info("dropping an m.direct_to_device from %s: %s", origin, e)
            return
        await self._to_device.receive_remote(sender, event_type, message_id, messages)

    async def receive_device_list_update(self, origin: str, content: Any) -> None:
        try:
            update = parse_device_list_update(origin, content)
        except EduRejected as e:
            logger.info("dropping an m.device_list_update from %s: %s", origin, e)
            return
        await self._remote_devices.receive_device_update(update)

    async def receive_signing_key_update(self, origin: str, content: Any) -> None:
        try:
            user_id, keys = parse_signing_key_update(origin, content)
        except EduRejected as e:
            logger.info("dropping an m.signing_key_update from %s: %s", origin, e)
            return
        if keys:
            await self._remote_devices.receive_signing_key_update(user_id, keys)
