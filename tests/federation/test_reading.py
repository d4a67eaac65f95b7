"""The read-only federation endpoints, asked by a fake remote server with a user in our room:
what they answer, and how they refuse (unauthenticated, not in the room, server ACL, unknown
events, bad parameters); history the remote server may not see comes back redacted."""

from __future__ import annotations

import time
from urllib.parse import quote

from homeserver.events.room_versions import get_room_version
from tests.federation.helpers import tls_session
from tests.federation.remote_rooms import join_remote_user, local_user, pdu_id

V1 = "/_matrix/federation/v1"


def q(value: str) -> str:
    return quote(value, safe="")


class Scene:
    """Our server, Alice (ours) in a room, Bob of the fake remote joined to it, and messages."""

    def __init__(self, hs, remote, alice, room_id, bob_join, messages):
        self.hs, self.remote, self.alice, self.room_id = hs, remote, alice, room_id
        self.bob_join, self.messages = bob_join, messages

    async def get(self, uri: str, *, remote=None, method: str = "GET", content=None):
        asker = remote or self.remote
        return await asker.request(self.hs.base_url("federation"), self.hs.config.server_name, method, uri,
                                   content)


async def make_scene(fed_hs, ca, remote, session, *, visibility: str | None = None, before: int = 0,
                     after: int = 3) -> Scene:
    alice = await local_user(session, "alice")
    room_id = await alice.create_room(preset="public_chat")
    if visibility is not None:
        await alice.call("PUT", f"/rooms/{q(room_id)}/state/m.room.history_visibility/",
                         {"history_visibility": visibility})
    early = [await alice.send(room_id, f"before bob {i}") for i in range(before)]
    bob_join = await join_remote_user(fed_hs, remote, room_id)
    late = [await alice.send(room_id, f"after bob {i}") for i in range(after)]
    return Scene(fed_hs, remote, alice, room_id, bob_join, early + late)


async def test_a_member_server_reads_an_event_its_state_and_its_auth_chain(fed_hs, ca, remote):
    async with tls_session(fed_hs, ca) as session:
        scene = await make_scene(fed_hs, ca, remote, session)
        last = scene.messages[-1]
        status, body = await scene.get(f"{V1}/event/{q(last)}")
        assert status == 200, body
        assert body["origin"] == fed_hs.config.server_name
        [pdu] = body["pdus"]
        assert pdu_id(pdu) == last and pdu["content"]["body"] == "after bob 2"

        status, ids = await scene.get(f"{V1}/state_ids/{q(scene.room_id)}?event_id={q(last)}")
        assert status == 200, ids
        state = await fed_hs.event_store.get_state_before_event(last)
        assert sorted(ids["pdu_ids"]) == sorted(state.values())
        assert scene.bob_join.event_id in ids["pdu_ids"]
        assert set(ids["auth_chain_ids"]) >= {state[("m.room.create", "")], state[("m.room.power_levels", "")]}

        status, full = await scene.get(f"{V1}/state/{q(scene.room_id)}?event_id={q(last)}")
        assert status == 200, full
        assert sorted(pdu_id(p) for p in full["pdus"]) == sorted(ids["pdu_ids"])
        assert sorted(pdu_id(p) for p in full["auth_chain"]) == sorted(ids["auth_chain_ids"])

        status, auth = await scene.get(f"{V1}/event_auth/{q(scene.room_id)}/{q(last)}")
        assert status == 200, auth
        event = await fed_hs.event_store.get_event(last)
        chain = {pdu_id(p) for p in auth["auth_chain"]}
        assert set(event.auth_event_ids) <= chain and last not in chain
        rv = get_room_version("11")
        assert all("event_id" not in p for p in auth["auth_chain"]) and rv.identifier == "11"


async def test_backfill_and_missing_events_walk_the_dag_backwards(fed_hs, ca, remote):
    async with tls_session(fed_hs, ca) as session:
        scene = await make_scene(fed_hs, ca, remote, session, after=8)
        m = scene.messages
        status, body = await scene.get(f"{V1}/backfill/{q(scene.room_id)}?v={q(m[-1])}&limit=4")
        assert status == 200, body
        assert [pdu_id(p) for p in body["pdus"]] == [m[-1], m[-2], m[-3], m[-4]]

        status, body = await scene.get(f"{V1}/get_missing_events/{q(scene.room_id)}", method="POST",
                                       content={"earliest_events": [m[1]], "latest_events": [m[-1]], "limit": 10})
        assert status == 200, body
        assert [pdu_id(p) for p in body["events"]] == m[2:-1]  # oldest first, without either end

        status, body = await scene.get(f"{V1}/get_missing_events/{q(scene.room_id)}", method="POST",
                                       content={"earliest_events": [m[1]], "latest_events": [m[-1]], "limit": 2})
        assert [pdu_id(p) for p in body["events"]] == m[-3:-1]


