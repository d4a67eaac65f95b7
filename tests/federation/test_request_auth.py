"""Inbound X-Matrix request authentication, against our server on TLS, with requests signed by a fake
remote server's key: what passes, and every way a request is refused."""

from __future__ import annotations

import time
from urllib.parse import quote

from federation.x_matrix import XMatrixParseError, parse_x_matrix
from homeserver.events.signing import generate_signing_key
from tests.federation.helpers import user_with_displayname

PROFILE = "/_matrix/federation/v1/query/profile"


def profile_uri(user_id: str, field: str | None = None) -> str:
    uri = f"{PROFILE}?user_id={quote(user_id, safe='')}"
    return uri + (f"&field={field}" if field else "")


async def test_a_correctly_signed_request_gets_the_profile(fed_hs, ca, remote):
    user = await user_with_displayname(fed_hs, ca, "alice", "Alice")
    status, body = await remote.request(fed_hs.base_url("federation"), fed_hs.config.server_name, "GET",
                                        profile_uri(user["user_id"]))
    assert status == 200, body
    assert body["displayname"] == "Alice"
    status, body = await remote.request(fed_hs.base_url("federation"), fed_hs.config.server_name, "GET",
                                        profile_uri(user["user_id"], "displayname"))
    assert (status, body) == (200, {"displayname": "Alice"})


async def test_the_origins_keys_are_fetched_once_and_then_read_from_the_database(fed_hs, ca, remote):
    user = await user_with_displayname(fed_hs, ca, "alice", "Alice")
    for _ in range(3):
        status, _ = await remote.request(fed_hs.base_url("federation"), fed_hs.config.server_name, "GET",
                                         profile_uri(user["user_id"]))
        assert status == 200
    assert remote.key_requests == 1
    stored = await fed_hs.federation.key_store.get_server_key(remote.server_name, remote.key_id)
    assert stored is not None and stored.valid_until_ts == remote.valid_until_ms


async def test_a_request_without_authorization_is_unauthorized(fed_hs, ca):
    from tests.federation.helpers import tls_session

    async with tls_session(fed_hs, ca) as session:
        async with session.get(profile_uri(f"@alice:{fed_hs.config.server_name}")) as resp:
            body = await resp.json()
    assert resp.status == 401
    assert body["errcode"] == "M_UNAUTHORIZED"
    assert "X-Matrix" in body["error"]


async def test_a_forged_signature_is_unauthorized(fed_hs, ca, remote):
    user = await user_with_displayname(fed_hs, ca, "alice", "Alice")
    uri = profile_uri(user["user_id"])
    forger = generate_signing_key(remote.signing_key.version)  # same key ID, different key
    auth = remote.authorization(fed_hs.config.server_name, "GET", uri, key=forger)
    status, body = await remote.request(fed_hs.base_url("federation"), fed_hs.config.server_name, "GET", uri,
                                        authorization=auth)
    assert status == 401
    assert body["errcode"] == "M_UNAUTHORIZED"
    assert "Invalid signature" in body["error"]


async def test_a_signature_over_another_uri_is_unauthorized(fed_hs, ca, remote):
    user = await user_with_displayname(fed_hs, ca, "alice", "Alice")
    auth = remote.authorization(fed_hs.config.server_name, "GET", profile_uri(user["user_id"], "avatar_url"))
    status, body = await remote.request(fed_hs.base_url("federation"), fed_hs.config.server_name, "GET",
                                        profile_uri(user["user_id"]), authorization=auth)
    assert status == 401
    assert "Invalid signature" in body["error"]


async def test_a_request_claiming_another_origin_is_unauthorized(fed_hs, ca, make_remote):
    user = await user_with_displayname(fed_hs, ca, "alice", "Alice")
    honest = await make_remote("127.0.0.2")
    impostor = await make_remote("127.0.0.3")  # same key version, so the key ID exists at the origin
    uri = profile_uri(user["user_id"])
    auth = impostor.authorization(fed_hs.config.server_name, "GET", uri, origin=honest.server_name)
    status, body = await impostor.request(fed_hs.base_url("federation"), fed_hs.config.server_name, "GET", uri,
                                          authorization=auth)
    assert status == 401
    assert body["errcode"] == "M_UNAUTHORIZED"
    assert honest.server_name in body["error"]


