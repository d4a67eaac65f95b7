"""What `GET /capabilities` tells clients this server lets them do."""

from __future__ import annotations

from typing import Any

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS


def build_capabilities(default_room_version: str, *, get_login_token: bool = False) -> dict[str, Any]:
    """The `capabilities` object: room versions from the table, and the account features on offer."""
    return {
        "m.room_versions": {
            "default": default_room_version,
            "available": {v.identifier: v.stability.value for v in KNOWN_ROOM_VERSIONS.values()},
        },
        "m.change_password": {"enabled": True},
        # Deprecated by m.profile_fields in v1.16, but clients older than that still read them.
        "m.set_displayname": {"enabled": True},
        "m.set_avatar_url": {"enabled": True},
        "m.profile_fields": {"enabled": True},
        # No e-mail or SMS delivery is configured, so 3PIDs can be neither added nor verified.
        "m.3pid_changes": {"enabled": False},
        "m.get_login_token": {"enabled": get_login_token},
    }
