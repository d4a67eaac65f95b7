"""Resolving the requester of a client request from its access token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from homeserver.accounts.access_tokens import AuthService
from homeserver.http.request import access_token, client_ip
from homeserver.requester import Requester

# (token, query parameters) -> the requester when the token is an application service's as_token.
AppServiceResolver = Callable[[str, Mapping[str, str]], Awaitable[Requester | None]]


class RequestAuthenticator:
    def __init__(self, auth: AuthService, *, app_services: AppServiceResolver | None = None):
        self._auth = auth
        # Application services authenticate with their as_token (checked before user tokens).
        self._app_services = app_services

    async def __call__(self, request: web.Request, *, allow_guest: bool = False,
                       allow_expired: bool = False) -> Requester:
        """The requester, or 401 `M_MISSING_TOKEN` / `M_UNKNOWN_TOKEN`."""
        token = access_token(request)
        if token and self._app_services is not None:
            requester = await self._app_services(token, request.query)
            if requester is not None:
                return requester
        return await self._auth.get_requester(
            token,
            ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", ""),
            allow_guest=allow_guest,
            allow_expired=allow_expired,
        )
