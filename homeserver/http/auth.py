"""Resolving the requester of a client request from its access token."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import AuthService, Requester
from homeserver.http.request import access_token, client_ip


class RequestAuthenticator:
    def __init__(self, auth: AuthService):
        self._auth = auth

    async def __call__(self, request: web.Request, *, allow_guest: bool = False,
                       allow_expired: bool = False) -> Requester:
        """The requester, or 401 `M_MISSING_TOKEN` / `M_UNKNOWN_TOKEN`."""
        return await self._auth.get_requester(
            access_token(request),
            ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", ""),
            allow_guest=allow_guest,
            allow_expired=allow_expired,
        )
