"""Spaces across servers: our /_matrix/federation/v1/hierarchy describes a space and the children the
asking server may see (signed requests only), and the client /hierarchy asks the servers a child link's
`via` names about rooms we are not in, filtering what they say by the same preview rules."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from homeserver.directory.hierarchy import may_preview_summary, ordered_child_states
from tests.federation.helpers import tls_session
from tests.support.rooms import new_user

SPACE = {"type": "m.space"}


async def _add_child(user, space: str, room_id: str, via: list[str], **content: Any) -> None:
    await user.call("PUT", f"/rooms/{space}/state/m.space.child/{room_id}", {"via": via, **content})


async def _signed_get(remote, hs, ca, uri: str, *, signed: bool = True) -> tuple[int, Any]:
    headers = {"Authorization": remote.authorization(hs.config.server_name, "GET", uri)} if signed else {}
    async with tls_session(hs, ca) as session:
        async with session.get(uri, headers=headers) as resp:
            return resp.status, await resp.json()


def _summary(room_id: str, **fields: Any) -> dict[str, Any]:
    return {"room_id": room_id, "num_joined_members": 3, "world_readable": False, "guest_can_join": False,
            "join_rule": "public", **fields}


def _link(room_id: str, via: list[str], ts: int = 1, **content: Any) -> dict[str, Any]:
    return {"type": "m.space.child", "state_key": room_id, "content": {"via": via, **content},
            "sender": "@x:remote", "origin_server_ts": ts}


def test_remote_children_state_is_validated_and_ordered_like_local_links():
    entries = [_link("!b:r", ["r"], 2), _link("!a:r", ["r"], 3, order="a"), _link("!novia:r", []),
               {"type": "m.room.name", "state_key": "!x:r", "content": {"via": ["r"]}}, "junk",
               _link("!c:r", ["r"], 1, suggested=True)]
    assert [e["state_key"] for e in ordered_child_states(entries, suggested_only=False)] == ["!a:r", "!c:r", "!b:r"]
    assert [e["state_key"] for e in ordered_child_states(entries, suggested_only=True)] == ["!c:r"]


def test_who_may_preview_a_room_another_server_summarised():
    assert may_preview_summary({"join_rule": "public"}, set)
    assert may_preview_summary({"join_rule": "knock"}, set)
    assert may_preview_summary({"join_rule": "invite", "world_readable": True}, set)
    assert not may_preview_summary({"join_rule": "invite"}, set)
    restricted = {"join_rule": "restricted", "allowed_room_ids": ["!s:x"]}
    assert may_preview_summary(restricted, lambda: {"!s:x"})
    assert not may_preview_summary(restricted, lambda: {"!t:x"})
    assert not may_preview_summary({"join_rule": "restricted", "allowed_room_ids": "!s:x"}, lambda: {"!s:x"})


async def test_our_hierarchy_endpoint_describes_a_space_and_the_children_the_server_may_see(fed_hs, ca, remote):
    async with tls_session(fed_hs, ca) as session:
        alice = await new_user(session, "alice")
        space = await alice.create_room(name="Huiskamer", creation_content=SPACE, preset="public_chat")
        public = await alice.create_room(name="Koffie", preset="public_chat")
        private = await alice.create_room(name="Geheim", preset="private_chat")
        sub = await alice.create_room(name="Sub", creation_content=SPACE, preset="public_chat")
        here = fed_hs.config.server_name
        for room_id in (public, private, sub):
            await _add_child(alice, space, room_id, [here])
        await _add_child(alice, space, "!elsewhere:other.example", ["other.example"])
        hidden_space = await alice.create_room(creation_content=SPACE, preset="private_chat")

    status, body = await _signed_get(remote, fed_hs, ca, f"/_matrix/federation/v1/hierarchy/{space}")
    assert status == 200, body
    assert body["room"]["room_id"] == space and body["room"]["name"] == "Huiskamer"
    assert body["room"]["room_type"] == "m.space"
    assert {c["state_key"] for c in body["room"]["children_state"]} == {public, private, sub, "!elsewhere:other.example"}
    assert {c["room_id"]: c.get("name") for c in body["children"]} == {public: "Koffie", sub: "Sub"}
    assert all("children_state" not in c for c in body["children"])
    assert body["inaccessible_children"] == [private]

    status, body = await _signed_get(remote, fed_hs, ca, f"/_matrix/federation/v1/hierarchy/{hidden_space}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await _signed_get(remote, fed_hs, ca, "/_matrix/federation/v1/hierarchy/!nope:nowhere")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await _signed_get(remote, fed_hs, ca, f"/_matrix/federation/v1/hierarchy/{space}",
                                     signed=False)
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")


async def test_the_client_hierarchy_asks_the_via_servers_about_rooms_we_are_not_in(fed_hs, ca, make_remote):
    asked: list[str] = []

    def routes(remote) -> None:
        async def hierarchy(request: web.Request) -> web.Response:
            room_id = request.match_info["roomId"]
            asked.append(room_id)
            name = remote.server_name
            if room_id == f"!farspace:{name}":
                return web.json_response({
                    "room": _summary(room_id, name="Far space", room_type="m.space", children_state=[
                        _link(f"!farroom:{name}", [name], 1), _link(f"!secret:{name}", [name], 2),
                        _link(f"!invite:{name}", [name], 3), _link(f"!deeper:{name}", [name], 4)]),
                    "children": [_summary(f"!farroom:{name}", name="Far room"),
                                 _summary(f"!invite:{name}", name="Invite only", join_rule="invite"),
                                 _summary(f"!deeper:{name}", name="Deeper", room_type="m.space")],
                    "inaccessible_children": [f"!secret:{name}"],
                })
            if room_id == f"!deeper:{name}":
                return web.json_response({"room": _summary(room_id, name="Deeper", room_type="m.space",
                                                           children_state=[]),
                                          "children": [], "inaccessible_children": []})
            if room_id == f"!garbage:{name}":
                return web.json_response({"room": "not a summary"})
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "no"}, status=404)

        remote.route("GET", "/_matrix/federation/v1/hierarchy/{roomId}", hierarchy)

    remote = await make_remote(routes=routes)
    name = remote.server_name
    async with tls_session(fed_hs, ca) as session:
        alice = await new_user(session, "alice")
        space = await alice.create_room(name="Local space", creation_content=SPACE)
        await _add_child(alice, space, f"!farspace:{name}", [name], order="a")
        await _add_child(alice, space, f"!garbage:{name}", [name], order="b")
        await _add_child(alice, space, f"!unknown:{name}", [name], order="c")
        result = await alice.call("GET", f"/_matrix/client/v1/rooms/{space}/hierarchy")
        again = await alice.call("GET", f"/_matrix/client/v1/rooms/{space}/hierarchy")

    rooms = {r["room_id"]: r for r in result["rooms"]}
    assert [r["room_id"] for r in result["rooms"]] == [space, f"!farspace:{name}", f"!farroom:{name}",
                                                      f"!deeper:{name}"]
    far = rooms[f"!farspace:{name}"]
    assert far["name"] == "Far space"
    assert [c["state_key"] for c in far["children_state"]] == [f"!farroom:{name}", f"!secret:{name}",
                                                              f"!invite:{name}", f"!deeper:{name}"]
    assert rooms[f"!farroom:{name}"]["children_state"] == [] and rooms[f"!farroom:{name}"]["name"] == "Far room"
    # The far room's summary came with its parent's answer and the secret room was not asked about;
    # answers are cached, so the second walk asked only where the first got no usable answer.
    assert set(asked) == {f"!farspace:{name}", f"!deeper:{name}", f"!garbage:{name}", f"!unknown:{name}"}
    assert asked.count(f"!farspace:{name}") == asked.count(f"!deeper:{name}") == 1
    assert again["rooms"] == result["rooms"]


async def test_a_space_on_another_of_our_servers_is_walked_from_its_room_id(make_federating_homeserver, ca):
    origin = await make_federating_homeserver()
    viewer = await make_federating_homeserver()
    async with tls_session(origin, ca) as session:
        alice = await new_user(session, "alice")
        space = await alice.create_room(name="Their space", creation_content=SPACE, preset="public_chat")
        room = await alice.create_room(name="Their room", preset="public_chat")
        private = await alice.create_room(name="Their secret", preset="private_chat")
        await _add_child(alice, space, room, [origin.config.server_name])
        await _add_child(alice, space, private, [origin.config.server_name])
    async with tls_session(viewer, ca) as session:
        bob = await new_user(session, "bob")
        result = await bob.call("GET", f"/_matrix/client/v1/rooms/{quote(space)}/hierarchy")
        hidden = await bob.call("GET", f"/_matrix/client/v1/rooms/{quote(private)}/hierarchy", expect=403)
    assert [(r["room_id"], r["name"]) for r in result["rooms"]] == [(space, "Their space"), (room, "Their room")]
    assert {c["state_key"] for c in result["rooms"][0]["children_state"]} == {room, private}
    assert hidden["errcode"] == "M_FORBIDDEN"
