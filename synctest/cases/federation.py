"""The server-server API as a black box sees it: published keys, the version, request authentication.

No second homeserver is involved. The cases read what any server publishes without
authentication (``/_matrix/key/v2``, ``/_matrix/federation/v1/version``) and check that the
authenticated endpoints refuse requests that are unsigned, malformed, addressed to another
server, or signed by a key the server cannot know. Every request goes to ``ctx.federation``,
which may be a different listener than the client API.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import signedjson.key
import signedjson.sign
from unpaddedbase64 import decode_base64

from synctest.checks import ERROR_SCHEMA, expect, expect_json_content_type, expect_schema, expect_status
from synctest.client import Response
from synctest.context import Context
from synctest.registry import CaseFailure, case
from synctest.schema import SchemaViolation, SpecError, validate_against_file

KEY_SERVER = "/_matrix/key/v2/server"
KEY_QUERY = "/_matrix/key/v2/query"
KEY_QUERY_ONE = "/_matrix/key/v2/query/{serverName}"
VERSION = "/_matrix/federation/v1/version"

# A server name nobody can fetch keys from: an IP literal on loopback port 1. Both our server and
# Synapse refuse outbound federation to loopback by default, and where that is allowed the
# connection is refused at once, so a key lookup for it fails fast rather than waiting on DNS.
UNREACHABLE_ORIGIN = "127.0.0.1:1"


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _server_keys(ctx: Context) -> dict[str, Any]:
    response = await ctx.federation.get(KEY_SERVER)
    expect_status(response, 200)
    return expect_schema(response, KEY_SERVER)


def _verify_self_signed(keys: dict[str, Any], where: str) -> None:
    """``keys`` is signed by its own server with at least one key in its ``verify_keys``,
    and every signature by that server with a listed key verifies."""
    server_name = keys["server_name"]
    published = {**keys.get("old_verify_keys", {}), **keys["verify_keys"]}
    signatures = keys.get("signatures", {}).get(server_name, {})
    current = [key_id for key_id in signatures if key_id in keys["verify_keys"]]
    expect(current, f"{where}: no signature by {server_name} with a key in verify_keys: {keys.get('signatures')}")
    for key_id in signatures:
        if key_id not in published or not key_id.startswith("ed25519:"):
            continue
        verify_key = signedjson.key.decode_verify_key_bytes(key_id, decode_base64(published[key_id]["key"]))
        try:
            signedjson.sign.verify_signed_json(keys, server_name, verify_key)
        except signedjson.sign.SignatureVerifyException as error:
            raise CaseFailure(f"{where}: signature {key_id} of {server_name} does not verify: {error}") from None


def _expect_unauthorized(response: Response, *statuses: int) -> None:
    """A standard error with errcode M_UNAUTHORIZED and one of ``statuses`` (default 401)."""
    expect_status(response, *(statuses or (401,)))
    body = response.json
    try:
        validate_against_file(ERROR_SCHEMA, body)
    except (SchemaViolation, SpecError) as error:
        raise CaseFailure(f"{response.describe()}: {error}") from None
    expect(body.get("errcode") == "M_UNAUTHORIZED",
           f"{response.describe()}: errcode {body.get('errcode')!r}, expected 'M_UNAUTHORIZED'")


def _x_matrix(origin: str, destination: str, key_id: str, signature: str) -> str:
    return f'X-Matrix origin="{origin}",destination="{destination}",key="{key_id}",sig="{signature}"'


def _signed_header(origin: str, destination: str, method: str, uri: str, content: Any = None,
                   *, key_version: str = "synctest") -> str:
    """An X-Matrix header for this request, signed as the spec says with a throwaway key."""
    signing_key = signedjson.key.generate_signing_key(key_version)
    request: dict[str, Any] = {"method": method, "uri": uri, "origin": origin, "destination": destination}
    if content is not None:
        request["content"] = content
    signed = signedjson.sign.sign_json(request, origin, signing_key)
    key_id = f"{signing_key.alg}:{signing_key.version}"
    return _x_matrix(origin, destination, key_id, signed["signatures"][origin][key_id])


async def _send_with(ctx: Context, method: str, uri: str, content: Any, authorization: str | None) -> Response:
    headers = {"Authorization": authorization} if authorization else {}
    if content is None:
        return await ctx.federation.request(method, uri, headers=headers)
    return await ctx.federation.request(method, uri, body=json.dumps(content).encode(),
                                        headers={**headers, "Content-Type": "application/json"})


# --- published keys and version -------------------------------------------------------------------


@case
async def server_keys_match_the_schema(ctx: Context) -> None:
    response = await ctx.federation.get(KEY_SERVER)
    expect_status(response, 200)
    expect_json_content_type(response)
    keys = expect_schema(response, KEY_SERVER)
    expect(keys.get("server_name"), f"{response.describe()}: server_name is missing")
    expect(keys["verify_keys"], f"{response.describe()}: verify_keys is empty")
    for key_id in (*keys["verify_keys"], *keys.get("old_verify_keys", {})):
        algorithm, _, version = key_id.partition(":")
        expect(algorithm and version and version.replace("_", "").isalnum(),
               f"{response.describe()}: key ID {key_id!r} is not algorithm:version with version [a-zA-Z0-9_]")


@case
async def server_keys_are_signed_by_the_server_itself(ctx: Context) -> None:
    _verify_self_signed(await _server_keys(ctx), f"GET {KEY_SERVER}")


@case
async def server_keys_are_valid_for_a_while_and_old_keys_have_expired(ctx: Context) -> None:
    keys = await _server_keys(ctx)
    now = _now_ms()
    valid_until = keys.get("valid_until_ts")
    expect(isinstance(valid_until, int), f"GET {KEY_SERVER}: valid_until_ts missing or not an integer")
    expect(valid_until > now, f"GET {KEY_SERVER}: valid_until_ts {valid_until} is not in the future (now {now})")
    for key_id, old in keys.get("old_verify_keys", {}).items():
        expect(old["expired_ts"] <= now, f"GET {KEY_SERVER}: old key {key_id} expires in the future")
        expect(key_id not in keys["verify_keys"], f"GET {KEY_SERVER}: {key_id} is both current and old")


@case
async def server_keys_are_ed25519(ctx: Context) -> None:
    keys = await _server_keys(ctx)
    ed25519 = [key_id for key_id in keys["verify_keys"] if key_id.startswith("ed25519:")]
    expect(ed25519, f"GET {KEY_SERVER}: no ed25519 key in {list(keys['verify_keys'])}")
    for key_id in ed25519:
        raw = decode_base64(keys["verify_keys"][key_id]["key"])
        expect(len(raw) == 32, f"GET {KEY_SERVER}: {key_id} is {len(raw)} bytes, an ed25519 key is 32")


@case
async def version_matches_the_schema(ctx: Context) -> None:
    response = await ctx.federation.get(VERSION)
    expect_status(response, 200)
    expect_json_content_type(response)
    body = expect_schema(response, VERSION)
    expect(isinstance(body.get("server"), dict), f"{response.describe()}: no server object in {body}")


# --- the key query (notary) API, asked for the server's own keys ------------------------------------


def _check_own_entries(response: Response, body: dict[str, Any], published: dict[str, Any]) -> None:
    """Whatever the notary returns for the server itself is its published keys, validly signed.

    The spec lets a notary leave out servers it could not reach and holds no cache for ("this
    may result in an empty array"); Synapse answers for its own name only from what it fetched
    over federation, which on loopback it refuses to do, so an empty answer is allowed.
    """
    server_name = published["server_name"]
    for entry in body["server_keys"]:
        if entry.get("server_name") != server_name:
            continue
        # The notary here is the server itself, so its own signature is also the notary's.
        _verify_self_signed(entry, response.describe())
        _matches_published(response, entry, published)


def _matches_published(response: Response, entry: dict[str, Any], published: dict[str, Any]) -> None:
    missing = {
        key_id for key_id, key in published["verify_keys"].items()
        if entry["verify_keys"].get(key_id, {}).get("key") != key["key"]
    }
    expect(not missing, f"{response.describe()}: current keys {sorted(missing)} differ from GET {KEY_SERVER}")


@case
async def key_query_for_the_servers_own_keys_matches_the_schema(ctx: Context) -> None:
    published = await _server_keys(ctx)
    response = await ctx.federation.post(KEY_QUERY, json={"server_keys": {published["server_name"]: {}}})
    expect_status(response, 200)
    expect_json_content_type(response)
    _check_own_entries(response, expect_schema(response, KEY_QUERY), published)


@case
async def key_query_by_key_id_matches_the_schema(ctx: Context) -> None:
    published = await _server_keys(ctx)
    key_id = next(iter(published["verify_keys"]))
    criteria = {key_id: {"minimum_valid_until_ts": _now_ms()}}
    response = await ctx.federation.post(KEY_QUERY, json={"server_keys": {published["server_name"]: criteria}})
    expect_status(response, 200)
    _check_own_entries(response, expect_schema(response, KEY_QUERY), published)


@case
async def key_query_for_one_server_matches_the_schema(ctx: Context) -> None:
    published = await _server_keys(ctx)
    path = KEY_QUERY_ONE.format(serverName=quote(published["server_name"], safe=""))
    response = await ctx.federation.get(path)
    expect_status(response, 200)
    _check_own_entries(response, expect_schema(response, KEY_QUERY_ONE), published)


@case
async def key_query_for_no_servers_is_empty(ctx: Context) -> None:
    # "If no servers are given, the notary server must return an empty server_keys array."
    response = await ctx.federation.post(KEY_QUERY, json={"server_keys": {}})
    expect_status(response, 200)
    body = expect_schema(response, KEY_QUERY)
    expect(body["server_keys"] == [], f"{response.describe()}: expected an empty server_keys, got {body}")


# --- authentication of federation requests ----------------------------------------------------------

# (name, method, path, body): authenticated endpoints a black box can address without knowing any
# room; authentication comes before anything is looked up, so made-up IDs are fine.
AUTHENTICATED = [
    ("profile_query", "GET", "/_matrix/federation/v1/query/profile?user_id=%40synctest%3Aexample.org", None),
    ("send_transaction", "PUT", "/_matrix/federation/v1/send/synctest-txn",
     {"origin": "example.org", "origin_server_ts": 1, "pdus": []}),
    ("make_join", "GET", "/_matrix/federation/v1/make_join/%21synctest%3Aexample.org/%40synctest%3Aexample.org",
     None),
    ("public_rooms", "GET", "/_matrix/federation/v1/publicRooms", None),
]


def _unauthenticated_case(method: str, path: str, content: Any):
    async def run(ctx: Context) -> None:
        _expect_unauthorized(await _send_with(ctx, method, path, content, None))

    return run


for _name, _method, _path, _content in AUTHENTICATED:
    case(name=f"unauthenticated_{_name}_is_401")(_unauthenticated_case(_method, _path, _content))


@case
async def a_bearer_token_is_not_federation_authentication(ctx: Context) -> None:
    user = await ctx.register_user()
    method, path, content = "GET", AUTHENTICATED[0][2], None
    _expect_unauthorized(await _send_with(ctx, method, path, content, f"Bearer {user.access_token}"))


@case
async def a_malformed_x_matrix_header_is_refused(ctx: Context) -> None:
    # The spec names no status for an unparseable header; Synapse answers 400 M_UNAUTHORIZED, we 401.
    path = AUTHENTICATED[0][2]
    for header in ("X-Matrix", "X-Matrix origin", 'X-Matrix origin="",key="ed25519:a",sig="AAAA"'):
        _expect_unauthorized(await _send_with(ctx, "GET", path, None, header), 400, 401)


@case
async def a_request_for_another_destination_is_401(ctx: Context) -> None:
    # "If this property is included, but the value does not match the receiving server's name,
    # the receiving server must deny the request with an HTTP status code 401 Unauthorized."
    method, path, content = AUTHENTICATED[1][1:]
    header = _signed_header(UNREACHABLE_ORIGIN, "synctest-elsewhere.example.org", method, path, content)
    _expect_unauthorized(await _send_with(ctx, method, path, content, header))


@case
async def a_request_signed_by_an_unfetchable_origin_is_401(ctx: Context) -> None:
    server_name = (await _server_keys(ctx))["server_name"]
    for method, path, content in (AUTHENTICATED[0][1:], AUTHENTICATED[1][1:]):
        header = _signed_header(UNREACHABLE_ORIGIN, server_name, method, path, content)
        _expect_unauthorized(await _send_with(ctx, method, path, content, header))


@case
async def a_request_forged_in_the_servers_own_name_is_401(ctx: Context) -> None:
    # Signed with a throwaway key under the ID of the server's real key: the server holds the
    # real public key, so the signature cannot verify.
    keys = await _server_keys(ctx)
    server_name = keys["server_name"]
    key_id = next(k for k in keys["verify_keys"] if k.startswith("ed25519:"))
    method, path, content = AUTHENTICATED[0][1:]
    header = _signed_header(server_name, server_name, method, path, content, key_version=key_id.split(":", 1)[1])
    _expect_unauthorized(await _send_with(ctx, method, path, content, header))

