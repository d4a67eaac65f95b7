"""Our own admin endpoints (`/_huiskamer/admin/v1/...`) for the privacy application service:
a user's events as NDJSON, connections and logins, the login feed, erasure, consent."""

from __future__ import annotations

from aiohttp import web

from homeserver.admin.consent import ConsentService
from homeserver.admin.erasure import UserErasureService
from homeserver.admin.login_audit import LoginAuditService
from homeserver.admin.user_data import UserEventsService
from homeserver.http.admin_common import AdminAuthenticator, add_own_admin_route
from homeserver.http.request import json_object, json_response, query_int
from homeserver.jsonutil import encode

FEED_DEFAULT_LIMIT = 100
FEED_MAX_LIMIT = 1000


class PrivacyAdminHandlers:
    def __init__(self, user_events: UserEventsService, audit: LoginAuditService, erasure: UserErasureService,
                 consent: ConsentService, admin: AdminAuthenticator):
        self._user_events = user_events
        self._audit = audit
        self._erasure = erasure
        self._consent = consent
        self._admin = admin

    async def user_events(self, request: web.Request) -> web.StreamResponse:
        await self._admin(request)
        user_id = request.match_info["user_id"]
        self._user_events.check_user_id(user_id)
        since_ts = query_int(request, "since_ts", minimum=0)
        until_ts = query_int(request, "until_ts", minimum=0)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        async for batch in self._user_events.sent_events(user_id, since_ts=since_ts, until_ts=until_ts):
            await response.write(b"".join(encode(event) + b"\n" for event in batch))
        await response.write_eof()
        return response

    async def connections(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._audit.connections(request.match_info["user_id"]))

    async def logins(self, request: web.Request) -> web.Response:
        await self._admin(request)
        timeout = query_int(request, "timeout", 0, minimum=0)
        limit = query_int(request, "limit", FEED_DEFAULT_LIMIT, minimum=1, maximum=FEED_MAX_LIMIT)
        assert timeout is not None and limit is not None
        return json_response(await self._audit.login_feed(request.query.get("from"), timeout_ms=timeout,
                                                          limit=limit))

    async def erase(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        body = await json_object(request, allow_empty=True)
        return json_response(await self._erasure.start_erasure(requester, request.match_info["user_id"], body))

    async def task(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._erasure.task_status(request.match_info["task_id"]))

    async def delete_redacted_originals(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._user_events.delete_redacted_originals(request.match_info["user_id"]))

    async def get_policy(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._consent.get_policy())

    async def set_policy(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._consent.set_policy(await json_object(request)))

    async def get_user_consent(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._consent.get_user_consent(request.match_info["user_id"]))

    async def set_user_consent(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._consent.set_user_consent(request.match_info["user_id"],
                                                                  await json_object(request)))

    def register_routes(self, app: web.Application) -> None:
        add_own_admin_route(app, "GET", "/v1/users/{user_id}/events", self.user_events)
        add_own_admin_route(app, "GET", "/v1/users/{user_id}/connections", self.connections)
        add_own_admin_route(app, "GET", "/v1/logins", self.logins)
        add_own_admin_route(app, "POST", "/v1/users/{user_id}/erase", self.erase)
        add_own_admin_route(app, "GET", "/v1/tasks/{task_id}", self.task)
        add_own_admin_route(app, "DELETE", "/v1/users/{user_id}/redacted_originals", self.delete_redacted_originals)
        add_own_admin_route(app, "GET", "/v1/consent/policy", self.get_policy)
        add_own_admin_route(app, "PUT", "/v1/consent/policy", self.set_policy)
        add_own_admin_route(app, "GET", "/v1/users/{user_id}/consent", self.get_user_consent)
        add_own_admin_route(app, "PUT", "/v1/users/{user_id}/consent", self.set_user_consent)
