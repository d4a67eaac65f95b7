"""Structural validation of a PDU for its room version.

Covers the PDU schemas (data/api/server-server/definitions/pdu_v*.yaml), the size
limits (client-server API "Size limits", appendices identifier lengths: all in UTF-8
bytes) and strict canonical JSON for v6+. Authorization is not checked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.errors import MatrixError
from homeserver.events.canonical_json import (
    MAX_SAFE_INTEGER,
    CanonicalJsonError,
    check_strict_canonical_json,
    encode_canonical_json,
)
from homeserver.events.room_versions import RoomVersion

MAX_PDU_BYTES = 65536
MAX_ID_BYTES = 255
# Depth must stay representable: 2**63-1 in v1-v5, the canonical JSON maximum from v6.
_MAX_DEPTH_LEGACY = 2**63 - 1


class EventValidationError(ValueError):
    """A PDU is malformed; `field` names the offending key path, `errcode` the Matrix code."""

    def __init__(self, message: str, field: str | None = None, errcode: str = "M_BAD_JSON"):
        super().__init__(message)
        self.message = message
        self.field = field
        self.errcode = errcode

    def to_matrix_error(self) -> MatrixError:
        """The client-server API error: 413 M_TOO_LARGE or 400 M_BAD_JSON."""
        return MatrixError(413 if self.errcode == "M_TOO_LARGE" else 400, self.errcode, self.message)


def _fail(field: str, problem: str, errcode: str = "M_BAD_JSON") -> EventValidationError:
    return EventValidationError(f"'{field}' {problem}", field=field, errcode=errcode)


def _is_int(value: Any) -> bool:
    return type(value) is int  # bool is an int subclass and is never a valid number here


def _require_str(pdu: Mapping[str, Any], key: str) -> str:
    if key not in pdu:
        raise _fail(key, "is required")
    value = pdu[key]
    if not isinstance(value, str):
        raise _fail(key, "must be a string")
    return value


def _check_id(field: str, value: str, sigil: str, needs_domain: bool) -> None:
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise _fail(field, "is not valid UTF-8 (lone surrogate)") from None
    if size > MAX_ID_BYTES:
        raise _fail(field, f"exceeds {MAX_ID_BYTES} bytes ({size})")
    if not value.startswith(sigil):
        raise _fail(field, f"must start with '{sigil}'")
    if needs_domain and ":" not in value:
        raise _fail(field, "must contain a server name after ':'")


def _check_byte_limit(field: str, value: str) -> None:
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise _fail(field, "is not valid UTF-8 (lone surrogate)") from None
    if size > MAX_ID_BYTES:
        raise _fail(field, f"exceeds {MAX_ID_BYTES} bytes ({size})")


def _check_refs(field: str, refs: Any, room_version: RoomVersion) -> None:
    if not isinstance(refs, list):
        raise _fail(field, "must be an array")
    pairs = room_version.event_id_in_event  # v1/v2: [event_id, {hashes}] pairs
    for i, ref in enumerate(refs):
        where = f"{field}[{i}]"
        if pairs:
            if not isinstance(ref, list) or len(ref) != 2:
                raise _fail(where, "must be an [event_id, hashes] pair")
            event_id, hashes = ref
            if not isinstance(hashes, Mapping):
                raise _fail(f"{where}[1]", "must be an object")
            where = f"{where}[0]"
        else:
            event_id = ref
        if not isinstance(event_id, str):
            raise _fail(where, "must be a string event ID")
        _check_id(where, event_id, "$", needs_domain=pairs)


def validate_pdu(pdu: Any, room_version: RoomVersion) -> None:
    """Raise EventValidationError unless `pdu` is a well-formed event for `room_version`."""
    if not isinstance(pdu, Mapping):
        raise EventValidationError("an event must be a JSON object")

    event_type = _require_str(pdu, "type")
    _check_byte_limit("type", event_type)

    _check_id("sender", _require_str(pdu, "sender"), "@", needs_domain=True)

    is_v12_create = room_version.room_id_from_create_event and event_type == "m.room.create"
    if is_v12_create:
        # The room ID of a v12 room is derived from this event's ID, so it cannot name one.
        if "room_id" in pdu:
            raise _fail("room_id", "must be absent from an m.room.create event in this room version")
    else:
        _check_id(
            "room_id",
            _require_str(pdu, "room_id"),
            "!",
            needs_domain=not room_version.room_id_from_create_event,
        )

    if room_version.event_id_in_event:
        _check_id("event_id", _require_str(pdu, "event_id"), "$", needs_domain=True)

    if "state_key" in pdu:
        state_key = pdu["state_key"]
        if not isinstance(state_key, str):
            raise _fail("state_key", "must be a string")
        _check_byte_limit("state_key", state_key)

    if "content" not in pdu:
        raise _fail("content", "is required")
    if not isinstance(pdu["content"], Mapping):
        raise _fail("content", "must be an object")

    for key in ("origin_server_ts", "depth"):
        if key not in pdu:
            raise _fail(key, "is required")
        if not _is_int(pdu[key]):
            raise _fail(key, "must be an integer")
    depth = pdu["depth"]
    max_depth = MAX_SAFE_INTEGER if room_version.strict_canonicaljson else _MAX_DEPTH_LEGACY
    if depth < 0 or depth > max_depth:
        raise _fail("depth", f"must be between 0 and {max_depth}")

    hashes = pdu.get("hashes")
    if not isinstance(hashes, Mapping):
        raise _fail("hashes", "is required and must be an object")
    if not isinstance(hashes.get("sha256"), str):
        raise _fail("hashes.sha256", "is required and must be a string")

    signatures = pdu.get("signatures")
    if not isinstance(signatures, Mapping):
        raise _fail("signatures", "is required and must be an object")
    for server, sigs in signatures.items():
        if not isinstance(sigs, Mapping):
            raise _fail(f"signatures.{server}", "must be an object")
        for key_id, sig in sigs.items():
            if not isinstance(sig, str):
                raise _fail(f"signatures.{server}.{key_id}", "must be a string")

    for key in ("prev_events", "auth_events"):
        if key not in pdu:
            raise _fail(key, "is required")
        _check_refs(key, pdu[key], room_version)
    if is_v12_create:
        for key in ("prev_events", "auth_events"):
            if pdu[key]:
                raise _fail(key, "must be empty on an m.room.create event in this room version")

    if "unsigned" in pdu and not isinstance(pdu["unsigned"], Mapping):
        raise _fail("unsigned", "must be an object")

    if event_type == "m.room.redaction":
        # Where `redacts` lives moved in v11; an absent one is left to auth/handling.
        if room_version.redacts_in_content:
            redacts, field = pdu["content"].get("redacts"), "content.redacts"
        else:
            redacts, field = pdu.get("redacts"), "redacts"
        if redacts is not None and not isinstance(redacts, str):
            raise _fail(field, "must be a string event ID")

    if room_version.strict_canonicaljson:
        try:
            check_strict_canonical_json(pdu)
        except CanonicalJsonError as e:
            raise EventValidationError(
                f"'{e.path_str}' is not canonical JSON: {e.reason}", field=e.path_str
            ) from None

    try:
        size = len(encode_canonical_json(pdu))
    except (ValueError, TypeError, UnicodeEncodeError) as e:
        # NaN/Infinity in v1-v5 events, lone surrogates, non-JSON values.
        raise EventValidationError(f"the event cannot be encoded as canonical JSON: {e}") from None
    if size > MAX_PDU_BYTES:
        raise EventValidationError(
            f"the event is {size} bytes as canonical JSON, over the {MAX_PDU_BYTES}-byte limit",
            field=None,
            errcode="M_TOO_LARGE",
        )
