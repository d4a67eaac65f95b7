"""Matrix identifier grammar (appendices: user IDs, room IDs, server names)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from homeserver.errors import MatrixError, invalid_param

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


_DOTTED_QUAD = re.compile(r"^[0-9]{1,3}(?:\.[0-9]{1,3}){3}$")


@dataclass(frozen=True)
class ServerName:
    """A parsed server name: `host` without brackets, `port` when one was given."""

    host: str
    port: int | None
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None

    @property
    def host_for_url(self) -> str:
        """The host as it appears in a URL or Host header: IPv6 literals in brackets."""
        return f"[{self.host}]" if isinstance(self.ip, ipaddress.IPv6Address) else self.host


def parse_server_name(name: str) -> ServerName:
    """Split and check a server name by the appendix grammar; ValueError naming the problem.

    Stricter than the grammar alone: IPv4 literals need octets up to 255, IPv6 literals must be
    real addresses, ports are 1-65535, DNS labels are alphanumerics and hyphens.
    """
    if not isinstance(name, str) or not is_valid_server_name(name):
        raise ValueError(f"{name!r} is not a valid server name")
    if name.startswith("["):
        host, _, rest = name[1:].partition("]")
        try:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{name!r}: {host!r} is not an IPv6 address") from None
        port_text = rest[1:] if rest.startswith(":") else None
    else:
        host, sep, port_text_or_empty = name.partition(":")
        port_text = port_text_or_empty if sep else None
        ip = None
        if _DOTTED_QUAD.match(host):
            try:
                ip = ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"{name!r}: {host!r} is not an IPv4 address") from None
        elif any(not label or label.startswith("-") or label.endswith("-") for label in host.rstrip(".").split(".")):
            raise ValueError(f"{name!r}: {host!r} is not a valid DNS name")
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
            raise ValueError(f"{name!r}: the port must be a number from 1 to 65535")
        port = int(port_text)
    return ServerName(host.lower() if ip is None else host, port, ip)


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
        raise invalid_param(f"{field}: {user_id!r} is not a valid user ID")
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
