"""GET /capabilities."""

from __future__ import annotations

from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case

CAPABILITIES = "/_matrix/client/v3/capabilities"


@case
async def capabilities_list_room_versions_with_a_stable_default(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.get(CAPABILITIES, token=user.access_token)
    expect_status(response, 200)
    capabilities = expect_schema(response, CAPABILITIES)["capabilities"]
    versions = capabilities.get("m.room_versions")
    expect(versions is not None, f"no m.room_versions in {sorted(capabilities)}")
    expect(
        versions["available"].get(versions["default"]) == "stable",
        f"default room version {versions['default']!r} is not listed as stable: {versions['available']}",
    )


@case
async def capabilities_say_whether_the_profile_can_be_changed(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.get(CAPABILITIES, token=user.access_token)
    capabilities = expect_schema(response, CAPABILITIES)["capabilities"]
    for name in (
        "m.change_password",
        "m.set_displayname",
        "m.set_avatar_url",
        "m.3pid_changes",
        "m.profile_fields",
    ):
        expect(
            isinstance(capabilities.get(name, {}).get("enabled"), bool),
            f"{name} is {capabilities.get(name)!r}, expected an object with a boolean 'enabled'",
        )


@case
async def capabilities_without_a_token_is_missing_token(ctx: Context) -> None:
    expect_error(await ctx.get(CAPABILITIES), 401, "M_MISSING_TOKEN")
