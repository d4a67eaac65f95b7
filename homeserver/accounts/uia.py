"""User-interactive authentication (UIA), reusable by every endpoint that needs it.

An endpoint states its flows (lists of stage types); `UserInteractiveAuth.check`
either returns the completed stages (the request may proceed) or raises the spec's
401 with `flows`, `params`, `session` and `completed`. Sessions live in the database,
so a retried request after a restart still finds its session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from homeserver.accounts.token_values import random_string
from homeserver.clock import Clock
from homeserver.errors import MatrixError, bad_json, forbidden
from storage.stores.uia_sessions import UiaSession, UiaSessionStore

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"
REGISTRATION_TOKEN = "m.login.registration_token"

SESSION_LIFETIME_MS = 24 * 3600 * 1000

# A stage checker receives the client's `auth` dict and the session, and returns the stage's
# result (stored and handed back to the endpoint), or raises MatrixError to fail the stage.
StageChecker = Callable[[dict[str, Any], UiaSession], Awaitable[Any]]


class InteractiveAuthRequired(MatrixError):
    """The 401 that tells the client which stages remain."""

    def __init__(self, flows: Sequence[Sequence[str]], session_id: str, completed: Sequence[str],
                 params: dict[str, Any], errcode: str | None = None, error: str | None = None):
        super().__init__(401, errcode or "M_UNAUTHORIZED", error or "Additional authentication is required")
        self.body: dict[str, Any] = {
            "flows": [{"stages": list(flow)} for flow in flows],
            "params": params,
            "session": session_id,
            "completed": list(completed),
        }
        if errcode is not None:
            self.body["errcode"] = errcode
            self.body["error"] = error or ""

    def to_json(self) -> dict[str, Any]:
        return self.body


class UserInteractiveAuth:
    def __init__(self, store: UiaSessionStore, clock: Clock):
        self._store = store
        self._clock = clock
        self._checkers: dict[str, StageChecker] = {DUMMY: _check_dummy}

    def register_stage(self, stage_type: str, checker: StageChecker) -> None:
        self._checkers[stage_type] = checker

    async def check(self, body: dict[str, Any], flows: Sequence[Sequence[str]], *, uri: str, method: str,
                    params: dict[str, Any] | None = None,
                    for_user: str | None = None) -> tuple[dict[str, Any], dict[str, Any], str]:
        """Run UIA for one request.

        Returns (completed stage results, the request parameters merged over the session's
        first request, session id). Raises InteractiveAuthRequired until a flow is complete.
        `for_user` is the authenticated requester, whose password a password stage must be.
        """
        params = params or {}
        auth = check_auth_shape(body)
        clientdict = {k: v for k, v in body.items() if k != "auth"}
        session_id = auth.get("session") if auth else None

        if session_id is None:
            session_id = random_string(24)
            await self._store.create_uia_session(session_id, uri, method, clientdict, self._clock.time_ms())
            session = UiaSession(session_id, uri, method, clientdict, {}, self._clock.time_ms())
        else:
            found = await self._store.get_uia_session(session_id)
            if found is None or found.created_ts < self._clock.time_ms() - SESSION_LIFETIME_MS:
                raise MatrixError(400, "M_UNKNOWN", "auth.session: unknown or expired UIA session")
            if found.uri != uri or found.method != method:
                raise forbidden("auth.session: the session was started for another request")
            session = found
            # Later requests may omit the parameters of the first one; what they do send wins.
            clientdict = {**session.clientdict, **clientdict}

        if for_user is not None:
            session.serverdict["user_id"] = for_user
        completed = await self._store.get_uia_stage_results(session_id)
        if not auth or "type" not in auth:
            if _flow_complete(flows, completed):
                return completed, clientdict, session_id
            raise InteractiveAuthRequired(flows, session_id, list(completed), params)

        stage_type = auth["type"]
        allowed = {stage for flow in flows for stage in flow}
        checker = self._checkers.get(stage_type)
        if stage_type not in allowed or checker is None:
            raise InteractiveAuthRequired(flows, session_id, list(completed), params, "M_UNRECOGNIZED",
                                          f"auth.type: {stage_type!r} is not a stage of this request's flows")
        try:
            result = await checker(auth, session)
        except InteractiveAuthRequired:
            raise
        except MatrixError as failed:
            if failed.http_status >= 500 or failed.errcode == "M_LIMIT_EXCEEDED":
                raise
            raise InteractiveAuthRequired(flows, session_id, list(completed), params, failed.errcode,
                                          failed.message) from None
        await self._store.set_uia_stage_result(session_id, stage_type, result)
        completed[stage_type] = result
        if _flow_complete(flows, completed):
            return completed, clientdict, session_id
        raise InteractiveAuthRequired(flows, session_id, list(completed), params)

    async def get_server_value(self, session_id: str, key: str) -> Any:
        session = await self._store.get_uia_session(session_id)
        return None if session is None else session.serverdict.get(key)

    async def set_server_value(self, session_id: str, key: str, value: Any) -> None:
        await self._store.set_uia_server_value(session_id, key, value)


def check_auth_shape(body: dict[str, Any]) -> dict[str, Any] | None:
    """The request's `auth` object, its `type` and `session` strings when present; else 400 M_BAD_JSON.

    Endpoints that skip UIA for some requests call this too, so a malformed `auth` is refused alike.
    """
    auth = body.get("auth")
    if auth is None:
        return None
    if not isinstance(auth, dict):
        raise bad_json("auth: must be an object")
    for key in ("type", "session"):
        if key in auth and not isinstance(auth[key], str):
            raise bad_json(f"auth.{key}: must be a string")
    return auth


def _flow_complete(flows: Sequence[Sequence[str]], completed: dict[str, Any]) -> bool:
    return any(all(stage in completed for stage in flow) for flow in flows)


async def _check_dummy(auth: dict[str, Any], session: UiaSession) -> bool:
    return True
