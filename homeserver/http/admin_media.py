"""Admin API: media (quarantine, protection, deletion, listings by room and user)."""

from __future__ import annotations

from aiohttp import web

from homeserver.admin.media import AdminMediaService
from homeserver.errors import missing_param
from homeserver.http.admin_common import AdminAuthenticator, add_admin_route, choice, direction, paging
from homeserver.http.request import json_response, query_bool, query_int
from storage.stores.admin import MEDIA_STATISTICS_ORDER_COLUMNS
from storage.stores.media import ADMIN_MEDIA_ORDERS


class AdminMediaHandlers:
    def __init__(self, media: AdminMediaService, admin: AdminAuthenticator):
        self._media = media
        self._admin = admin

    async def quarantine(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        await self._media.quarantine(requester, request.match_info["serverName"], request.match_info["mediaId"],
                                     quarantine="/media/quarantine/" in request.path)
        return json_response({})

    async def protect(self, request: web.Request) -> web.Response:
        await self._admin(request)
        await self._media.protect(request.match_info["mediaId"], protect="/media/protect/" in request.path)
        return json_response({})

    async def info(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._media.info(request.match_info["serverName"], request.match_info["mediaId"]))

    async def delete(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._media.delete(request.match_info["serverName"],
                                                      request.match_info["mediaId"]))

    async def delete_old(self, request: web.Request) -> web.Response:
        await self._admin(request)
        before_ts = query_int(request, "before_ts", minimum=0)
        if before_ts is None:
            raise missing_param("Missing integer query parameter 'before_ts'")
        size_gt = query_int(request, "size_gt", 0, minimum=0)
        return json_response(await self._media.delete_old(
            request.match_info.get("serverName"), before_ts, size_gt or 0, query_bool(request, "keep_profiles", True)))

    async def purge_remote_cache(self, request: web.Request) -> web.Response:
        await self._admin(request)
        before_ts = query_int(request, "before_ts", minimum=0)
        if before_ts is None:
            raise missing_param("Missing integer query parameter 'before_ts'")
        return json_response(await self._media.purge_remote_cache(before_ts))

    async def room_media(self, request: web.Request) -> web.Response:
        await self._admin(request)
        return json_response(await self._media.room_media(request.match_info["roomId"]))

    async def quarantine_room(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        return json_response(await self._media.quarantine_room(requester, request.match_info["roomId"]))

    async def quarantine_user(self, request: web.Request) -> web.Response:
        requester = await self._admin(request)
        return json_response(await self._media.quarantine_user(requester, request.match_info["userId"]))

    async def user_media(self, request: web.Request) -> web.Response:
        await self._admin(request)
        offset, limit = paging(request)
        args = {"order_by": choice(request, "order_by", tuple(ADMIN_MEDIA_ORDERS), "created_ts"),
                "backwards": direction(request), "offset": offset, "limit": limit}
        if request.method == "DELETE":
            return json_response(await self._media.delete_user_media(request.match_info["userId"], **args))
        return json_response(await self._media.list_user_media(request.match_info["userId"], **args))

    async def user_media_statistics(self, request: web.Request) -> web.Response:
        await self._admin(request)
        offset, limit = paging(request)
        return json_response(await self._media.user_media_statistics(
            order_by=choice(request, "order_by", tuple(MEDIA_STATISTICS_ORDER_COLUMNS), "user_id"),
            backwards=direction(request), offset=offset, limit=limit,
            from_ts=query_int(request, "from_ts", minimum=0), until_ts=query_int(request, "until_ts", minimum=0),
            search_term=request.query.get("search_term")))

    def register_routes(self, app: web.Application) -> None:
        add_admin_route(app, "GET", "/v1/statistics/users/media", self.user_media_statistics)
        add_admin_route(app, "POST", "/v1/media/quarantine/{serverName}/{mediaId}", self.quarantine)
        add_admin_route(app, "POST", "/v1/media/unquarantine/{serverName}/{mediaId}", self.quarantine)
        add_admin_route(app, "POST", "/v1/media/protect/{mediaId}", self.protect)
        add_admin_route(app, "POST", "/v1/media/unprotect/{mediaId}", self.protect)
        add_admin_route(app, "POST", "/v1/media/delete", self.delete_old)
        add_admin_route(app, "POST", "/v1/media/{serverName}/delete", self.delete_old)
        add_admin_route(app, "GET", "/v1/media/{serverName}/{mediaId}", self.info)
        add_admin_route(app, "DELETE", "/v1/media/{serverName}/{mediaId}", self.delete)
        add_admin_route(app, "POST", "/v1/purge_media_cache", self.purge_remote_cache)
        add_admin_route(app, "GET", "/v1/room/{roomId}/media", self.room_media)
        add_admin_route(app, "POST", "/v1/room/{roomId}/media/quarantine", self.quarantine_room)
        add_admin_route(app, "POST", "/v1/quarantine_media/{roomId}", self.quarantine_room)
        add_admin_route(app, "POST", "/v1/user/{userId}/media/quarantine", self.quarantine_user)
        add_admin_route(app, "GET", "/v1/users/{userId}/media", self.user_media)
        add_admin_route(app, "DELETE", "/v1/users/{userId}/media", self.user_media)
