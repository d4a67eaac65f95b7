"""The homeserver as this service sees it: client-server calls as the bot, admin calls, over HTTP.

Endpoints a homeserver does not serve (`404 M_UNRECOGNIZED`, as Synapse answers for our own
`/_huiskamer/...` paths) raise `Unreachable`, so callers can degrade and say which data classes
they could not reach.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp

ADMIN = "/_synapse/admin"
HUISKAMER = "/_huiskamer/admin/v1"


def q(identifier: str) -> str:
    return quote(identifier, safe="")


class HomeserverError(Exception):
    def __init__(self, method: str, path: str, status: int, errcode: str, error: str):
        super().__init__(f"{method} {path}: {status} {errcode} {error}")
        self.status = status
        self.errcode = errcode
        self.error = error


class Unreachable(HomeserverError):
    """The homeserver does not serve this endpoint."""


class HomeserverClient:
    def __init__(self, base_url: str, as_token: str, admin_token: str | None, bot_user_id: str):
        self._base = base_url.rstrip("/")
        self._as_token = as_token
        self._admin_token = admin_token or as_token
        self.bot_user_id = bot_user_id
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "HomeserverClient.open() first"
        return self._session

    @staticmethod
    async def _raise_for(method: str, path: str, resp: aiohttp.ClientResponse) -> None:
        if resp.status < 400:
            return
        try:
            body = await resp.json(content_type=None)
        except (ValueError, aiohttp.ContentTypeError):
            body = {}
        errcode = body.get("errcode", "") if isinstance(body, dict) else ""
        error = body.get("error", "") if isinstance(body, dict) else ""
        cls = Unreachable if resp.status in (404, 405) and errcode in ("M_UNRECOGNIZED", "") else HomeserverError
        raise cls(method, path, resp.status, errcode, error)

    async def request(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                      params: dict[str, Any] | None = None, timeout: float | None = 60) -> Any:
        headers = {"Authorization": f"Bearer {token or self._as_token}"}
        query = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in (params or {}).items()
                 if v is not None}
        async with self.session.request(method, self._base + path, json=body, headers=headers, params=query,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            await self._raise_for(method, path, resp)
            return await resp.json(content_type=None)

    async def cs(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """A client-server call as the bot (`/_matrix/client/v3` + path)."""
        return await self.request(method, "/_matrix/client/v3" + path, body, params=params)

    async def admin(self, method: str, path: str, body: Any = None, *, http_timeout: float | None = 60,
                    token: str | None = None, **params: Any) -> Any:
        """An admin API call; paths starting with `/_` are taken as they are, others go under /_synapse/admin.

        `params` are the query parameters (a `timeout` among them is the endpoint's own, e.g. the login
        feed's long-poll); `http_timeout` bounds the HTTP request here.
        """
        full = path if path.startswith("/_") else ADMIN + path
        return await self.request(method, full, body, token=token or self._admin_token, params=params,
                                  timeout=http_timeout)

    async def admin_lines(self, path: str, **params: Any) -> AsyncIterator[dict[str, Any]]:
        """An NDJSON admin stream, one object a line."""
        headers = {"Authorization": f"Bearer {self._admin_token}"}
        query = {k: str(v) for k, v in params.items() if v is not None}
        async with self.session.get(self._base + path, headers=headers, params=query,
                                    timeout=aiohttp.ClientTimeout(total=None, sock_read=120)) as resp:
            await self._raise_for("GET", path, resp)
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
            if buffer.strip():
                yield json.loads(buffer)

    async def download(self, server_name: str, media_id: str) -> bytes:
        """Media bytes, through the authenticated download endpoint (the legacy one as a fallback)."""
        headers = {"Authorization": f"Bearer {self._as_token}"}
        for prefix in ("/_matrix/client/v1/media/download", "/_matrix/media/v3/download"):
            url = f"{self._base}{prefix}/{q(server_name)}/{q(media_id)}"
            async with self.session.get(url, headers=headers, params={"allow_redirect": "true"}) as resp:
                if resp.status == 404 and prefix.startswith("/_matrix/client"):
                    try:
                        if (await resp.json(content_type=None)).get("errcode") == "M_UNRECOGNIZED":
                            continue
                    except ValueError:
                        pass
                await self._raise_for("GET", prefix, resp)
                return await resp.read()
        raise Unreachable("GET", "/media/download", 404, "M_UNRECOGNIZED", "")

    async def upload(self, data: bytes, content_type: str, filename: str) -> str:
        headers = {"Authorization": f"Bearer {self._as_token}", "Content-Type": content_type}
        path = "/_matrix/media/v3/upload"
        async with self.session.post(self._base + path, data=data, headers=headers,
                                     params={"filename": filename}) as resp:
            await self._raise_for("POST", path, resp)
            return (await resp.json())["content_uri"]

    # --- the bot in rooms -----------------------------------------------------------------------
    async def join(self, room_id: str) -> None:
        await self.cs("POST", f"/join/{q(room_id)}", {})

    async def send(self, room_id: str, content: dict[str, Any], txn_id: str,
                   event_type: str = "m.room.message") -> str:
        body = await self.cs("PUT", f"/rooms/{q(room_id)}/send/{q(event_type)}/{q(txn_id)}", content)
        return body["event_id"]

    async def create_dm(self, user_id: str) -> str:
        body = await self.cs("POST", "/createRoom", {"preset": "trusted_private_chat", "is_direct": True,
                                                     "invite": [user_id]})
        return body["room_id"]

    async def joined_members(self, room_id: str) -> list[str]:
        body = await self.cs("GET", f"/rooms/{q(room_id)}/joined_members")
        return list(body.get("joined", {}))


async def register_with_shared_secret(hs: HomeserverClient, secret: str, username: str) -> dict[str, Any]:
    """A new admin account through `/_synapse/admin/v1/register` (Synapse's shared-secret scheme)."""
    path = ADMIN + "/v1/register"
    async with hs.session.get(hs._base + path) as resp:
        await hs._raise_for("GET", path, resp)
        nonce = (await resp.json())["nonce"]
    password = secrets.token_urlsafe(24)
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(f"{nonce}\0{username}\0{password}\0admin".encode())
    body = {"nonce": nonce, "username": username, "password": password, "admin": True, "mac": mac.hexdigest()}
    async with hs.session.post(hs._base + path, json=body) as resp:
        await hs._raise_for("POST", path, resp)
        return await resp.json()