async def test_timestamp_to_event_finds_the_closest_event_each_way(fed_hs, ca, remote):
    async with tls_session(fed_hs, ca) as session:
        scene = await make_scene(fed_hs, ca, remote, session)
        now = int(time.time() * 1000) + 1000
        status, body = await scene.get(f"{V1}/timestamp_to_event/{q(scene.room_id)}?ts={now}&dir=b")
        assert status == 200, body
        assert body["event_id"] == scene.messages[-1]
        status, body = await scene.get(f"{V1}/timestamp_to_event/{q(scene.room_id)}?ts=0&dir=f")
        assert status == 200, body
        create = await fed_hs.event_store.get_current_state_event_id(scene.room_id, "m.room.create", "")
        assert body["event_id"] == create
        status, body = await scene.get(f"{V1}/timestamp_to_event/{q(scene.room_id)}?ts={now}&dir=f")
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


async def test_history_before_the_servers_users_joined_comes_back_redacted_under_joined_visibility(
        fed_hs, ca, remote):
    async with tls_session(fed_hs, ca) as session:
        scene = await make_scene(fed_hs, ca, remote, session, visibility="joined", before=2, after=1)
        secret, seen = scene.messages[0], scene.messages[-1]
        status, body = await scene.get(f"{V1}/event/{q(secret)}")
        assert status == 200, body
        [pdu] = body["pdus"]
        assert pdu_id(pdu) == secret and pdu["content"] == {}  # the DAG stays whole, the content does not
        status, body = await scene.get(f"{V1}/event/{q(seen)}")
        assert body["pdus"][0]["content"]["body"] == "after bob 0"
        status, body = await scene.get(f"{V1}/backfill/{q(scene.room_id)}?v={q(seen)}&limit=5")
        contents = {pdu_id(p): p["content"] for p in body["pdus"]}
        assert contents[seen]["body"] == "after bob 0" and contents[scene.messages[1]] == {}


async def test_shared_history_is_readable_from_before_the_join(fed_hs, ca, remote):
    async with tls_session(fed_hs, ca) as session:
        scene = await make_scene(fed_hs, ca, remote, session, visibility="shared", before=1, after=0)
        status, body = await scene.get(f"{V1}/event/{q(scene.messages[0])}")
        assert status == 200 and body["pdus"][0]["content"]["body"] == "before bob 0"


async def test_a_server_with_nobody_in_the_room_is_forbidden(fed_hs, ca, remote, make_remote):
    stranger = await make_remote("127.0.0.3")
    async with tls_session(fed_hs, ca) as session:
        scene = await make_scene(fed_hs, ca, remote, session)
        last, room = scene.messages[-1], q(scene.room_id)
        for uri, method, content in [
            (f"{V1}/event/{q(last)}", "GET", None),
            (f"{V1}/state/{room}?event_id={q(last)}", "GET", None),
            (f"{V1}/state_ids/{room}?event_id={q(last)}", "GET", None),
            (f"{V1}/event_auth/{room}/{q(last)}", "GET", None),
            (f"{V1}/backfill/{room}?v={q(last)}&limit=5", "GET", None),
            (f"{V1}/get_missing_events/{room}", "POST", {"earliest_events": [], "latest_events": [last]}),
            (f"{V1}/timestamp_to_event/{room}?ts=0&dir=f", "GET", None),
        ]:
            status, body = await scene.get(uri, remote=stranger, method=method, content=content)
            assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), uri
            status, _ = await scene.get(uri, method=method, content=content)
            assert status == 200, uri


async def test_a_server_the_room_acl_denies_is_forbidden(fed_hs, ca, remote):
    async with tls_session(fed_hs, ca) as session:
        scene = await make_scene(fed_hs, ca, remote, session)
        last = scene.messages[-1]
        uri = f"{V1}/state_ids/{q(scene.room_id)}?event_id={q(last)}"
        assert (await scene.get(uri))[0] == 200
        await scene.alice.call("PUT", f"/rooms/{q(scene.room_id)}/state/m.room.server_acl/",
                               {"allow": ["*"], "deny": ["127.0.0.2"]})
        status, body = await scene.get(uri)
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
        assert "ACL" in body["error"]
        await scene.alice.call("PUT", f"/rooms/{q(scene.room_id)}/state/m.room.server_acl/",
                               {"allow": ["*"], "allow_ip_literals": False})
        assert (await scene.get(uri))[0] == 403


