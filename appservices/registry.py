"""The loaded registrations and the namespace questions the rest of the server asks about them."""

from __future__ import annotations

from collections.abc import Iterable

from appservices.registration import AppServiceRegistration
from homeserver.requester import Requester
from homeserver.errors import MatrixError


class AppServiceRegistry:
    def __init__(self, registrations: Iterable[AppServiceRegistration]):
        self.registrations = tuple(registrations)
        self._by_token = {r.as_token: r for r in self.registrations}
        self._by_id = {r.id: r for r in self.registrations}

    def __bool__(self) -> bool:
        return bool(self.registrations)

    def by_token(self, as_token: str) -> AppServiceRegistration | None:
        return self._by_token.get(as_token)

    def by_id(self, app_service_id: str) -> AppServiceRegistration | None:
        return self._by_id.get(app_service_id)

    def by_sender(self, user_id: str) -> AppServiceRegistration | None:
        return next((r for r in self.registrations if r.sender == user_id), None)

    def interested_in_user(self, user_id: str) -> list[AppServiceRegistration]:
        return [r for r in self.registrations if r.is_interested_in_user(user_id)]

    def interested_in_alias(self, alias: str) -> list[AppServiceRegistration]:
        return [r for r in self.registrations if r.is_interested_in_alias(alias)]

    def for_protocol(self, protocol: str) -> list[AppServiceRegistration]:
        return [r for r in self.registrations if protocol in r.protocols]

    # --- checks the homeserver's services run -------------------------------------------------
    def check_user_id_not_reserved(self, user_id: str, allowed: AppServiceRegistration | None = None) -> None:
        """400 `M_EXCLUSIVE` when another application service claims `user_id` exclusively."""
        for registration in self.registrations:
            if registration is not allowed and registration.is_exclusive_user(user_id):
                raise MatrixError(400, "M_EXCLUSIVE", f"username: {user_id} is reserved by an application service")

    def check_alias_creation(self, requester: Requester, alias: str) -> None:
        """An appservice creates aliases in its namespace only; users none that one claims exclusively."""
        own = self.by_id(requester.app_service_id) if requester.app_service_id else None
        self._check_alias(own, alias)

    def check_alias_for_room_creator(self, creator: str, alias: str) -> None:
        """`room_alias_name` of /createRoom: the creator's own appservice (if any) decides as above."""
        own = next((r for r in self.registrations if r.is_exclusive_user(creator)), None)
        self._check_alias(own, alias)

    def _check_alias(self, own: AppServiceRegistration | None, alias: str) -> None:
        if own is not None and not own.is_interested_in_alias(alias):
            raise MatrixError(400, "M_EXCLUSIVE", f"roomAlias: {alias} is outside this application service's "
                                                  "alias namespace")
        for registration in self.registrations:
            if registration is not own and registration.is_exclusive_alias(alias):
                raise MatrixError(400, "M_EXCLUSIVE", f"roomAlias: {alias} is reserved by an application service")

    def is_rate_limit_exempt(self, key: str) -> bool:
        """Users an appservice with `rate_limited: false` owns (its sender and exclusive users)."""
        return any(not r.rate_limited and r.is_exclusive_user(key) for r in self.registrations)