async def test_a_request_for_another_destination_is_unauthorized(fed_hs, ca, remote):
    user = await user_with_displayname(fed_hs, ca, "alice", "Alice")
    uri = profile_uri(user["user_id"])
    other = "127.0.0.1:1"  # our host, another port: the port is part of the name
    auth = remote.authorization(other, "GET", uri)
    status, body = await remote.request(fed_hs.base_url("federation"), fed_hs.config.server_name, "GET", uri,
                                        authorization=auth)
    assert status == 401
    assert body["errcode"] == "M_UNAUTHORIZED"
    assert "destination" in body["error"]


async def test_a_request_signed_with_an_unpublished_key_is_unauthorized(fed_hs, ca, remote):
    user = await user_with_displayname(fed_hs, ca, "alice", "Alice")
    uri = profile_uri(user["user_id"])
    auth = remote.authorization(fed_hs.config.server_name, "GET", uri, key=generate_signing_key("unknown"))
    status, body = await remote.request(fed_hs.base_url("federation"), fed_hs.config.server_name, "GET", uri,
                                        authorization=auth)
    assert status == 401
    assert "unknown key ed25519:unknown" in body["error"]


async def test_a_request_signed_with_an_expired_old_key_is_unauthorized(fed_hs, ca, remote):
    user = await user_with_displayname(fed_hs, ca, "alice", "Alice")
    old = generate_signing_key("old1")
    remote.old_keys["ed25519:old1"] = (old, int(time.time() * 1000) - 60_000)
    uri = profile_uri(user["user_id"])
    auth = remote.authorization(fed_hs.config.server_name, "GET", uri, key=old)
    status, body = await remote.request(fed_hs.base_url("federation"), fed_hs.config.server_name, "GET", uri,
                                        authorization=auth)
    assert status == 401
    assert "expired" in body["error"]


async def test_a_key_past_its_valid_until_ts_is_unauthorized(fed_hs, ca, remote):
    user = await user_with_displayname(fed_hs, ca, "alice", "Alice")
    remote.valid_until_ms = int(time.time() * 1000) - 1000
    status, body = await remote.request(fed_hs.base_url("federation"), fed_hs.config.server_name, "GET",
                                        profile_uri(user["user_id"]))
    assert status == 401
    assert "only valid until" in body["error"]


async def test_a_key_response_not_signed_by_its_own_key_is_not_trusted(fed_hs, ca, remote):
    user = await user_with_displayname(fed_hs, ca, "alice", "Alice")
    remote.key_response_signers = [generate_signing_key(remote.signing_key.version)]
    status, body = await remote.request(fed_hs.base_url("federation"), fed_hs.config.server_name, "GET",
                                        profile_uri(user["user_id"]))
    assert status == 401
    assert "unknown key" in body["error"]


async def test_a_denied_origin_is_forbidden(make_federating_homeserver, ca, remote):
    hs = await make_federating_homeserver(server_denylist=["127.0.0.2"])
    user = await user_with_displayname(hs, ca, "alice", "Alice")
    status, body = await remote.request(hs.base_url("federation"), hs.config.server_name, "GET",
                                        profile_uri(user["user_id"]))
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"
    assert remote.key_requests == 0


async def test_an_origin_off_the_allow_list_is_forbidden(make_federating_homeserver, ca, remote):
    hs = await make_federating_homeserver(server_allowlist=["example.org"])
    status, body = await remote.request(hs.base_url("federation"), hs.config.server_name, "GET",
                                        profile_uri(f"@alice:{hs.config.server_name}"))
    assert status == 403
    assert "allow list" in body["error"]


