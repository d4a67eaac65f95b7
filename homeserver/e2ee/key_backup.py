"""Server-side key backup: /room_keys/version and /room_keys/keys.

Keys may only be written into the user's current backup version (anything else is
`403 M_WRONG_ROOM_KEYS_VERSION` with the current version, so a client that missed a backup reset
notices). When a session is uploaded again the better copy wins, by the spec's rule: a verified
key beats an unverified one, then the lower `first_message_index`, then the lower `forwarded_count`.
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import MatrixError, bad_json, invalid_param, missing_param, not_found
from storage.stores.key_backup import BackupVersion, KeyBackupStore, NotCurrentVersion, RoomKey

# The backup algorithms the spec defines; a version with any other algorithm could never be
# served back as a valid response, so it is refused when created (Synapse stores anything).
KNOWN_ALGORITHMS = frozenset({"m.megolm_backup.v1.curve25519-aes-sha2"})


def should_replace(current: RoomKey, new: RoomKey) -> bool:
    """Whether `new` is a better copy of a session than `current` (ties keep the current one)."""
    if current.is_verified != new.is_verified:
        return new.is_verified
    if current.first_message_index != new.first_message_index:
        return new.first_message_index < current.first_message_index
    return new.forwarded_count < current.forwarded_count


def parse_version_body(body: dict[str, Any]) -> tuple[str, dict[str, Any] | str]:
    """(algorithm, auth_data) of a backup version body.

    Older clients send `auth_data` as an opaque (base64) string, the form the key backup
    proposal first described; Synapse stores whatever JSON it is given and serves it back
    unchanged, so a string is kept as a string and returned as such.
    """
    algorithm = body.get("algorithm")
    if not isinstance(algorithm, str) or not algorithm:
        raise bad_json("algorithm: required, a string")
    if algorithm not in KNOWN_ALGORITHMS:
        raise invalid_param(f"algorithm: unknown backup algorithm {algorithm!r}; "
                            f"supported: {', '.join(sorted(KNOWN_ALGORITHMS))}")
    auth_data = body.get("auth_data")
    if not isinstance(auth_data, (dict, str)):
        raise bad_json("auth_data: required, an object (or, from older clients, a string)")
    return algorithm, auth_data


def parse_room_key(value: Any, room_id: str, session_id: str, field: str) -> RoomKey:
    if not isinstance(value, dict):
        raise bad_json(f"{field}: must be a KeyBackupData object")
    for name in ("first_message_index", "forwarded_count"):
        number = value.get(name)
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            raise bad_json(f"{field}.{name}: required, a non-negative integer")
    if not isinstance(value.get("is_verified"), bool):
        raise bad_json(f"{field}.is_verified: required, a boolean")
    if not isinstance(value.get("session_data"), dict):
        raise bad_json(f"{field}.session_data: required, an object")
    return RoomKey(room_id, session_id, value["first_message_index"], value["forwarded_count"],
                   value["is_verified"], value["session_data"])


def parse_sessions(value: Any, room_id: str, field: str) -> list[RoomKey]:
    if not isinstance(value, dict) or not isinstance(value.get("sessions"), dict):
        raise bad_json(f"{field}.sessions: required, an object of session ID to key data")
    return [parse_room_key(data, room_id, session_id, f"{field}.sessions.{session_id}")
            for session_id, data in value["sessions"].items()]


def parse_rooms(body: dict[str, Any]) -> list[RoomKey]:
    rooms = body.get("rooms")
    if not isinstance(rooms, dict):
        raise bad_json("rooms: required, an object of room ID to {sessions}")
    return [key for room_id, room in rooms.items() for key in parse_sessions(room, room_id, f"rooms.{room_id}")]


def parse_version_param(text: str | None, *, required: bool = True) -> int | None:
    """A backup version from the path or query; versions we never issued read as not found."""
    if text is None:
        if required:
            raise missing_param("version: required")
        return None
    if not text.isdigit() or len(text) > 18:
        raise not_found(f"version: no backup version {text!r}")
    return int(text)


def version_json(version: BackupVersion) -> dict[str, Any]:
    return {"algorithm": version.algorithm, "auth_data": version.auth_data, "count": version.count,
            "etag": str(version.etag), "version": str(version.version)}


def keys_json(version: BackupVersion) -> dict[str, Any]:
    return {"etag": str(version.etag), "count": version.count}


class KeyBackupService:
    def __init__(self, store: KeyBackupStore):
        self._store = store

    # --- versions -------------------------------------------------------------------------
    async def create_version(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /room_keys/version: a new backup, which becomes the current one."""
        algorithm, auth_data = parse_version_body(body)
        return {"version": str(await self._store.create_version(user_id, algorithm, auth_data))}

    async def get_version(self, user_id: str, version_text: str | None) -> dict[str, Any]:
        """GET /room_keys/version[/{version}]: 404 M_NOT_FOUND when there is no such backup."""
        version = parse_version_param(version_text, required=False)
        found = await self._store.get_version(user_id, version)
        if found is None:
            raise not_found("No current backup version" if version is None else f"version: no backup {version}")
        return version_json(found)

    async def update_version(self, user_id: str, version_text: str, body: dict[str, Any]) -> None:
        """PUT /room_keys/version/{version}: replace auth_data; the algorithm cannot change."""
        version = parse_version_param(version_text)
        assert version is not None
        algorithm, auth_data = parse_version_body(body)
        if "version" in body and body["version"] != version_text:
            raise invalid_param("version: does not match the version in the path")
        found = await self._store.get_version(user_id, version)
        if found is None:
            raise not_found(f"version: no backup {version}")
        if algorithm != found.algorithm:
            raise invalid_param("algorithm: cannot change the algorithm of a backup")
        await self._store.update_auth_data(user_id, version, auth_data)

    async def delete_version(self, user_id: str, version_text: str) -> None:
        """DELETE /room_keys/version/{version}: the backup and all its keys."""
        version = parse_version_param(version_text)
        assert version is not None
        if not await self._store.delete_version(user_id, version):
            raise not_found(f"version: no backup {version}")

    # --- keys --------------------------------------------------------------------------------
    async def put_keys(self, user_id: str, version_text: str | None, keys: list[RoomKey]) -> dict[str, Any]:
        """PUT /room_keys/keys[...]: store keys in the current backup; its etag and count."""
        if version_text is None:
            raise missing_param("version: required")
        current = await self._store.get_version(user_id, None)
        if current is None:
            raise not_found("No current backup version")
        if version_text != str(current.version):
            raise _wrong_version(current.version)
        try:
            stored = await self._store.put_keys(user_id, current.version, keys, should_replace)
        except NotCurrentVersion as e:  # replaced between the two reads
            if e.current is None:
                raise not_found("No current backup version") from None
            raise _wrong_version(e.current) from None
        return keys_json(stored)

    async def get_keys(self, user_id: str, version_text: str | None, room_id: str | None = None,
                       session_id: str | None = None) -> dict[str, Any]:
        """GET /room_keys/keys[/{roomId}[/{sessionId}]]: the shape narrows with the path."""
        version = parse_version_param(version_text)
        assert version is not None
        keys = await self._store.get_keys(user_id, version, room_id, session_id)
        if keys is None:
            raise not_found(f"version: no backup {version}")
        if session_id is not None:
            if not keys:
                raise not_found("No room_keys found")
            return keys[0].to_json()
        if room_id is not None:
            return {"sessions": {k.session_id: k.to_json() for k in keys}}
        rooms: dict[str, dict[str, Any]] = {}
        for key in keys:
            rooms.setdefault(key.room_id, {"sessions": {}})["sessions"][key.session_id] = key.to_json()
        return {"rooms": rooms}

    async def delete_keys(self, user_id: str, version_text: str | None, room_id: str | None = None,
                          session_id: str | None = None) -> dict[str, Any]:
        """DELETE /room_keys/keys[/{roomId}[/{sessionId}]]: the version's new etag and count."""
        version = parse_version_param(version_text)
        assert version is not None
        result = await self._store.delete_keys(user_id, version, room_id, session_id)
        if result is None:
            raise not_found(f"version: no backup {version}")
        return keys_json(result)


def _wrong_version(current: int) -> MatrixError:
    return MatrixError(403, "M_WRONG_ROOM_KEYS_VERSION", "version: not the current backup version",
                       current_version=str(current))
