"""Content hashes, reference hashes and hash-derived event IDs (server-server API,
"Calculating the content hash / reference hash for an event"; rooms v3/v4 "Event IDs").
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from unpaddedbase64 import decode_base64, encode_base64

from homeserver.events.canonical_json import encode_canonical_json
from homeserver.events.redaction import redact
from homeserver.events.room_versions import EventIdFormat, RoomVersion

# Excluded from the content hash: they change after hashing (unsigned in transit,
# signatures after the hash is taken, hashes is the output itself). Synapse also drops
# the legacy top-level `age_ts`, `outlier` and `destinations` that early Synapse events
# carried; we do the same so the hashes of those historic events still verify.
_CONTENT_HASH_EXCLUDED = frozenset({"unsigned", "signatures", "hashes", "age_ts", "outlier", "destinations"})


class EventIdError(ValueError):
    """The event ID cannot be determined (v1/v2 event without a usable `event_id`)."""


def compute_content_hash(pdu: Mapping[str, Any]) -> bytes:
    """The raw SHA-256 content hash of `pdu`."""
    stripped = {k: v for k, v in pdu.items() if k not in _CONTENT_HASH_EXCLUDED}
    return hashlib.sha256(encode_canonical_json(stripped)).digest()


def add_content_hash(pdu: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy of `pdu` whose `hashes.sha256` is its content hash."""
    out = dict(pdu)
    out["hashes"] = {"sha256": encode_base64(compute_content_hash(pdu))}
    return out


def check_content_hash(pdu: Mapping[str, Any]) -> bool:
    """Whether `hashes.sha256` is present, decodes, and matches the content."""
    hashes = pdu.get("hashes")
    if not isinstance(hashes, Mapping):
        return False
    claimed = hashes.get("sha256")
    if not isinstance(claimed, str):
        return False
    try:
        claimed_bytes = decode_base64(claimed)
    except Exception:  # binascii.Error, ValueError: not base64 at all
        return False
    return hmac.compare_digest(claimed_bytes, compute_content_hash(pdu))


def compute_reference_hash(pdu: Mapping[str, Any], room_version: RoomVersion) -> bytes:
    """The raw SHA-256 reference hash: redact, drop signatures/unsigned, hash."""
    redacted = redact(pdu, room_version)
    redacted.pop("signatures", None)
    # redact() already drops unsigned, so only the two keys above can remain to strip.
    return hashlib.sha256(encode_canonical_json(redacted)).digest()


def event_id_from_reference_hash(ref_hash: bytes, fmt: EventIdFormat) -> str:
    """`$` + the reference hash in the format's base64 alphabet."""
    if fmt is EventIdFormat.V2:
        return "$" + encode_base64(ref_hash)
    if fmt is EventIdFormat.V3:
        return "$" + encode_base64(ref_hash, urlsafe=True)
    raise ValueError(f"event ID format {fmt.value} is not derived from a hash")


def compute_event_id(pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    """The event ID: carried in the PDU (v1/v2) or derived from its reference hash (v3+)."""
    fmt = room_version.event_id_format
    if fmt is EventIdFormat.V1:
        event_id = pdu.get("event_id")
        if not isinstance(event_id, str):
            raise EventIdError(f"room version {room_version.identifier} events must carry an event_id")
        return event_id
    return event_id_from_reference_hash(compute_reference_hash(pdu, room_version), fmt)
