"""Federation API: `PUT /_matrix/federation/v1/3pid/onbind`, called by identity servers when an
address with pending third-party invites is bound to a Matrix user."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.request import json_object, json_response
from homeserver.rooms.third_party_invites import ThirdPartyInviter


class ThirdPartyBindHandlers:
    def __init__(self, inviter: ThirdPartyInviter):
        self._inviter = inviter

    async def on_bind(self, request: web.Request) -> web.Response:
        await self._inviter.on_bind(await json_object(request))
        return json_response({})

    def register_federation(self, app: web.Application) -> None:
        app.router.add_put("/_matrix/federation/v1/3pid/onbind", self.on_bind)