async def test_requests_without_a_signature_are_unauthorized(fed_hs, ca, remote):
    async with tls_session(fed_hs, ca) as session:
        scene = await make_scene(fed_hs, ca, remote, session, after=1)
        last, room = scene.messages[-1], q(scene.room_id)
        for method, uri in [("GET", f"{V1}/event/{q(last)}"), ("GET", f"{V1}/state_ids/{room}?event_id={q(last)}"),
                            ("GET", f"{V1}/backfill/{room}?v={q(last)}&limit=1"),
                            ("POST", f"{V1}/get_missing_events/{room}"),
                            ("GET", f"{V1}/timestamp_to_event/{room}?ts=0&dir=f")]:
            async with session.request(method, uri, json={} if method == "POST" else None) as resp:
                body = await resp.json()
            assert (resp.status, body["errcode"]) == (401, "M_UNAUTHORIZED"), uri


async def test_unknown_events_are_not_found(fed_hs, ca, remote):
    async with tls_session(fed_hs, ca) as session:
        scene = await make_scene(fed_hs, ca, remote, session, after=1)
        room = q(scene.room_id)
        for uri in [f"{V1}/event/{q('$nope')}", f"{V1}/state_ids/{room}?event_id={q('$nope')}",
                    f"{V1}/state/{room}?event_id={q('$nope')}", f"{V1}/event_auth/{room}/{q('$nope')}"]:
            status, body = await scene.get(uri)
            assert (status, body["errcode"]) == (404, "M_NOT_FOUND"), uri


async def test_bad_parameters_are_refused_naming_the_parameter(fed_hs, ca, remote):
    async with tls_session(fed_hs, ca) as session:
        scene = await make_scene(fed_hs, ca, remote, session, after=1)
        last, room = q(scene.messages[-1]), q(scene.room_id)
        cases = [
            ("GET", f"{V1}/state_ids/{room}", None, "M_MISSING_PARAM", "event_id"),
            ("GET", f"{V1}/backfill/{room}?limit=3", None, "M_MISSING_PARAM", "v"),
            ("GET", f"{V1}/backfill/{room}?v={last}", None, "M_MISSING_PARAM", "limit"),
            ("GET", f"{V1}/backfill/{room}?v={last}&limit=many", None, "M_INVALID_PARAM", "limit"),
            ("GET", f"{V1}/timestamp_to_event/{room}?ts=0&dir=sideways", None, "M_INVALID_PARAM", "dir"),
            ("GET", f"{V1}/timestamp_to_event/{room}?dir=f", None, "M_MISSING_PARAM", "ts"),
            ("POST", f"{V1}/get_missing_events/{room}", {"earliest_events": []}, "M_MISSING_PARAM",
             "latest_events"),
            ("POST", f"{V1}/get_missing_events/{room}", {"earliest_events": [], "latest_events": "x"}, "M_BAD_JSON",
             "latest_events"),
            ("POST", f"{V1}/get_missing_events/{room}", {"earliest_events": [], "latest_events": [],
                                                         "limit": "ten"}, "M_BAD_JSON", "limit"),
            ("GET", f"{V1}/state_ids/{q('#not-a-room')}?event_id={last}", None, "M_INVALID_PARAM", "roomId"),
        ]
        for method, uri, content, errcode, field in cases:
            status, body = await scene.get(uri, method=method, content=content)
            assert (status, body["errcode"]) == (400, errcode), (uri, body)
            assert field in body["error"], (uri, body)


async def test_version_and_openid_userinfo_are_served(fed_hs, ca, remote):
    async with tls_session(fed_hs, ca) as session:
        async with session.get(f"{V1}/version") as resp:
            assert resp.status == 200
            server = (await resp.json())["server"]
        assert server["name"] and server["version"]
        async with session.get(f"{V1}/openid/userinfo", params={"access_token": "nope"}) as resp:
            body = await resp.json()
        assert (resp.status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")


async def test_the_events_of_an_erased_user_reach_other_servers_pruned(fed_hs, ca, remote):
    async with tls_session(fed_hs, ca) as session:
        scene = await make_scene(fed_hs, ca, remote, session, after=1)
        carol = await local_user(session, "carol")
        await carol.join(scene.room_id)
        said = await carol.send(scene.room_id, "carol was here")
        challenge = await carol.call("POST", "/account/deactivate", {"erase": True}, expect=401)
        await carol.call("POST", "/account/deactivate", {"erase": True, "auth": {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": carol.user_id},
            "password": "correct horse", "session": challenge["session"]}})

        status, body = await scene.get(f"{V1}/event/{q(said)}")
        assert status == 200, body
        [pdu] = body["pdus"]
        assert pdu_id(pdu) == said and pdu["content"] == {}
        status, body = await scene.get(f"{V1}/backfill/{q(scene.room_id)}?v={q(said)}&limit=3")
        assert status == 200, body
        contents = {pdu_id(p): p["content"] for p in body["pdus"]}
        assert contents[said] == {}
        assert contents[scene.messages[-1]]["body"] == "after bob 0"  # Alice's are whole
