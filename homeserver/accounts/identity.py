"""Talking to identity servers on a client's behalf (identity service API v2).

Used for third-party invites (look an address up; if nobody is bound to it, store an invite on the
identity server) and for `/account/3pid/bind` and `/unbind`, which are proxied to the identity
server the client names. Identity servers are reached over HTTPS by default; every connection is
checked against the same address guard as URL previews, so a client cannot make the homeserver
call private networks (`identity.ip_range_allowlist` opens ranges, e.g. loopback in tests), and
`identity.trusted_servers`, when set, limits which identity servers may be named at all.

The unbind request carries no user credential: the homeserver signs it (`Authorization: X-Matrix`),
as the identity service API describes.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from signedjson.key import SigningKey

from homeserver.errors import MatrixError, invalid_param
from homeserver.events.signing import compute_json_signature, key_id_of
from homeserver.identifiers import is_valid_server_name
from homeserver.ip_blocklist import BlockedAddress, GuardedResolver, is_address_allowed, parse_networks

logger = logging.getLogger(__name__)

TIMEOUT_S = 10.0
PREFIX = "/_matrix/identity/v2"


class IdentityServerClient:
    def __init__(self, server_name: str, signing_key: SigningKey, *, scheme: str = "https",
                 ip_range_allowlist: Sequence[str] = (), trusted_servers: Sequence[str] | None = None):
        self._server_name = server_name
        self._signing_key = signing_key
        self._scheme = scheme
        self._allowlist = parse_networks(list(ip_range_allowlist))
        self._trusted = None if trusted_servers is None else frozenset(trusted_servers)
        self._session: aiohttp.ClientSession | None = None

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self._allowlist), use_dns_cache=False)
            self._session = aiohttp.ClientSession(connector=connector,
                                                  timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        return self._session

    def check_server(self, id_server: Any, field: str = "id_server") -> str:
        """The identity server's name, or 400 naming the field when it is malformed or not trusted."""
        if not isinstance(id_server, str) or not id_server:
            raise invalid_param(f"{field}: must be an identity server name")
        # Clients sometimes send a base URL; the host (and port) is what is meant.
        name = urlsplit(id_server).netloc if "://" in id_server else id_server
        if not is_valid_server_name(name):
            raise invalid_param(f"{field}: {id_server!r} is not a server name")
        if self._trusted is not None and name not in self._trusted:
            raise MatrixError(400, "M_SERVER_NOT_TRUSTED", f"{field}: {name} is not a trusted identity server")
        return name

    async def _request(self, method: str, id_server: str, path: str, *, token: str | None = None,
                       body: dict[str, Any] | None = None, signed: bool = False) -> tuple[int, Any]:
        headers: dict[str, str] = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if signed:
            headers["Authorization"] = self._x_matrix(method, id_server, path, body)
        url = f"{self._scheme}://{id_server}{path}"
        self._check_literal_address(id_server)
        try:
            async with self._http().request(method, url, json=body, headers=headers,
                                            allow_redirects=False) as response:
                try:
                    answer = await response.json(content_type=None)
                except ValueError:
                    answer = None
                return response.status, answer
        except BlockedAddress:
            raise MatrixError(400, "M_SERVER_NOT_TRUSTED",
                              f"id_server: {id_server} resolves to an address this server may not reach") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            logger.info("identity server %s unreachable: %s", id_server, e)
            raise MatrixError(502, "M_UNKNOWN", f"id_server: could not reach {id_server}") from None

    def _check_literal_address(self, id_server: str) -> None:
        """Connections to IP literals bypass the resolver, so they are checked here."""
        host = urlsplit(f"//{id_server}").hostname or ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return  # a name: the guarded resolver checks every address it resolves to
        if not is_address_allowed(address, self._allowlist):
            raise MatrixError(400, "M_SERVER_NOT_TRUSTED",
                              f"id_server: {id_server} is an address this server may not reach")

    def _x_matrix(self, method: str, destination: str, path: str, body: dict[str, Any] | None) -> str:
        request: dict[str, Any] = {"method": method, "uri": path, "origin": self._server_name,
                                   "destination": destination}
        if body is not None:
            request["content"] = body
        signature = compute_json_signature(request, self._signing_key)
        return (f'X-Matrix origin="{self._server_name}",destination="{destination}",'
                f'key="{key_id_of(self._signing_key)}",sig="{signature}"')

    @staticmethod
    def _fail(status: int, answer: Any, what: str) -> MatrixError:
        """The identity server's own Matrix error, passed through, or a generic one."""
        if isinstance(answer, dict) and isinstance(answer.get("errcode"), str) and 400 <= status < 500:
            return MatrixError(status, answer["errcode"], str(answer.get("error", what)))
        return MatrixError(502, "M_UNKNOWN", f"The identity server failed to {what} ({status})")

    # --- lookups and invites --------------------------------------------------------------
    async def lookup(self, id_server: str, token: str, medium: str, address: str) -> str | None:
        """The Matrix ID bound to the address, through the hashed v2 lookup; None when unbound."""
        status, details = await self._request("GET", id_server, f"{PREFIX}/hash_details", token=token)
        if status != 200 or not isinstance(details, dict):
            raise self._fail(status, details, "describe its lookup hashing")
        algorithms = details.get("algorithms")
        pepper = details.get("lookup_pepper")
        algorithms = algorithms if isinstance(algorithms, list) else []
        if "sha256" in algorithms and isinstance(pepper, str):
            digest = hashlib.sha256(f"{address} {medium} {pepper}".encode()).digest()
            lookup_key, algorithm = base64.urlsafe_b64encode(digest).decode().rstrip("="), "sha256"
        elif "none" in algorithms:
            lookup_key, algorithm = f"{address} {medium}", "none"
        else:
            raise MatrixError(502, "M_UNKNOWN", "The identity server offers no lookup algorithm this server knows")
        body = {"addresses": [lookup_key], "algorithm": algorithm, "pepper": pepper if isinstance(pepper, str) else ""}
        status, answer = await self._request("POST", id_server, f"{PREFIX}/lookup", token=token, body=body)
        if status != 200 or not isinstance(answer, dict):
            raise self._fail(status, answer, "look the address up")
        mappings = answer.get("mappings")
        mxid = mappings.get(lookup_key) if isinstance(mappings, dict) else None
        return mxid if isinstance(mxid, str) else None

    async def store_invite(self, id_server: str, token: str, invite: dict[str, Any]) -> dict[str, Any]:
        """Store a pending invite; returns the identity server's `token`, `public_keys`, `display_name`."""
        status, answer = await self._request("POST", id_server, f"{PREFIX}/store-invite", token=token, body=invite)
        if status != 200 or not isinstance(answer, dict):
            raise self._fail(status, answer, "store the invite")
        keys = answer.get("public_keys")
        if (not isinstance(answer.get("token"), str) or not answer["token"] or not isinstance(keys, list) or not keys
                or not all(isinstance(k, dict) and isinstance(k.get("public_key"), str)
                           and isinstance(k.get("key_validity_url"), str) for k in keys)):
            raise MatrixError(502, "M_UNKNOWN", "The identity server answered store-invite without a token and keys")
        return answer

    # --- bindings -------------------------------------------------------------------------
    async def bind(self, id_server: str, token: str, sid: str, client_secret: str, mxid: str) -> dict[str, Any]:
        """Ask the identity server to bind a validated session's 3PID to the user."""
        body = {"sid": sid, "client_secret": client_secret, "mxid": mxid}
        status, answer = await self._request("POST", id_server, f"{PREFIX}/3pid/bind", token=token, body=body)
        if status != 200 or not isinstance(answer, dict):
            raise self._fail(status, answer, "bind the identifier")
        return answer

    async def unbind(self, id_server: str, mxid: str, medium: str, address: str) -> bool:
        """Ask the identity server to forget a binding (a request signed by this server); True when it did.

        An identity server that refuses (a 4xx other than a Matrix error to pass on) means `no-support`."""
        body = {"mxid": mxid, "threepid": {"medium": medium, "address": address}}
        status, answer = await self._request("POST", id_server, f"{PREFIX}/3pid/unbind", body=body, signed=True)
        if status == 200:
            return True
        if status in (400, 404, 501) and not (isinstance(answer, dict) and answer.get("errcode") not in
                                              (None, "M_UNRECOGNIZED", "M_NOT_FOUND")):
            return False
        raise self._fail(status, answer, "unbind the identifier")
