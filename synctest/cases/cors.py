"""CORS: browsers pre-flight every cross-origin request and read headers on every answer."""

from __future__ import annotations

from synctest.checks import expect, expect_status, header_tokens
from synctest.client import Response
from synctest.context import Context
from synctest.registry import case

# The spec's recommended values; a server may allow more, never less.
REQUIRED_METHODS = {"get", "post", "put", "delete", "options"}
REQUIRED_HEADERS = {"x-requested-with", "content-type", "authorization"}

PREFLIGHT_HEADERS = {
    "Origin": "https://client.synctest.example",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


def expect_cors_headers(response: Response) -> None:
    origin = response.headers.get("Access-Control-Allow-Origin")
    expect(origin == "*", f"{response.describe()}: Access-Control-Allow-Origin is {origin!r}, expected '*'")
    missing_methods = REQUIRED_METHODS - header_tokens(response, "Access-Control-Allow-Methods")
    expect(
        not missing_methods, f"{response.describe()}: Access-Control-Allow-Methods lacks {missing_methods}"
    )
    missing_headers = REQUIRED_HEADERS - header_tokens(response, "Access-Control-Allow-Headers")
    expect(
        not missing_headers, f"{response.describe()}: Access-Control-Allow-Headers lacks {missing_headers}"
    )


@case
async def preflight_on_a_client_path_allows_any_origin(ctx: Context) -> None:
    response = await ctx.request("OPTIONS", "/_matrix/client/v3/login", headers=PREFLIGHT_HEADERS)
    expect_status(response, 200, 204)
    expect_cors_headers(response)


@case
async def preflight_runs_no_endpoint_logic(ctx: Context) -> None:
    # whoami needs a token; an OPTIONS answered with 401 would mean the handler ran.
    response = await ctx.request("OPTIONS", "/_matrix/client/v3/account/whoami", headers=PREFLIGHT_HEADERS)
    expect_status(response, 200, 204)
    expect_cors_headers(response)


@case
async def successful_responses_carry_cors_headers(ctx: Context) -> None:
    response = await ctx.get("/_matrix/client/versions")
    expect_status(response, 200)
    expect_cors_headers(response)


@case
async def not_found_errors_carry_cors_headers(ctx: Context) -> None:
    response = await ctx.get("/_matrix/client/v3/synctest_no_such_endpoint")
    expect_status(response, 404)
    expect_cors_headers(response)


@case
async def auth_errors_carry_cors_headers(ctx: Context) -> None:
    response = await ctx.get("/_matrix/client/v3/account/whoami")
    expect_status(response, 401)
    expect_cors_headers(response)
