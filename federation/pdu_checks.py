"""The first checks on a PDU received over federation, before any authorization (server-server API,
"Checks performed on receipt of a PDU", steps 1-3, and "Validating hashes and signatures on
received events"):

1. it is a valid event for its room version (format and size), else rejected;
2. it carries valid signatures from every server that must sign it, else rejected;
3. its content hash matches, else it is replaced by its redacted form.

Pure apart from the key lookup, so `/send`, `/send_join`, backfill and `/get_missing_events` can
all run it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from federation.keys import KeyLookup, KeyLookupError
from homeserver.events.hashing import EventIdError, check_content_hash, compute_event_id
from homeserver.events.redaction import redact
from homeserver.events.room_versions import RoomVersion
from homeserver.events.signing import SignatureError, event_signature_key_ids, verify_event_signature
from homeserver.events.validation import EventValidationError, validate_pdu
from homeserver.identifiers import split_id


class PduRejected(Exception):
    """The PDU fails a check that rejects it outright; `reason` says which."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CheckedPdu:
    pdu: dict[str, Any]  # the event to use from now on: redacted when its content hash did not match
    event_id: str
    redacted_for_hash: bool


def _server_of(identifier: str, sigil: str) -> str | None:
    try:
        return split_id(identifier, sigil)[1]
    except ValueError:
        return None


def required_signers(pdu: Mapping[str, Any], room_version: RoomVersion) -> set[str]:
    """The servers whose signatures the PDU must carry."""
    servers: set[str] = set()
    content = pdu.get("content") if isinstance(pdu.get("content"), Mapping) else {}
    is_3pid_invite = (pdu.get("type") == "m.room.member" and content.get("membership") == "invite"
                      and "third_party_invite" in content)
    sender_server = _server_of(pdu.get("sender", ""), "@")
    # An invite made from a third-party invite may be sent by another server than the sender's.
    if sender_server is not None and not is_3pid_invite:
        servers.add(sender_server)
    if room_version.event_id_in_event:
        event_server = _server_of(pdu.get("event_id", ""), "$")
        if event_server is not None:
            servers.add(event_server)
    if (room_version.restricted_join_rule and pdu.get("type") == "m.room.member"
            and content.get("membership") == "join"):
        authoriser = content.get("join_authorised_via_users_server")
        if isinstance(authoriser, str):
            authorising_server = _server_of(authoriser, "@")
            if authorising_server is not None:
                servers.add(authorising_server)
    return servers


async def check_signatures(pdu: Mapping[str, Any], room_version: RoomVersion, keys: KeyLookup) -> None:
    """PduRejected unless each required server signed the PDU with a key we can verify.

    Signatures by keys we cannot get (unknown, or expired before the event) are skipped, as the spec
    says; a required server with no verifiable signature left, or any signature that fails to verify,
    rejects the event. From room version 5 a key must still be valid at the event's origin_server_ts.
    """
    valid_at = pdu.get("origin_server_ts", 0) if room_version.enforce_key_validity else 0
    for server in sorted(required_signers(pdu, room_version)):
        key_ids = event_signature_key_ids(pdu, server)
        if not key_ids:
            raise PduRejected(f"not signed by {server}")
        verified = 0
        problems = []
        for key_id in key_ids:
            try:
                key = await keys.get_verify_key(server, key_id, valid_at_ts=valid_at)
            except (KeyLookupError, ValueError) as e:
                problems.append(str(e))
                continue
            try:
                verify_event_signature(pdu, room_version, server, key)
            except SignatureError as e:
                raise PduRejected(f"bad signature by {server}: {e}") from None
            verified += 1
        if not verified:
            raise PduRejected(f"no verifiable signature by {server}: {'; '.join(problems)}")


async def check_inbound_pdu(pdu: Any, room_version: RoomVersion, keys: KeyLookup) -> CheckedPdu:
    """Run checks 1-3 on a received PDU; PduRejected when it must be dropped."""
    try:
        validate_pdu(pdu, room_version)
    except EventValidationError as e:
        raise PduRejected(f"invalid event: {e.message}") from None
    await check_signatures(pdu, room_version, keys)
    redacted = False
    if not check_content_hash(pdu):
        pdu = redact(pdu, room_version)
        redacted = True
    try:
        event_id = compute_event_id(pdu, room_version)
    except EventIdError as e:
        raise PduRejected(str(e)) from None
    return CheckedPdu(dict(pdu), event_id, redacted)
