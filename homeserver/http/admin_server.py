"""Admin API: server-wide endpoints (version, registration tokens, event reports, notices, status)."""

from __future__ import annotations

from aiohttp import web

from homeserver.admin.server import AdminServerService
from homeserver.admin.server_notices import ServerNoticeService
from homeserver.admin.tasks import AdminTaskRunner
from homeserver.errors import invalid_param
from homeserver.http.admin_common import (
    AdminAuthenticator,
    add_admin_route,
    choice,
    optional_query_bool,
    paging,
)
from homeserver.http.request import json_object, json_response, query_int

TASK_STATUSES = ("scheduled", "active", "complete", "failed")


class AdminServerHandlers:
    def __init__(self, server: AdminServerService, notices: ServerNoticeService, admin: AdminAuthenticator):
        self._server = server
        self._notices = notices
        self._admin = admin

    async def server_version(self, request: web.Request) -> web.Response:
        # Synapse answers this one without a token.
        return json_response(self._server.server_version())

    async def background_updates_status(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(self._server.background_updates_status())

    # --- registration tokens ----------------------------------------------------------------
    async def list_tokens(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._server.list_registration_tokens(optional_query_bool(request, "valid")))

    async def new_token(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._server.create_registration_token(await json_object(request,
                                                                                            allow_empty=True)))

    async def get_token(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._server.get_registration_token(request.match_info["token"]))

    async def update_token(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._server.update_registration_token(request.match_info["token"],
                                                                          await json_object(request)))

    async def delete_token(self, request: web.Request) -> web.Response:
        await self._admin(request)
        await self._server.delete_registration_token(request.match_info["token"])
        return json_response({})

    # --- event reports ----------------------------------------------------------------------
    async def list_event_reports(self, request: web.Request) -> web.Response:
        await self._admin(request)
        offset, limit = paging(request)
        backwards = request.query.get("dir", "b")
        if backwards not in ("f", "b"):
            raise invalid_param("Query parameter 'dir' must be one of ['f', 'b']")
        return json_response(await self._server.list_event_reports(
            offset=offset, limit=limit, backwards=backwards == "b", room_id=request.query.get("room_id"),
            user_id=request.query.get("user_id"), event_sender=request.query.get("event_sender_user_id")))

    async def get_event_report(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._server.get_event_report(request.match_info["reportId"]))

    async def delete_event_report(self, request: web.Request) -> web.Response:
        await self._admin(request)
        await self._server.delete_event_report(request.match_info["reportId"])
        return json_response({})

    async def list_user_reports(self, request: web.Request) -> web.Response:
        await self._admin(request)
        offset, limit = paging(request)
        backwards = request.query.get("dir", "b")
        if backwards not in ("f", "b"):
            raise invalid_param("Query parameter 'dir' must be one of ['f', 'b']")
        return json_response(await self._server.list_user_reports(
            offset=offset, limit=limit, backwards=backwards == "b", user_id=request.query.get("user_id"),
            target_user_id=request.query.get("target_user_id")))

    async def get_user_report(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._server.get_user_report(request.match_info["reportId"]))

    async def delete_user_report(self, request: web.Request) -> web.Response:
        await self._admin(request)
        await self._server.delete_user_report(request.match_info["reportId"])
        return json_response({})

    # --- server notices ---------------------------------------------------------------------
    async def send_notice(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._notices.send_notice(await json_object(request),
                                                             request.match_info.get("txnId")))

    def register_routes(self, app: web.Application) -> None:
        add_admin_route(app, "GET", "/v1/server_version", self.server_version)
        add_admin_route(app, "GET", "/v1/background_updates/status", self.background_updates_status)
        add_admin_route(app, "GET", "/v1/registration_tokens", self.list_tokens)
        add_admin_route(app, "POST", "/v1/registration_tokens/new", self.new_token)
        add_admin_route(app, "GET", "/v1/registration_tokens/{token}", self.get_token)
        add_admin_route(app, "PUT", "/v1/registration_tokens/{token}", self.update_token)
        add_admin_route(app, "DELETE", "/v1/registration_tokens/{token}", self.delete_token)
        add_admin_route(app, "GET", "/v1/event_reports", self.list_event_reports)
        add_admin_route(app, "GET", "/v1/event_reports/{reportId}", self.get_event_report)
        add_admin_route(app, "DELETE", "/v1/event_reports/{reportId}", self.delete_event_report)
        add_admin_route(app, "GET", "/v1/user_reports", self.list_user_reports)
        add_admin_route(app, "GET", "/v1/user_reports/{reportId}", self.get_user_report)
        add_admin_route(app, "DELETE", "/v1/user_reports/{reportId}", self.delete_user_report)
        add_admin_route(app, "POST", "/v1/send_server_notice", self.send_notice)
        add_admin_route(app, "PUT", "/v1/send_server_notice/{txnId}", self.send_notice)


class ScheduledTaskHandlers:
    """`GET /v1/scheduled_tasks`: the long admin jobs (room deletion, purges, user redaction)."""

    def __init__(self, tasks: AdminTaskRunner, admin: AdminAuthenticator):
        self._tasks = tasks
        self._admin = admin

    async def list_tasks(self, request: web.Request) -> web.Response:
        await self._admin(request)
        status = choice(request, "job_status", TASK_STATUSES, "") if "job_status" in request.query else None
        return json_response(await self._tasks.list_tasks(
            action=request.query.get("action_name"), resource_id=request.query.get("resource_id"), status=status,
            max_timestamp=query_int(request, "max_timestamp", minimum=0)))

    def register_routes(self, app: web.Application) -> None:
        add_admin_route(app, "GET", "/v1/scheduled_tasks", self.list_tasks)
