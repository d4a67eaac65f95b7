"""The client API asking other servers: remote profiles (/query/profile, cached briefly), another
server's room directory (/publicRooms?server=, GET and POST), aliases of other servers
(/query/directory), each against a fake remote server over TLS; failures are clear client errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from tests.federation.helpers import tls_session, user_with_displayname


def profile_routes(calls: list[str]):
    def routes(remote) -> None:
        async def profile(request: web.Request) -> web.Response:
            user_id = request.query["user_id"]
            calls.append(user_id)
            if user_id.startswith("@nobody:"):
                return web.json_response({"errcode": "M_NOT_FOUND", "error": "no such user"}, status=404)
            return web.json_response({"displayname": "Bob far away", "avatar_url": "mxc://remote/bob"})

        remote.route("GET", "/_matrix/federation/v1/query/profile", profile)

    return routes


async def _get(hs, ca, path: str, token: str | None = None, **params: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with tls_session(hs, ca) as session:
        async with session.get(path, params=params or None, headers=headers) as resp:
            return resp.status, await resp.json()


async def test_a_remote_users_profile_is_fetched_over_federation_and_cached(fed_hs, ca, make_remote):
    calls: list[str] = []
    remote = await make_remote(routes=profile_routes(calls))
    bob = f"@bob:{remote.server_name}"
    status, body = await _get(fed_hs, ca, f"/_matrix/client/v3/profile/{quote(bob)}")
    assert status == 200, body
    assert body == {"displayname": "Bob far away", "avatar_url": "mxc://remote/bob"}
    status, body = await _get(fed_hs, ca, f"/_matrix/client/v3/profile/{quote(bob)}/displayname")
    assert (status, body) == (200, {"displayname": "Bob far away"})
    assert calls == [bob]  # the second lookup was answered from the cache
    [(_, _, authorization)] = [r for r in remote.requests if "query/profile" in r[1]]
    assert authorization.startswith("X-Matrix ")


async def test_an_unknown_remote_user_is_404_and_an_unreachable_server_502(fed_hs, ca, make_remote):
    remote = await make_remote(routes=profile_routes([]))
    status, body = await _get(fed_hs, ca, f"/_matrix/client/v3/profile/{quote(f'@nobody:{remote.server_name}')}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await _get(fed_hs, ca, f"/_matrix/client/v3/profile/{quote('@bob:127.0.0.2:1')}")
    assert (status, body["errcode"]) == (502, "M_UNKNOWN"), body


async def test_remote_profiles_are_not_asked_for_when_federation_is_off(make_federating_homeserver, ca, make_remote):
    calls: list[str] = []
    remote = await make_remote(routes=profile_routes(calls))
    hs = await make_federating_homeserver(enabled=False)
    status, body = await _get(hs, ca, f"/_matrix/client/v3/profile/{quote(f'@bob:{remote.server_name}')}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    assert calls == []


def directory_routes(seen: list[tuple[str, Any]]):
    def routes(remote) -> None:
        async def get_rooms(request: web.Request) -> web.Response:
            seen.append(("GET", dict(request.query)))
            return web.json_response({"chunk": [{"room_id": "!a:remote", "num_joined_members": 3,
                                                 "world_readable": False, "guest_can_join": False}],
                                      "next_batch": "opaque-token", "total_room_count_estimate": 1})

        async def post_rooms(request: web.Request) -> web.Response:
            seen.append(("POST", await request.json()))
            return web.json_response({"chunk": [], "total_room_count_estimate": 0})

        async def directory(request: web.Request) -> web.Response:
            alias = request.query["room_alias"]
            if alias.startswith("#lobby:"):
                return web.json_response({"room_id": "!lobby:remote", "servers": ["other.example"]})
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "no alias"}, status=404)

        remote.route("GET", "/_matrix/federation/v1/publicRooms", get_rooms)
        remote.route("POST", "/_matrix/federation/v1/publicRooms", post_rooms)
        remote.route("GET", "/_matrix/federation/v1/query/directory", directory)

    return routes


async def test_public_rooms_of_another_server_are_asked_with_get_and_post(fed_hs, ca, make_remote):
    seen: list[tuple[str, Any]] = []
    remote = await make_remote(routes=directory_routes(seen))
    status, body = await _get(fed_hs, ca, "/_matrix/client/v3/publicRooms", server=remote.server_name, limit="5",
                              since="opaque-token")
    assert status == 200, body
    assert body["chunk"][0]["room_id"] == "!a:remote" and body["next_batch"] == "opaque-token"
    assert seen[0] == ("GET", {"limit": "5", "since": "opaque-token"})
    user = await user_with_displayname(fed_hs, ca, "carol", "Carol")
    async with tls_session(fed_hs, ca) as session:
        async with session.post("/_matrix/client/v3/publicRooms", params={"server": remote.server_name},
                                json={"filter": {"generic_search_term": "lobby"}, "limit": 3},
                                headers={"Authorization": f"Bearer {user['access_token']}"}) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["chunk"] == []
    assert seen[1] == ("POST", {"filter": {"generic_search_term": "lobby"}, "limit": 3})


async def test_public_rooms_of_an_unreachable_or_malformed_server_are_clear_errors(fed_hs, ca):
    status, body = await _get(fed_hs, ca, "/_matrix/client/v3/publicRooms", server="127.0.0.2:1")
    assert (status, body["errcode"]) == (502, "M_UNKNOWN")
    status, body = await _get(fed_hs, ca, "/_matrix/client/v3/publicRooms", server="not a server!")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    assert "server" in body["error"]


async def test_an_alias_of_another_server_resolves_over_federation(fed_hs, ca, make_remote):
    remote = await make_remote(routes=directory_routes([]))
    alias = f"#lobby:{remote.server_name}"
    status, body = await _get(fed_hs, ca, f"/_matrix/client/v3/directory/room/{quote(alias)}")
    assert status == 200, body
    assert body["room_id"] == "!lobby:remote"
    assert body["servers"] == [remote.server_name, "other.example"]
    status, body = await _get(fed_hs, ca, f"/_matrix/client/v3/directory/room/{quote('#gone:' + remote.server_name)}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
