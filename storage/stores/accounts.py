"""The account stores as one object, for the services that use several of them.

Each concern keeps its own module and owns its tables: users.py (`users`), access_tokens.py,
refresh_tokens.py, login_tokens.py, openid_tokens.py, devices.py, client_ips.py (`user_ips`),
registration_tokens.py and uia_sessions.py. `AccountStore` only composes their methods over one
`Database`, so services and the composition root keep receiving a single account store; a service
that needs one concern only can be given (and typed with) that concern's store instead.
"""

from __future__ import annotations

from storage.stores.access_tokens import AccessTokenStore
from storage.stores.client_ips import ClientIpStore
from storage.stores.devices import DeviceStore
from storage.stores.login_tokens import LoginTokenStore
from storage.stores.openid_tokens import OpenIdTokenStore
from storage.stores.refresh_tokens import RefreshTokenStore
from storage.stores.registration_tokens import RegistrationTokenStore
from storage.stores.uia_sessions import UiaSessionStore
from storage.stores.users import UserStore


class AccountStore(UserStore, AccessTokenStore, RefreshTokenStore, LoginTokenStore, OpenIdTokenStore, DeviceStore,
                   ClientIpStore, RegistrationTokenStore, UiaSessionStore):
    """Every account concern's methods on one object (each base sets only `self.db`)."""
