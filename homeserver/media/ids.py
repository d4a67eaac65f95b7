"""Media IDs and mxc:// URIs: random generation and the spec's character allow-list."""

from __future__ import annotations

import re
import secrets
import string

from homeserver.errors import invalid_param, not_found
from homeserver.identifiers import is_valid_server_name

# The spec allows only these characters, which also keeps IDs safe as path components.
_MEDIA_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}\Z")
_ALPHABET = string.ascii_letters
MEDIA_ID_LENGTH = 24


def new_media_id() -> str:
    """A random 24-letter ID (~137 bits), unguessable so knowing one does not reveal others."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(MEDIA_ID_LENGTH))


def is_valid_media_id(media_id: str) -> bool:
    return bool(_MEDIA_ID.match(media_id))


def mxc_uri(server_name: str, media_id: str) -> str:
    return f"mxc://{server_name}/{media_id}"


def check_media_address(server_name: str, media_id: str) -> None:
    """Refuse a malformed server name (400) or media ID (404, as no such media can exist)."""
    if not is_valid_server_name(server_name):
        raise invalid_param(f"serverName: {server_name!r} is not a valid server name")
    if not is_valid_media_id(media_id):
        raise not_found("mediaId: no media has this ID")
