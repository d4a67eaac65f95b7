"""The service's HTTP side: the application service API the homeserver calls, this service's own admin
API, and the consent documents. Handlers are thin; errors are Matrix-style JSON naming the problem.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from appservices.privacy.consent import ConsentService
from appservices.privacy.store import PrivacyStore

ADMIN_PREFIX = "/_privacy/admin/v1"


def error(status: int, errcode: str, message: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status)


def _token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer "):]
    return request.query.get("access_token")


def _query_int(request: web.Request, name: str, default: int, maximum: int | None = None) -> int | web.Response:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return error(400, "M_INVALID_PARAM", f"Query parameter {name!r} must be an integer")
    if value < 0 or (maximum is not None and value > maximum):
        return error(400, "M_INVALID_PARAM", f"Query parameter {name!r} must be between 0 and {maximum}")
    return value


class PrivacyHttp:
    def __init__(self, *, hs_token: str, admin_token: str, store: PrivacyStore, consent: ConsentService,
                 on_transaction: Callable[[str, list[dict[str, Any]]], Awaitable[None]],
                 run_retention: Callable[[str], Awaitable[dict[str, Any]]], clock: Callable[[], int],
                 bot_user_id: str):
        self._hs_token = hs_token
        self._admin_token = admin_token
        self._store = store
        self._consent = consent
        self._on_transaction = on_transaction
        self._run_retention = run_retention
        self._clock = clock
        self._bot = bot_user_id

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for prefix in ("/_matrix/app/v1", ""):
            app.router.add_put(prefix + "/transactions/{txn_id}", self.transaction)
            app.router.add_get(prefix + "/users/{user_id}", self.query_user)
            app.router.add_get(prefix + "/rooms/{alias}", self.query_alias)
        app.router.add_post("/_matrix/app/v1/ping", self.ping)
        app.router.add_get(ADMIN_PREFIX + "/requests", self.open_requests)
        app.router.add_get(ADMIN_PREFIX + "/requests/{request_id}", self.one_request)
        app.router.add_get(ADMIN_PREFIX + "/audit", self.audit)
        app.router.add_post(ADMIN_PREFIX + "/retention/run", self.retention_run)
        app.router.add_get(ADMIN_PREFIX + "/retention/runs", self.retention_runs)
        app.router.add_get("/_privacy/consent", self.consent_current)
        app.router.add_get("/_privacy/consent/{version}", self.consent_document)
        return app

    # --- the application service API --------------------------------------------------------------
    def _check_hs(self, request: web.Request) -> web.Response | None:
        token = _token(request)
        if token is None:
            return error(401, "M_UNAUTHORIZED", "Missing hs_token")
        if not hmac.compare_digest(token, self._hs_token):
            return error(403, "M_FORBIDDEN", "Bad hs_token")
        return None

    async def transaction(self, request: web.Request) -> web.Response:
        if (denied := self._check_hs(request)) is not None:
            return denied
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return error(400, "M_NOT_JSON", "Content not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("events", []), list):
            return error(400, "M_BAD_JSON", "events: must be a list")
        events = [e for e in body.get("events", []) if isinstance(e, dict)]
        await self._on_transaction(request.match_info["txn_id"], events)
        return web.json_response({})

    async def query_user(self, request: web.Request) -> web.Response:
        if (denied := self._check_hs(request)) is not None:
            return denied
        if request.match_info["user_id"] == self._bot:
            return web.json_response({})
        return error(404, "M_NOT_FOUND", "This service has no such user")

    async def query_alias(self, request: web.Request) -> web.Response:
        if (denied := self._check_hs(request)) is not None:
            return denied
        return error(404, "M_NOT_FOUND", "This service has no room aliases")

    async def ping(self, request: web.Request) -> web.Response:
        if (denied := self._check_hs(request)) is not None:
            return denied
        return web.json_response({})

    # --- this service's admin API -----------------------------------------------------------------
    def _check_admin(self, request: web.Request) -> web.Response | None:
        token = _token(request)
        if token is None:
            return error(401, "M_MISSING_TOKEN", "Missing access token")
        if not hmac.compare_digest(token, self._admin_token):
            return error(401, "M_UNKNOWN_TOKEN", "Unknown admin token")
        return None

    async def open_requests(self, request: web.Request) -> web.Response:
        if (denied := self._check_admin(request)) is not None:
            return denied
        now = self._clock()
        requests = [r.as_json(now) for r in await self._store.open_requests()]
        kind = request.query.get("kind")
        if kind is not None:
            requests = [r for r in requests if r["kind"] == kind]
        return web.json_response({"requests": requests, "total": len(requests),
                                  "oldest_age_ms": max((r["age_ms"] for r in requests), default=None)})

    async def one_request(self, request: web.Request) -> web.Response:
        if (denied := self._check_admin(request)) is not None:
            return denied
        found = await self._store.get_request(request.match_info["request_id"])
        if found is None:
            return error(404, "M_NOT_FOUND", "No such request")
        return web.json_response(found.as_json(self._clock()))

    async def audit(self, request: web.Request) -> web.StreamResponse:
        """The audit log from `from` (a sequence number, exclusive), as JSON or NDJSON (`format=ndjson`)."""
        if (denied := self._check_admin(request)) is not None:
            return denied
        since = _query_int(request, "from", 0)
        limit = _query_int(request, "limit", 1000, maximum=100000)
        if isinstance(since, web.Response):
            return since
        if isinstance(limit, web.Response):
            return limit
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "ndjson"):
            return error(400, "M_INVALID_PARAM", "Query parameter 'format' must be 'json' or 'ndjson'")
        entries = await self._store.audit_entries(since_seq=since, limit=limit, user_id=request.query.get("user_id"))
        if fmt == "ndjson":
            body = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)
            return web.Response(text=body, content_type="application/x-ndjson")
        result: dict[str, Any] = {"entries": entries}
        if len(entries) == limit and entries:
            result["next_token"] = str(entries[-1]["seq"])
        return web.json_response(result)

    async def retention_run(self, request: web.Request) -> web.Response:
        if (denied := self._check_admin(request)) is not None:
            return denied
        return web.json_response(await self._run_retention("admin"))

    async def retention_runs(self, request: web.Request) -> web.Response:
        if (denied := self._check_admin(request)) is not None:
            return denied
        return web.json_response({"runs": await self._store.retention_runs()})

    # --- consent documents ------------------------------------------------------------------------
    async def consent_current(self, request: web.Request) -> web.Response:
        if self._consent.version is None:
            return error(404, "M_NOT_FOUND", "No privacy policy is configured")
        raise web.HTTPFound(self._consent.url(language=request.query.get("lang")))

    async def consent_document(self, request: web.Request) -> web.Response:
        found = self._consent.document(request.match_info["version"], request.query.get("lang", ""))
        if found is None:
            return error(404, "M_NOT_FOUND", "No such policy version")
        content_type, body = found
        return web.Response(text=body, content_type=content_type, charset="utf-8",
                            headers={"X-Policy-Version": request.match_info["version"]})
