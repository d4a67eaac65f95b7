"""User profiles: display name, avatar and the extended profile fields of spec v1.16.

The display name and avatar also live in the user's member events; a change of either is
published as `ProfileChanged`, from which the rooms work rewrites those events.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.identifiers import parse_user_id
from homeserver.streams.bus import StreamBus
from homeserver.streams.updates import ProfileChanged
from storage.stores.profiles import ProfileStore, ProfileTooLargeError, UnknownUserError

logger = logging.getLogger(__name__)

DISPLAYNAME = "displayname"
AVATAR_URL = "avatar_url"
TIMEZONE = "m.tz"

# Profile PUT: "the total profile MUST be under 64 KiB"; key names: "maximum allowed key length of
# 255 bytes" (M_KEY_TOO_LARGE).
MAX_PROFILE_BYTES = 64 * 1024
MAX_KEY_BYTES = 255
# The spec sets no per-field limits for these two; Synapse's limits are what clients have met.
MAX_DISPLAYNAME_CHARS = 256
MAX_AVATAR_URL_CHARS = 1000

# Custom keys follow the Common Namespaced Identifier Grammar (appendices). The OpenAPI pattern is
# stricter (it demands a dot and forbids '-'), but the prose names the grammar, and Synapse accepts
# the grammar, so clients written against it keep working here.
_KEY_NAME = re.compile(r"^[a-z][a-z0-9._\-]*\Z")
_MXC_URI = re.compile(r"^mxc://[A-Za-z0-9.\-:\[\]]+/[A-Za-z0-9_\-]+\Z")

def check_key_name(key: str) -> None:
    """400 `M_KEY_TOO_LARGE` past 255 bytes, `M_INVALID_PARAM` outside the key grammar."""
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise MatrixError(400, "M_KEY_TOO_LARGE", f"keyName: longer than {MAX_KEY_BYTES} bytes")
    if not _KEY_NAME.match(key):
        raise invalid_param(f"keyName: {key!r} must start with a-z and contain only a-z, 0-9, '.', '_' and '-'")


def normalise_value(key: str, value: Any) -> Any:
    """The value to store for `key`, or 400 naming the field; None clears displayname/avatar_url."""
    if key == DISPLAYNAME:
        if not isinstance(value, str):
            raise invalid_param("displayname: must be a string")
        if len(value) > MAX_DISPLAYNAME_CHARS:
            raise invalid_param(f"displayname: longer than {MAX_DISPLAYNAME_CHARS} characters")
        # Surrounding whitespace would let two users look alike; an empty name means "no name".
        return value.strip() or None
    if key == AVATAR_URL:
        if not isinstance(value, str):
            raise invalid_param("avatar_url: must be a string")
        if value == "":
            return None
        if len(value) > MAX_AVATAR_URL_CHARS:
            raise invalid_param(f"avatar_url: longer than {MAX_AVATAR_URL_CHARS} characters")
        if not _MXC_URI.match(value):
            raise invalid_param("avatar_url: must be an mxc:// URI")
        return value
    if key == TIMEZONE and not isinstance(value, str):
        # The spec lets servers skip checking the zone name itself; clients must cope with odd ones.
        raise invalid_param("m.tz: must be a string")
    return value


class RemoteProfiles(Protocol):
    """Profiles of users of other servers (implemented over federation's /query/profile)."""

    async def query_profile(self, user_id: str, field: str | None = None) -> dict[str, Any]:
        """The profile (or `{field: value}`); MatrixError 404 when unknown, 502 when unreachable."""
        ...


class ProfileService:
    def __init__(self, server_name: str, store: ProfileStore, bus: StreamBus, *,
                 remote: RemoteProfiles | None = None,
                 unknown_user_resolvers: Sequence[Callable[[str], Awaitable[bool]]] = ()):
        self._server_name = server_name
        self._store = store
        self._bus = bus
        # None: federation is off, and profiles of other servers' users are not found.
        self._remote = remote
        # `resolver(user_id)` for unknown local users (an application service may create them); True if it did.
        self._unknown_user_resolvers = tuple(unknown_user_resolvers)

    async def get_profile(self, user_id: str) -> dict[str, Any]:
        """The whole profile of a user; 404 when the user is unknown."""
        parse_user_id(user_id, "userId")
        if self._remote is not None and not self.is_local(user_id):
            return await self._remote.query_profile(user_id)
        profile = await self._local_profile(user_id)
        if profile is None:
            raise not_found("Profile not found")
        return profile

    def is_local(self, user_id: str) -> bool:
        return parse_user_id(user_id)[1] == self._server_name

    async def get_field(self, user_id: str, key: str) -> dict[str, Any]:
        """`{key: value}` for one field; 404 when the user or the field does not exist."""
        parse_user_id(user_id, "userId")
        check_key_name(key)
        if self._remote is not None and not self.is_local(user_id):
            return await self._remote.query_profile(user_id, key)
        profile = await self._local_profile(user_id)
        if profile is None:
            raise not_found("Profile not found")
        if key not in profile:
            raise not_found(f"{key}: not set in this profile")
        return {key: profile[key]}

    async def set_field(self, requester_id: str, user_id: str, key: str, value: Any) -> None:
        """Set one field of the requester's own profile."""
        self._check_may_change(requester_id, user_id, key)
        stored = normalise_value(key, value)
        try:
            profile = await self._store.set_field(user_id, key, stored, max_profile_bytes=MAX_PROFILE_BYTES)
        except ProfileTooLargeError as e:
            raise MatrixError(
                400, "M_PROFILE_TOO_LARGE", f"{key}: the profile would be {e.size} bytes, over {e.limit}"
            ) from None
        except UnknownUserError:
            raise not_found("Profile not found") from None
        await self._changed(user_id, key, profile)

    async def delete_field(self, requester_id: str, user_id: str, key: str) -> None:
        """Remove one field of the requester's own profile; removing an absent field succeeds."""
        self._check_may_change(requester_id, user_id, key)
        try:
            profile = await self._store.delete_field(user_id, key)
        except UnknownUserError:
            raise not_found("Profile not found") from None
        await self._changed(user_id, key, profile)

    def _check_may_change(self, requester_id: str, user_id: str, key: str) -> None:
        parse_user_id(user_id, "userId")
        check_key_name(key)
        if requester_id != user_id:
            raise forbidden("userId: you may only change your own profile")

    async def _local_profile(self, user_id: str) -> dict[str, Any] | None:
        if parse_user_id(user_id)[1] != self._server_name:
            return None  # another server's user: asked over federation by get_profile/get_field
        profile = await self._store.get_profile(user_id)
        if profile is None:
            for resolver in self._unknown_user_resolvers:
                if await resolver(user_id):
                    return await self._store.get_profile(user_id)
        return profile

    async def _changed(self, user_id: str, key: str, profile: dict[str, Any]) -> None:
        if key not in (DISPLAYNAME, AVATAR_URL):
            return  # member events carry only these two
        displayname, avatar_url = profile.get(DISPLAYNAME), profile.get(AVATAR_URL)
        await self._bus.publish(ProfileChanged(user_id, displayname, avatar_url))
