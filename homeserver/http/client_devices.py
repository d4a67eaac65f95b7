"""Client API: /devices, /devices/{deviceId}, /delete_devices."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.devices import DeviceService, parse_device_ids, parse_display_name
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_object, json_response
from homeserver.http.routing import add_client_route


class DeviceHandlers:
    def __init__(self, devices: DeviceService, authenticate: RequestAuthenticator):
        self._devices = devices
        self._authenticate = authenticate

    async def list_devices(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        return json_response({"devices": await self._devices.list_devices(requester.user_id)})

    async def get_device(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        return json_response(await self._devices.get_device(requester.user_id, request.match_info["device_id"]))

    async def update_device(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request, allow_guest=True)
        body = await json_object(request)
        if requester.app_service_id is not None:
            created = await self._devices.upsert_device(requester.user_id, request.match_info["device_id"],
                                                        parse_display_name(body))
            return json_response({}, status=201 if created else 200)
        await self._devices.rename_device(requester.user_id, request.match_info["device_id"],
                                          parse_display_name(body))
        return json_response({})

    async def delete_device(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        # Older clients send no body at all before the UIA challenge.
        body = await json_object(request, allow_empty=True)
        await self._devices.delete_devices_with_auth(requester, body, [request.match_info["device_id"]],
                                                     uri=request.path, method="DELETE")
        return json_response({})

    async def delete_devices(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        device_ids = parse_device_ids(body)
        await self._devices.delete_devices_with_auth(requester, body, device_ids, uri=request.path, method="POST")
        return json_response({})

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "GET", "/devices", self.list_devices)
        add_client_route(app, "GET", "/devices/{device_id}", self.get_device)
        add_client_route(app, "PUT", "/devices/{device_id}", self.update_device)
        add_client_route(app, "DELETE", "/devices/{device_id}", self.delete_device)
        add_client_route(app, "POST", "/delete_devices", self.delete_devices)
