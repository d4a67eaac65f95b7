"""Serialising events for clients (ClientEvent / ClientEventWithoutRoomID) and for
federation (the PDU).

Pure: the caller passes `now` and every piece of unsigned data it wants shown. The
PDU's own `unsigned` is never forwarded to clients as is, since over federation it is
whatever the remote server chose to put there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.events.event import Event
from homeserver.events.redaction import redact
from homeserver.jsonutil import Fragment, encode

# Unsigned keys that are part of the event as relayed over federation (stripped room
# state on invites and knocks); anything else in `unsigned` is local bookkeeping.
FEDERATION_UNSIGNED_KEYS = ("invite_room_state", "knock_room_state")


def _age(event: Event, now: int, age_ts: int | None) -> int:
    # age_ts is the sender's clock translated to ours (set when the event was received);
    # without it, origin_server_ts is the best estimate.
    return now - (age_ts if age_ts is not None else event.origin_server_ts)


def serialize_for_client(
    event: Event,
    now: int,
    *,
    include_room_id: bool = True,
    age_ts: int | None = None,
    redacted_because: Mapping[str, Any] | None = None,
    prev_content: Mapping[str, Any] | None = None,
    transaction_id: str | None = None,
    unsigned: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The client-server API form of `event` at time `now` (ms).

    `include_room_id=False` gives the /sync form. Passing `redacted_because` (the
    redaction event, already serialised) shows the event with its redacted content.
    `transaction_id` must only be given when serialising for the device that sent it.
    `unsigned` adds further keys (e.g. `m.relations`, `membership`, `invite_room_state`).
    """
    rv = event.room_version
    pdu = event.pdu
    content: Mapping[str, Any] = event.content
    if redacted_because is not None:
        content = redact(pdu, rv)["content"]
    out: dict[str, Any] = {
        "content": content,
        "event_id": event.event_id,
        "origin_server_ts": event.origin_server_ts,
        "sender": event.sender,
        "type": event.type,
    }
    if include_room_id:
        out["room_id"] = event.room_id
    if event.is_state():
        out["state_key"] = event.state_key

    if event.type == "m.room.redaction" and redacted_because is None:
        # v11 moved `redacts` into content; clients of either era find it in both places.
        redacts = event.redacts
        if redacts is not None:
            out["redacts"] = redacts
            if "redacts" not in content:
                out["content"] = {**content, "redacts": redacts}

    out_unsigned: dict[str, Any] = {"age": _age(event, now, age_ts)}
    if unsigned:
        out_unsigned.update(unsigned)
    if redacted_because is not None:
        out_unsigned["redacted_because"] = redacted_because
    if prev_content is not None:
        out_unsigned["prev_content"] = prev_content
    if transaction_id is not None:
        out_unsigned["transaction_id"] = transaction_id
    out["unsigned"] = out_unsigned
    return out


def _fixed_client_fields(event: Event, include_room_id: bool) -> dict[str, Any]:
    """The client form of an event without `unsigned`: what stays the same from one reader and
    one moment to the next."""
    pdu = event.pdu
    out: dict[str, Any] = {
        "content": pdu.get("content", {}),
        "event_id": event.event_id,
        "origin_server_ts": pdu.get("origin_server_ts", 0),
        "sender": pdu["sender"],
        "type": pdu["type"],
    }
    if include_room_id:
        out["room_id"] = event.room_id
    if "state_key" in pdu:
        out["state_key"] = pdu["state_key"]
    return out


def plain_client_event(event: Event, now: int, include_room_id: bool, transaction_id: str | None,
                       unsigned: Mapping[str, Any] | None) -> dict[str, Any]:
    """`serialize_for_client` of an event that is not redacted, has no `prev_content` and is not a
    redaction, without the keyword handling: a page of a thousand events goes through this."""
    out = _fixed_client_fields(event, include_room_id)
    out_unsigned: dict[str, Any] = {"age": now - out["origin_server_ts"]}
    if unsigned:
        out_unsigned.update(unsigned)
    if transaction_id is not None:
        out_unsigned["transaction_id"] = transaction_id
    out["unsigned"] = out_unsigned
    return out


def plain_client_fragment(event: Event, now: int) -> Fragment:
    """`plain_client_event(event, now, True, None, None)` as encoded JSON, for a response body.

    The part that never changes is encoded once and kept on the event; each call adds `age`. A
    page of a thousand events costs a third of what building and encoding the dicts does.
    """
    cached = event.client_json
    if cached is None:
        out = _fixed_client_fields(event, True)
        cached = event.client_json = (encode(out)[:-1], out["origin_server_ts"])  # without its closing brace
    fixed, ts = cached
    return Fragment(b"%b,\"unsigned\":{\"age\":%d}}" % (fixed, now - ts))


def serialize_for_sync(event: Event, now: int, **kwargs: Any) -> dict[str, Any]:
    """The /sync form (ClientEventWithoutRoomID): the client form without `room_id`."""
    return serialize_for_client(event, now, include_room_id=False, **kwargs)


def serialize_for_federation(
    event: Event, now: int, *, age_ts: int | None = None, redacted: bool = False
) -> dict[str, Any]:
    """The PDU as sent to other servers: local unsigned bits replaced by a fresh `age`.

    `redacted=True` sends the redacted form (as a server must for redacted events).
    """
    pdu = event.pdu
    out = redact(pdu, event.room_version) if redacted else dict(pdu)
    out_unsigned: dict[str, Any] = {"age": _age(event, now, age_ts)}
    if not redacted:
        old_unsigned = pdu.get("unsigned")
        if isinstance(old_unsigned, Mapping):
            for key in FEDERATION_UNSIGNED_KEYS:
                if key in old_unsigned:
                    out_unsigned[key] = old_unsigned[key]
    out["unsigned"] = out_unsigned
    return out
