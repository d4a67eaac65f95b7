"""GET /_matrix/client/versions."""

from __future__ import annotations

import re

from synctest.checks import expect, expect_json_content_type, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case

PATH = "/_matrix/client/versions"
# The spec's wording: "Values will take the form vX.Y or rX.Y.Z in historical cases".
VERSION_FORMAT = re.compile(r"^(v\d+\.\d+|r\d+\.\d+\.\d+)$")
# v1.11 brought authenticated media, which current Element clients depend on; a server
# advertising nothing at least this new is not one today's clients can fully use.
CURRENT_MINIMUM = (1, 11)


def _stable(version: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"v(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else None


@case
async def response_matches_schema(ctx: Context) -> None:
    response = await ctx.get(PATH)
    expect_status(response, 200)
    expect_json_content_type(response)
    expect_schema(response, PATH)


@case
async def lists_v1_1_and_a_current_version(ctx: Context) -> None:
    response = await ctx.get(PATH)
    expect_status(response, 200)
    versions = expect_schema(response, PATH)["versions"]
    expect("v1.1" in versions, f"v1.1 not advertised in {versions}")
    stable = [v for v in map(_stable, versions) if v is not None]
    expect(
        any(v >= CURRENT_MINIMUM for v in stable),
        f"no version >= v{CURRENT_MINIMUM[0]}.{CURRENT_MINIMUM[1]} advertised in {versions}",
    )


@case
async def version_strings_have_the_spec_form(ctx: Context) -> None:
    response = await ctx.get(PATH)
    expect_status(response, 200)
    versions = expect_schema(response, PATH)["versions"]
    malformed = [v for v in versions if not VERSION_FORMAT.match(v)]
    expect(not malformed, f"versions not of the form vX.Y or rX.Y.Z: {malformed}")


@case
async def unstable_features_are_namespaced(ctx: Context) -> None:
    response = await ctx.get(PATH)
    expect_status(response, 200)
    features = expect_schema(response, PATH).get("unstable_features", {})
    bare = [name for name in features if "." not in name]
    expect(not bare, f"unstable_features must be namespaced, got {bare}")


@case
async def cross_signing_is_advertised_for_element(ctx: Context) -> None:
    # Element Web starts cross-signing set-up only when it sees this flag.
    response = await ctx.get(PATH)
    expect_status(response, 200)
    features = expect_schema(response, PATH).get("unstable_features", {})
    expect(features.get("org.matrix.e2e_cross_signing") is True,
           f"org.matrix.e2e_cross_signing is not advertised: {features}")
