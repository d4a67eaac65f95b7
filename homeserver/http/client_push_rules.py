"""Client API: push rules (/pushrules/...): the whole rule set, and one rule with its enabled/actions."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.auth import RequestAuthenticator
from homeserver.http.request import json_body, json_object, json_response
from homeserver.http.routing import add_client_route
from homeserver.push.push_rules import PushRulesService

_RULE = "/pushrules/global/{kind}/{rule_id}"


class PushRuleHandlers:
    def __init__(self, push_rules: PushRulesService, authenticate: RequestAuthenticator):
        self._push_rules = push_rules
        self._authenticate = authenticate

    async def get_all(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response(await self._push_rules.get_ruleset(requester.user_id))

    async def get_global(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        return json_response((await self._push_rules.get_ruleset(requester.user_id))["global"])

    async def get_rule(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        m = request.match_info
        return json_response(await self._push_rules.get_rule(requester.user_id, m["kind"], m["rule_id"]))

    async def put_rule(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        m = request.match_info
        await self._push_rules.put_rule(requester.user_id, m["kind"], m["rule_id"], body,
                                        before=request.query.get("before") or None,
                                        after=request.query.get("after") or None)
        return json_response({})

    async def delete_rule(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        m = request.match_info
        await self._push_rules.delete_rule(requester.user_id, m["kind"], m["rule_id"])
        return json_response({})

    async def get_enabled(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        m = request.match_info
        enabled = await self._push_rules.get_enabled(requester.user_id, m["kind"], m["rule_id"])
        return json_response({"enabled": enabled})

    async def put_enabled(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        # Any JSON value: some clients send a bare boolean instead of {"enabled": ...}.
        body = await json_body(request)
        m = request.match_info
        await self._push_rules.set_enabled(requester.user_id, m["kind"], m["rule_id"], body)
        return json_response({})

    async def get_actions(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        m = request.match_info
        actions = await self._push_rules.get_actions(requester.user_id, m["kind"], m["rule_id"])
        return json_response({"actions": actions})

    async def put_actions(self, request: web.Request) -> web.Response:
        requester = await self._authenticate(request)
        body = await json_object(request)
        m = request.match_info
        await self._push_rules.set_actions(requester.user_id, m["kind"], m["rule_id"], body)
        return json_response({})

    def register_routes(self, app: web.Application) -> None:
        add_client_route(app, "GET", "/pushrules/", self.get_all)
        add_client_route(app, "GET", "/pushrules/global/", self.get_global)
        add_client_route(app, "GET", _RULE, self.get_rule)
        add_client_route(app, "PUT", _RULE, self.put_rule)
        add_client_route(app, "DELETE", _RULE, self.delete_rule)
        add_client_route(app, "GET", _RULE + "/enabled", self.get_enabled)
        add_client_route(app, "PUT", _RULE + "/enabled", self.put_enabled)
        add_client_route(app, "GET", _RULE + "/actions", self.get_actions)
        add_client_route(app, "PUT", _RULE + "/actions", self.put_actions)
