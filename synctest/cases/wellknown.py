"""/.well-known/matrix/client and /.well-known/matrix/server.

Both documents are optional: the spec documents 404 for "no discovery information" on the
client file, and server discovery falls through to other methods when the server file is
absent. What is served must have the schema's shape.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from synctest.checks import expect, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case

CLIENT = "/.well-known/matrix/client"
SERVER = "/.well-known/matrix/server"
# The appendix's server name grammar: an IPv4 literal, a bracketed IPv6 literal or a DNS name
# (1-255 characters of letters, digits, "-" and "."), then an optional ":port".
SERVER_NAME = re.compile(r"^(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,255})(:[0-9]{1,5})?$")


@case
async def client_discovery_is_valid_or_absent(ctx: Context) -> None:
    response = await ctx.get(CLIENT)
    expect_status(response, 200, 404)
    if response.status == 404:
        return
    body = expect_schema(response, CLIENT)
    base_url = body["m.homeserver"]["base_url"]
    parts = urlsplit(base_url)
    expect(
        parts.scheme in ("http", "https") and parts.netloc,
        f"{response.describe()}: m.homeserver.base_url {base_url!r} is not an http(s) URL",
    )


@case
async def server_delegation_is_valid_or_absent(ctx: Context) -> None:
    response = await ctx.get(SERVER)
    expect_status(response, 200, 404)
    if response.status == 404:
        return
    body = expect_schema(response, SERVER)
    expect(
        isinstance(body.get("m.server"), str) and body["m.server"],
        f"{response.describe()}: m.server missing or empty in {body}",
    )
    # "The server name to delegate server-server communications to, with optional port."
    expect(SERVER_NAME.match(body["m.server"]),
           f"{response.describe()}: m.server {body['m.server']!r} is not a server name with optional port")


@case
async def support_information_is_valid_or_absent(ctx: Context) -> None:
    response = await ctx.get("/.well-known/matrix/support")
    expect_status(response, 200, 404)
    if response.status == 200:
        body = expect_schema(response, "/.well-known/matrix/support")
        expect(body.get("contacts") or body.get("support_page"),
               f"{response.describe()}: neither contacts nor support_page")
