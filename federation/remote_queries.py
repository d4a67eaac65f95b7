"""Asking other servers on behalf of local clients: profiles (/query/profile), aliases
(/query/directory) and room directories (/publicRooms). Implements the services' RemoteProfiles,
RemoteAliases and RemoteRoomDirectory; failures become client errors (`client_error`)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from federation.client import FederationClient, FederationDenied, FederationError, FederationHttpError
from homeserver.clock import Clock
from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.identifiers import parse_user_id, split_id

FEDERATION_V1 = "/_matrix/federation/v1"
# Remote profiles are kept this long, so a client rendering a member list asks each server once.
PROFILE_CACHE_MS = 60_000
PROFILE_CACHE_SIZE = 10_000


def client_error(error: FederationError, what: str) -> MatrixError:
    """The client-facing error for a failed federation request, as Synapse answers them: the remote's
    own 4xx error passed on, our refusal as 403, anything else (unreachable, 5xx, garbage) as 502."""
    if isinstance(error, FederationHttpError) and 400 <= error.status < 500:
        message = error.body.get("error") if isinstance(error.body, dict) else None
        errcode = error.errcode if isinstance(error.errcode, str) else "M_UNKNOWN"
        return MatrixError(error.status, errcode, f"{what}: {message or error}")
    if isinstance(error, FederationDenied):
        return forbidden(f"{what}: {error}")
    return MatrixError(502, "M_UNKNOWN", f"{what}: {error}")


class RemoteQueries:
    """Profiles, aliases and public room lists of other servers."""

    def __init__(self, client: FederationClient, clock: Clock):
        self._client = client
        self._clock = clock
        self._profiles: OrderedDict[str, tuple[int, dict[str, Any]]] = OrderedDict()

    # --- RemoteProfiles ------------------------------------------------------------------
    async def query_profile(self, user_id: str, field: str | None = None) -> dict[str, Any]:
        _, server = parse_user_id(user_id, "userId")
        profile = await self._whole_profile(user_id, server)
        if field is None:
            return profile
        if field not in profile:
            raise not_found(f"{field}: not set in this profile")
        return {field: profile[field]}

    async def _whole_profile(self, user_id: str, server: str) -> dict[str, Any]:
        now = self._clock.time_ms()
        cached = self._profiles.get(user_id)
        if cached is not None and now - cached[0] < PROFILE_CACHE_MS:
            return dict(cached[1])
        try:
            answer = await self._client.get_json(server, f"{FEDERATION_V1}/query/profile", {"user_id": user_id})
        except FederationError as e:
            raise client_error(e, f"Could not fetch the profile of {user_id}") from None
        if not isinstance(answer, dict):
            raise MatrixError(502, "M_UNKNOWN", f"{server} answered the profile query with something not an object")
        self._profiles[user_id] = (now, answer)
        self._profiles.move_to_end(user_id)
        while len(self._profiles) > PROFILE_CACHE_SIZE:
            self._profiles.popitem(last=False)
        return dict(answer)

    # --- RemoteAliases ---------------------------------------------------------------------
    async def query_alias(self, alias: str) -> dict[str, Any]:
        _, server = split_id(alias, "#")
        try:
            answer = await self._client.get_json(server, f"{FEDERATION_V1}/query/directory", {"room_alias": alias})
        except FederationError as e:
            raise client_error(e, f"Could not resolve {alias}") from None
        room_id = answer.get("room_id") if isinstance(answer, dict) else None
        servers = answer.get("servers") if isinstance(answer, dict) else None
        if not isinstance(room_id, str) or not room_id.startswith("!"):
            raise MatrixError(502, "M_UNKNOWN", f"{server} answered the alias query without a room_id")
        if not isinstance(servers, list):
            servers = []
        servers = [s for s in servers if isinstance(s, str)]
        # The alias's own server first: it just told us it knows the room.
        if server not in servers:
            servers.insert(0, server)
        return {"room_id": room_id, "servers": servers}

    # --- RemoteRoomDirectory ----------------------------------------------------------------
    async def public_rooms(self, server: str, params: Mapping[str, Any] | None,
                           body: Mapping[str, Any] | None) -> dict[str, Any]:
        path = f"{FEDERATION_V1}/publicRooms"
        try:
            if body is None:
                answer = await self._client.get_json(server, path, dict(params or {}))
            else:
                answer = await self._post_public_rooms(server, path, body)
        except FederationError as e:
            raise client_error(e, f"Could not list the public rooms of {server}") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("chunk"), list):
            raise MatrixError(502, "M_UNKNOWN", f"{server} answered /publicRooms without a chunk list")
        return answer

    async def _post_public_rooms(self, server: str, path: str, body: Mapping[str, Any]) -> Any:
        content = {k: v for k, v in body.items() if v is not None}
        try:
            return await self._client.post_json(server, path, content)
        except FederationHttpError as e:
            # Servers predating POST /publicRooms over federation: a search needs it, a plain page does not.
            search = body.get("filter") or {}
            if e.status not in (400, 404, 405) or (isinstance(search, dict) and search.get("generic_search_term")):
                raise
        params = {k: body[k] for k in ("limit", "since", "third_party_instance_id") if body.get(k) is not None}
        if body.get("include_all_networks"):
            params["include_all_networks"] = "true"
        return await self._client.get_json(server, path, params)

