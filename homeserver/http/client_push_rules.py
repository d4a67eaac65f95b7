"""Client API: push rules (/pushrules/...): the whole rule set, and one rule with its enabled/actions."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import MatrixError, invalid_param
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.http.request import json_body, json_object, json_response
from homeserver.http.routing import add_client_route
from homeserver.push.push_rules import PushRulesService

_RULE = "/pushrules/global/{kind}/{rule_id}"
_ATTRIBUTES = ("enabled", "actions")


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

    async def other_paths(self, request: web.Request) -> web.Response:
        """Every other /pushrules/ path: the list of one kind, or a 400 naming what is wrong.

        The spec's paths are /pushrules/global/{kind}/{ruleId}[/enabled|/actions]; a path that
        does not fit them is a malformed request (400, as in Synapse), not an unknown endpoint.
        """
        requester = await self._authenticate(request)
        parts = request.match_info["tail"].split("/")
        if parts[0] != "global":
            raise invalid_param(f"scope: {parts[0]!r} is not a push rule scope; the only one is 'global'")
        if len(parts) < 3:
            raise MatrixError(400, "M_UNRECOGNIZED",
                              "Push rule paths end with a slash: /pushrules/global/ or /pushrules/global/{kind}/")
        kind, rule_id = parts[1], parts[2]
        if len(parts) == 3 and not rule_id:
            if request.method == "GET":
                return json_response(await self._push_rules.get_kind(requester.user_id, kind))
            await self._push_rules.get_kind(requester.user_id, kind)  # 400 for an unknown kind first
            raise invalid_param("ruleId: must not be empty")
        await self._push_rules.get_kind(requester.user_id, kind)
        raise MatrixError(400, "M_UNRECOGNIZED",
                          f"Unknown push rule attribute {'/'.join(parts[3:])!r}; one of {', '.join(_ATTRIBUTES)}")

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
        for method in ("GET", "PUT", "DELETE"):
            add_client_route(app, method, "/pushrules/{tail:.+}", self.other_paths)
