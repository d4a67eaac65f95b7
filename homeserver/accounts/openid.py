"""OpenID tokens: a user proves their Matrix ID to a third party (widget, integration manager).

The client asks for a token, hands it to the third party, and the third party asks this
server's federation listener whose token it is. Tokens expire after an hour (as Synapse).
"""

from __future__ import annotations

from typing import Any

from homeserver.accounts.token_values import hash_token, new_token
from homeserver.clock import Clock
from homeserver.errors import MatrixError, forbidden
from homeserver.requester import Requester
from storage.stores.openid_tokens import OpenIdTokenStore

OPENID_TOKEN_LIFETIME_MS = 3600 * 1000


class OpenIdService:
    def __init__(self, server_name: str, store: OpenIdTokenStore, clock: Clock):
        self._server_name = server_name
        self._store = store
        self._clock = clock

    async def request_token(self, requester: Requester, user_id: str) -> dict[str, Any]:
        """`POST /user/{userId}/openid/request_token`: a new token for the requester's own ID."""
        if user_id != requester.user_id:
            raise forbidden("userId: you may only request OpenID tokens for yourself")
        token = new_token("syo")
        now = self._clock.time_ms()
        await self._store.add_openid_token(hash_token(token), user_id, now + OPENID_TOKEN_LIFETIME_MS, now)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "matrix_server_name": self._server_name,
            "expires_in": OPENID_TOKEN_LIFETIME_MS // 1000,
        }

    async def user_info(self, access_token: str | None) -> dict[str, Any]:
        """`GET /_matrix/federation/v1/openid/userinfo`: whose unexpired token this is."""
        if not access_token:
            raise MatrixError(401, "M_MISSING_TOKEN", "access_token: query parameter is required")
        user_id = await self._store.get_openid_token_user(hash_token(access_token), self._clock.time_ms())
        if user_id is None:
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "access_token: unknown or expired OpenID token")
        return {"sub": user_id}
