"""The object every case receives: an HTTP client for one server plus user helpers.

``ctx.federation`` talks to the same server's federation listener, which may sit on another
base URL (Synapse's federation listener, a reverse proxy's port 8448); by default it is the
client base URL.
"""

from __future__ import annotations

import aiohttp

from synctest import users
from synctest.client import HttpClient
from synctest.registry import CaseFailure


class Context(HttpClient):
    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        registration_shared_secret: str | None = None,
        federation_base_url: str | None = None,
    ) -> None:
        super().__init__(base_url, session)
        self.registration_shared_secret = registration_shared_secret
        self.federation = HttpClient(federation_base_url or base_url, session)

    async def register_admin_user(
        self, localpart: str | None = None, password: str | None = None, *, admin: bool = True
    ) -> users.User:
        """A user made through the shared-secret admin API (needs --registration-shared-secret)."""
        if not self.registration_shared_secret:
            raise CaseFailure("this case needs --registration-shared-secret")
        return await users.register_with_shared_secret(
            self, self.registration_shared_secret, localpart, password, admin=admin
        )

    async def register_user(self, localpart: str | None = None, password: str | None = None) -> users.User:
        """A user made through client /register with the m.login.dummy stage."""
        return await users.register_with_dummy_auth(self, localpart, password)
