"""Client transaction IDs, scoped to the request they were sent with.

The spec scopes a transaction ID to the device *and* the request path: the same `txnId` on
`/rooms/A/send/...` and `/rooms/B/send/...`, or on a redaction after a send, names two
different requests. The key stored for idempotency therefore carries the scope:
`<length of scope>:<scope>:<client txn id>`, where the scope is `send|<room>|<event type>` or
`redact|<room>|<event id>`. The length prefix makes the key unambiguous whatever characters
the parts contain, and the client's own ID is recovered from it exactly. The API version
prefix (r0/v3) is not part of the scope: a retry under the other prefix is the same request.
"""

from __future__ import annotations


def scoped_txn_id(action: str, room_id: str, target: str, txn_id: str) -> str:
    """The stored key of `txn_id` used on `action` (`send`, `redact`) in `room_id` for `target`."""
    scope = f"{action}|{room_id}|{target}"
    return f"{len(scope)}:{scope}:{txn_id}"


def client_txn_id(key: str) -> str:
    """The client's transaction ID inside a key made by `scoped_txn_id`; other strings as they are."""
    length, sep, rest = key.partition(":")
    if not sep or not length.isascii() or not length.isdigit():
        return key
    end = int(length)
    if len(rest) <= end or rest[end] != ":":
        return key
    return rest[end + 1:]
