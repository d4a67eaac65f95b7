"""The standard error answers: unknown endpoints, wrong methods, bad JSON, missing tokens."""

from __future__ import annotations

from synctest.checks import expect_error
from synctest.client import HttpClient
from synctest.context import Context
from synctest.registry import case

# One unknown path under each API prefix a homeserver owns; none needs a token to be refused.
UNKNOWN_PATHS = {
    "client": "/_matrix/client/v3/synctest_no_such_endpoint",
    "client_unstable": "/_matrix/client/unstable/synctest.no_such_endpoint",
    "federation": "/_matrix/federation/v1/synctest_no_such_endpoint",
    "media": "/_matrix/media/v3/synctest_no_such_endpoint",
    "key": "/_matrix/key/v2/synctest_no_such_endpoint",
}

# Known paths with a method the spec does not define for them.
WRONG_METHODS = {
    "delete_versions": ("DELETE", "/_matrix/client/versions"),
    "put_login": ("PUT", "/_matrix/client/v3/login"),
    "post_versions": ("POST", "/_matrix/client/versions"),
    "delete_federation_version": ("DELETE", "/_matrix/federation/v1/version"),
}

LOGIN = "/_matrix/client/v3/login"
SERVER_SERVER_PREFIXES = ("/_matrix/federation/", "/_matrix/key/")
NOT_JSON_BODIES = {
    "truncated_json": b'{"type": "m.login.password", ',
    "invalid_utf8": b'{"type": "m.login.password", "user": "\xff\xfe"}',
    "empty_body": b"",
}


def _client_for(ctx: Context, path: str) -> HttpClient:
    """The server-server API may be on a listener of its own (--federation-base-url)."""
    return ctx.federation if path.startswith(SERVER_SERVER_PREFIXES) else ctx


def _unknown_endpoint_case(path: str):
    async def run(ctx: Context) -> None:
        expect_error(await _client_for(ctx, path).get(path), 404, "M_UNRECOGNIZED")

    return run


def _wrong_method_case(method: str, path: str):
    async def run(ctx: Context) -> None:
        expect_error(await _client_for(ctx, path).request(method, path), 405, "M_UNRECOGNIZED")

    return run


def _not_json_case(body: bytes):
    async def run(ctx: Context) -> None:
        response = await ctx.post(LOGIN, body=body, headers={"Content-Type": "application/json"})
        expect_error(response, 400, "M_NOT_JSON")

    return run


for _label, _path in UNKNOWN_PATHS.items():
    case(name=f"unknown_{_label}_endpoint_is_404_unrecognized")(_unknown_endpoint_case(_path))
for _label, (_method, _path) in WRONG_METHODS.items():
    case(name=f"{_label}_is_405_unrecognized")(_wrong_method_case(_method, _path))
for _label, _body in NOT_JSON_BODIES.items():
    case(name=f"login_with_{_label}_is_400_not_json")(_not_json_case(_body))


@case
async def missing_access_token_is_401_missing_token(ctx: Context) -> None:
    expect_error(await ctx.get("/_matrix/client/v3/account/whoami"), 401, "M_MISSING_TOKEN")


@case
async def unknown_access_token_is_401_unknown_token(ctx: Context) -> None:
    response = await ctx.get("/_matrix/client/v3/account/whoami", token="synctest_not_a_real_token")
    expect_error(response, 401, "M_UNKNOWN_TOKEN")


@case
async def a_header_token_with_a_query_token_is_401_missing_token(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.get("/_matrix/client/v3/account/whoami", token=user.access_token,
                             params={"access_token": "synctest_not_a_real_token"})
    expect_error(response, 401, "M_MISSING_TOKEN")


@case
async def create_room_with_an_empty_body_is_400_not_json(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.post("/_matrix/client/v3/createRoom", body=b"", token=user.access_token,
                              headers={"Content-Type": "application/json"})
    expect_error(response, 400, "M_NOT_JSON")

