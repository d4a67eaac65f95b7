"""Matrix identifier grammar (appendices: user IDs, room IDs, server names)."""

from __future__ import annotations

import re

from homeserver.errors import MatrixError

# Localparts we create: the spec's strict grammar for new user IDs.
_LOCALPART = re.compile(r"^[a-z0-9._=\-/+]+\Z")
# Localparts we accept from elsewhere (historical user IDs may contain more).
_HISTORICAL_LOCALPART = re.compile(r"^[\x21-\x39\x3b-\x7e]+\Z")
_SERVER_NAME = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]{2,45}\]|[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[A-Za-z0-9\-.]{1,255})(?::[0-9]{1,5})?\Z"
)
# Opaque parts of room and event IDs: printable ASCII without spaces (no control characters,
# so no trailing newline either).
_OPAQUE = re.compile(r"[\x21-\x7e]+")
MAX_USER_ID_LENGTH = 255
MAX_ID_LENGTH = 255


def is_valid_server_name(name: str) -> bool:
    return isinstance(name, str) and bool(_SERVER_NAME.match(name))


def _is_valid_opaque_id(identifier: str, sigil: str) -> bool:
    """`sigil` + printable ASCII, at most 255 bytes; a `:server` suffix must be a valid server name.

    Room IDs of room version 12 and event IDs of versions 3+ carry no server name.
    """
    if not isinstance(identifier, str) or len(identifier) < 2 or identifier[0] != sigil:
        return False
    if len(identifier) > MAX_ID_LENGTH or not _OPAQUE.fullmatch(identifier):
        return False
    _, colon, server = identifier.partition(":")
    return not colon or is_valid_server_name(server)


def is_valid_room_id(room_id: str) -> bool:
    return _is_valid_opaque_id(room_id, "!")


def is_valid_event_id(event_id: str) -> bool:
    return _is_valid_opaque_id(event_id, "$")


def is_valid_room_alias(alias: str) -> bool:
    """`#localpart:server`; the localpart may be any Unicode except whitespace and `:` (as Synapse)."""
    try:
        localpart, _ = split_id(alias, "#")
    except ValueError:
        return False
    return len(alias.encode()) <= MAX_ID_LENGTH and not any(c.isspace() or c == ":" for c in localpart)


def split_id(identifier: str, sigil: str) -> tuple[str, str]:
    """(localpart, server_name) of `@local:server`; raises ValueError when malformed."""
    if not isinstance(identifier, str) or len(identifier) < 3 or identifier[0] != sigil or ":" not in identifier:
        raise ValueError(f"{identifier!r} is not a valid {sigil}-identifier")
    localpart, _, server = identifier[1:].partition(":")
    if not localpart or not is_valid_server_name(server):
        raise ValueError(f"{identifier!r} is not a valid {sigil}-identifier")
    return localpart, server


def is_valid_user_id(user_id: str) -> bool:
    try:
        localpart, _ = split_id(user_id, "@")
    except ValueError:
        return False
    return len(user_id.encode()) <= MAX_USER_ID_LENGTH and bool(_HISTORICAL_LOCALPART.match(localpart))


def parse_user_id(user_id: str, field: str = "user_id") -> tuple[str, str]:
    """(localpart, server) of a user ID, or `400 M_INVALID_PARAM` naming the field."""
    if not is_valid_user_id(user_id):
        raise MatrixError(400, "M_INVALID_PARAM", f"{field}: {user_id!r} is not a valid user ID")
    return split_id(user_id, "@")


def check_new_localpart(localpart: str, server_name: str) -> None:
    """Validate a localpart for a new account: `M_INVALID_USERNAME` with the reason."""
    if not localpart:
        raise MatrixError(400, "M_INVALID_USERNAME", "username must not be empty")
    if not _LOCALPART.match(localpart):
        raise MatrixError(
            400, "M_INVALID_USERNAME",
            "username may only contain the characters a-z, 0-9, '.', '_', '=', '-', '/' and '+'",
        )
    if localpart[0] == "_":
        raise MatrixError(400, "M_INVALID_USERNAME", "username may not start with '_'")
    if len(f"@{localpart}:{server_name}".encode()) > MAX_USER_ID_LENGTH:
        raise MatrixError(400, "M_INVALID_USERNAME", f"user ID may not be longer than {MAX_USER_ID_LENGTH} bytes")
