"""Asking other servers on behalf of local clients: profiles (/query/profile), aliases
(/query/directory), room directories (/publicRooms), and users' devices and keys (/user/devices,
/user/keys/query, /user/keys/claim). Implements the services' RemoteProfiles, RemoteAliases,
RemoteRoomDirectory and RemoteKeyQueries; failures become client errors (`client_error`).
Answers about devices and keys keep only what concerns the users asked about, well formed and
(device keys) validly self-signed."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from federation.client import (
    FederationClient,
    FederationDenied,
    FederationError,
    FederationHttpError,
    quote_segment,
)
from homeserver.clock import Clock
from homeserver.e2ee.remote_devices import checked_cross_signing_keys, checked_device_keys
from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.identifiers import parse_user_id, split_id
from storage.stores.remote_devices import RemoteDevice, RemoteDeviceList

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


    # --- RemoteKeyQueries -------------------------------------------------------------------
    async def fetch_device_list(self, user_id: str) -> RemoteDeviceList:
        _, server = parse_user_id(user_id, "user_id")
        try:
            answer = await self._client.get_json(server, f"{FEDERATION_V1}/user/devices/{quote_segment(user_id)}")
        except FederationError as e:
            raise client_error(e, f"Could not fetch the devices of {user_id}") from None
        if not isinstance(answer, dict) or answer.get("user_id") != user_id:
            raise MatrixError(502, "M_UNKNOWN", f"{server} answered /user/devices for someone else than {user_id}")
        stream_id = answer.get("stream_id")
        devices = answer.get("devices")
        if isinstance(stream_id, bool) or not isinstance(stream_id, int) or not isinstance(devices, list):
            raise MatrixError(502, "M_UNKNOWN", f"{server} answered /user/devices without stream_id and devices")
        parsed: dict[str, RemoteDevice] = {}
        for device in devices:
            device_id = device.get("device_id") if isinstance(device, dict) else None
            if not isinstance(device_id, str) or not device_id:
                continue
            name = device.get("device_display_name")
            parsed[device_id] = RemoteDevice(device_id, name if isinstance(name, str) else None,
                                             checked_device_keys(device.get("keys"), user_id, device_id))
        cross_signing = checked_cross_signing_keys(
            {"master": answer.get("master_key"), "self_signing": answer.get("self_signing_key")}, user_id)
        return RemoteDeviceList(user_id, stream_id, tuple(parsed.values()), cross_signing)

    async def query_keys(self, server: str, device_keys: dict[str, list[str]]) -> dict[str, Any]:
        try:
            answer = await self._client.post_json(server, f"{FEDERATION_V1}/user/keys/query",
                                                  {"device_keys": device_keys})
        except FederationError as e:
            raise client_error(e, f"Could not query the keys of users of {server}") from None
        if not isinstance(answer, dict):
            raise MatrixError(502, "M_UNKNOWN", f"{server} answered /user/keys/query with something not an object")
        out: dict[str, Any] = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
        devices = answer.get("device_keys") if isinstance(answer.get("device_keys"), dict) else {}
        for user_id, wanted in device_keys.items():
            theirs = devices.get(user_id)
            if isinstance(theirs, dict):
                out["device_keys"][user_id] = {
                    device_id: keys for device_id, keys in theirs.items()
                    if (not wanted or device_id in wanted) and checked_device_keys(keys, user_id, device_id)}
            cross_signing = checked_cross_signing_keys(
                {"master": _field(answer, "master_keys", user_id),
                 "self_signing": _field(answer, "self_signing_keys", user_id)}, user_id)
            if "master" in cross_signing:
                out["master_keys"][user_id] = cross_signing["master"]
            if "self_signing" in cross_signing:
                out["self_signing_keys"][user_id] = cross_signing["self_signing"]
        return out

    async def claim_keys(self, server: str, one_time_keys: dict[str, dict[str, str]]) -> dict[str, Any]:
        try:
            answer = await self._client.post_json(server, f"{FEDERATION_V1}/user/keys/claim",
                                                  {"one_time_keys": one_time_keys})
        except FederationError as e:
            raise client_error(e, f"Could not claim keys of users of {server}") from None
        claimed = answer.get("one_time_keys") if isinstance(answer, dict) else None
        if not isinstance(claimed, dict):
            raise MatrixError(502, "M_UNKNOWN", f"{server} answered /user/keys/claim without one_time_keys")
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for user_id, wanted in one_time_keys.items():
            theirs = claimed.get(user_id)
            if not isinstance(theirs, dict):
                continue
            for device_id, keys in theirs.items():
                if device_id in wanted and isinstance(keys, dict):
                    out.setdefault(user_id, {})[device_id] = {
                        key_id: key for key_id, key in keys.items() if isinstance(key, (dict, str))}
        return {"one_time_keys": out}


def _field(answer: dict[str, Any], field: str, user_id: str) -> Any:
    value = answer.get(field)
    return value.get(user_id) if isinstance(value, dict) else None