async def test_an_acl_check_refuses_with_forbidden_after_the_signature_verified(fed_hs, ca, remote):
    from homeserver.errors import MatrixError

    seen = []

    async def deny(origin, request):
        seen.append(origin)
        raise MatrixError(403, "M_FORBIDDEN", f"{origin} is denied by the room's server ACL")

    fed_hs.federation.authenticator.add_acl_check(deny)
    user = await user_with_displayname(fed_hs, ca, "alice", "Alice")
    status, body = await remote.request(fed_hs.base_url("federation"), fed_hs.config.server_name, "GET",
                                        profile_uri(user["user_id"]))
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert seen == [remote.server_name]


async def test_query_directory_resolves_a_local_alias_for_a_signed_request(fed_hs, ca, remote):
    from tests.federation.helpers import tls_session

    user = await user_with_displayname(fed_hs, ca, "alice", "Alice")
    headers = {"Authorization": f"Bearer {user['access_token']}"}
    async with tls_session(fed_hs, ca) as session:
        async with session.post("/_matrix/client/v3/createRoom", json={"room_alias_name": "lounge"},
                                headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            room_id = (await resp.json())["room_id"]
    alias = f"#lounge:{fed_hs.config.server_name}"
    uri = f"/_matrix/federation/v1/query/directory?room_alias={quote(alias, safe='')}"
    status, body = await remote.request(fed_hs.base_url("federation"), fed_hs.config.server_name, "GET", uri)
    assert (status, body) == (200, {"room_id": room_id, "servers": [fed_hs.config.server_name]})


async def test_public_rooms_lists_published_rooms_for_get_and_post(fed_hs, ca, remote):
    from tests.federation.helpers import tls_session

    user = await user_with_displayname(fed_hs, ca, "alice", "Alice")
    headers = {"Authorization": f"Bearer {user['access_token']}"}
    async with tls_session(fed_hs, ca) as session:
        async with session.post("/_matrix/client/v3/createRoom", json={"visibility": "public", "name": "Lobby"},
                                headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            room_id = (await resp.json())["room_id"]
    base, dest = fed_hs.base_url("federation"), fed_hs.config.server_name
    status, body = await remote.request(base, dest, "GET", "/_matrix/federation/v1/publicRooms?limit=10")
    assert status == 200, body
    assert [r["room_id"] for r in body["chunk"]] == [room_id]
    status, body = await remote.request(base, dest, "POST", "/_matrix/federation/v1/publicRooms",
                                        {"filter": {"generic_search_term": "nothing like it"}})
    assert (status, body["chunk"]) == (200, [])
    status, body = await remote.request(base, dest, "POST", "/_matrix/federation/v1/publicRooms",
                                        {"filter": {"generic_search_term": "lobby"}})
    assert [r["room_id"] for r in body["chunk"]] == [room_id]


async def test_public_rooms_needs_a_signature(fed_hs, ca):
    from tests.federation.helpers import tls_session

    async with tls_session(fed_hs, ca) as session:
        async with session.get("/_matrix/federation/v1/publicRooms") as resp:
            assert resp.status == 401
            assert (await resp.json())["errcode"] == "M_UNAUTHORIZED"


async def test_a_profile_query_for_another_servers_user_is_refused(fed_hs, remote):
    status, body = await remote.request(fed_hs.base_url("federation"), fed_hs.config.server_name, "GET",
                                        profile_uri("@bob:elsewhere.example"))
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


def test_the_x_matrix_header_parser_accepts_the_forms_the_spec_allows():
    auth = parse_x_matrix('X-Matrix origin=origin.example:8448,Destination="dest.example",KEY="ed25519:a_b",'
                          ' sig="c2ln\\""')
    assert (auth.origin, auth.destination, auth.key, auth.sig) == ("origin.example:8448", "dest.example",
                                                                   "ed25519:a_b", 'c2ln"')
    assert parse_x_matrix('x-matrix origin="o",key="ed25519:k",sig="s"').destination is None


def test_the_x_matrix_header_parser_names_what_is_missing_or_malformed():
    for header, problem in [("Bearer abc", "X-Matrix"), ('X-Matrix origin="o",key="k"', "sig"),
                            ('X-Matrix key="k",sig="s",origin="o', "unterminated"),
                            ('X-Matrix origin="o"key="k"', "expected ','"), ("X-Matrix origin", "no value")]:
        try:
            parse_x_matrix(header)
        except XMatrixParseError as e:
            assert problem in str(e), (header, str(e))
        else:
            raise AssertionError(f"{header!r} parsed")


async def test_a_request_without_the_destination_parameter_is_accepted_from_older_servers(fed_hs, ca, remote):
    user = await user_with_displayname(fed_hs, ca, "alice", "Alice")
    uri = profile_uri(user["user_id"], "displayname")
    full = remote.authorization(fed_hs.config.server_name, "GET", uri)
    without_destination = ",".join(p for p in full.split(",") if not p.startswith("destination="))
    status, body = await remote.request(fed_hs.base_url("federation"), fed_hs.config.server_name, "GET", uri,
                                        authorization=without_destination)
    assert (status, body) == (200, {"displayname": "Alice"})


async def test_with_federation_disabled_no_federation_route_answers_and_nothing_goes_out(
        make_federating_homeserver, ca, remote):
    from federation.client import FederationDenied
    from tests.federation.helpers import tls_session

    hs = await make_federating_homeserver(enabled=False)
    async with tls_session(hs, ca) as session:
        for path in ("/_matrix/key/v2/server", "/_matrix/federation/v1/publicRooms"):
            async with session.get(path) as resp:
                assert (resp.status, (await resp.json())["errcode"]) == (404, "M_UNRECOGNIZED")
    try:
        await hs.federation.client.get_json(remote.server_name, "/_matrix/federation/v1/publicRooms")
    except FederationDenied as e:
        assert "disabled" in str(e)
    else:
        raise AssertionError("a request went out with federation disabled")
    assert remote.requests == []


# Federation-listener routes the spec authenticates otherwise than with X-Matrix: /version needs
# nothing, /openid/userinfo takes the OpenID access token, and /3pid/onbind is called by identity
# servers, whose signatures travel inside the body.
NOT_X_MATRIX = {"/_matrix/federation/v1/version", "/_matrix/federation/v1/openid/userinfo",
                "/_matrix/federation/v1/3pid/onbind"}


async def test_every_federation_route_that_takes_x_matrix_refuses_an_unsigned_request(fed_hs, ca):
    from tests.federation.helpers import tls_session

    app = fed_hs._runners[0].app
    routes = {(route.method, route.resource.canonical) for route in app.router.routes()
              if route.resource is not None and route.resource.canonical.startswith("/_matrix/federation/")
              and route.method != "HEAD"}
    assert ("GET", "/_matrix/federation/v1/query/profile") in routes
    async with tls_session(fed_hs, ca) as session:
        for method, path in sorted(routes):
            concrete = path.replace("{", "").replace("}", "")
            async with session.request(method, concrete, json={} if method != "GET" else None) as resp:
                if path == "/_matrix/federation/v1/version":
                    assert resp.status == 200
                elif path in NOT_X_MATRIX:
                    assert resp.status in (400, 401), (method, path)
                else:
                    assert resp.status == 401, (method, path)
                    assert (await resp.json())["errcode"] == "M_UNAUTHORIZED"


async def test_an_origin_named_by_an_ipv6_literal_is_verified(fed_hs, ca, make_remote):
    remote = await make_remote("::1")
    user = await user_with_displayname(fed_hs, ca, "alice", "Alice")
    status, body = await remote.request(fed_hs.base_url("federation"), fed_hs.config.server_name, "GET",
                                        profile_uri(user["user_id"], "displayname"))
    assert (status, body) == (200, {"displayname": "Alice"})
    assert remote.key_requests == 1
