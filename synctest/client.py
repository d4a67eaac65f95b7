"""A thin HTTP client over aiohttp that keeps every response whole for assertions."""

from __future__ import annotations

import json as jsonlib
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl
from multidict import CIMultiDictProxy

from synctest.registry import CaseFailure

_NO_JSON = object()


@dataclass
class Response:
    method: str
    path: str
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body parsed as JSON; a case fails if the server sent something else."""
        try:
            return jsonlib.loads(self.body)
        except ValueError:
            raise CaseFailure(f"{self.describe()}: body is not JSON: {self.body[:200]!r}") from None

    def describe(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


class HttpClient:
    """Requests against one homeserver base URL; paths are sent exactly as given."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = _NO_JSON,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
        params: dict[str, str] | None = None,
    ) -> Response:
        """Send one request. ``json`` is encoded for you; ``body`` goes out byte for byte."""
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        data = body
        if json is not _NO_JSON:
            data = jsonlib.dumps(json).encode()
            all_headers.setdefault("Content-Type", "application/json")
        # encoded=True so odd paths reach the server unnormalised, as a raw client would send them.
        url = yarl.URL(self.base_url + path, encoded=True)
        if params:
            url = url.with_query(params)
        async with self.session.request(
            method, url, data=data, headers=all_headers, allow_redirects=False
        ) as response:
            payload = await response.read()
            return Response(method.upper(), path, response.status, response.headers, payload)

    async def get(self, path: str, **kwargs: Any) -> Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, json: Any = _NO_JSON, **kwargs: Any) -> Response:
        return await self.request("POST", path, json=json, **kwargs)

    async def put(self, path: str, json: Any = _NO_JSON, **kwargs: Any) -> Response:
        return await self.request("PUT", path, json=json, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Response:
        return await self.request("DELETE", path, **kwargs)
