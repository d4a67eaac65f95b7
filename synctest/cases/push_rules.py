"""Push rules: the default rule set clients read at start-up, and the /pushrules CRUD endpoints.

Servers may serve more default rules than the spec lists (Synapse adds `.im.vector.jitsi` and
still serves the legacy mention rules), so order is checked as a subsequence of the spec's rules.
Error cases check the status, and the errcode only where the spec names one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case
from synctest.users import User

ALL = "/_matrix/client/v3/pushrules/"
GLOBAL = "/_matrix/client/v3/pushrules/global/"
RULE = "/_matrix/client/v3/pushrules/global/{kind}/{ruleId}"
ENABLED = RULE + "/enabled"
ACTIONS = RULE + "/actions"

# The spec's predefined rules per kind, in its order.
SPEC_OVERRIDE = [
    ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
    ".m.rule.is_user_mention", ".m.rule.is_room_mention", ".m.rule.tombstone", ".m.rule.reaction",
    ".m.rule.room.server_acl", ".m.rule.suppress_edits",
]
SPEC_UNDERRIDE = [
    ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one", ".m.rule.message",
    ".m.rule.encrypted",
]
QUIET_ROOM = {"conditions": [{"kind": "event_match", "key": "room_id", "pattern": "!quiet:example.org"}],
              "actions": []}


def rule_path(kind: str, rule_id: str, attr: str | None = None) -> str:
    path = f"/_matrix/client/v3/pushrules/global/{kind}/{quote(rule_id, safe='@:!')}"
    return path if attr is None else f"{path}/{attr}"


def is_subsequence(wanted: list[str], actual: list[str]) -> bool:
    remaining = iter(actual)
    return all(item in remaining for item in wanted)


async def ruleset(ctx: Context, user: User) -> dict[str, Any]:
    response = await ctx.get(ALL, token=user.access_token)
    expect_status(response, 200)
    return expect_schema(response, ALL)["global"]


async def rule_ids(ctx: Context, user: User, kind: str) -> list[str]:
    return [rule["rule_id"] for rule in (await ruleset(ctx, user))[kind]]


async def put_rule(ctx: Context, user: User, kind: str, rule_id: str, body: dict[str, Any],
                   **params: str) -> None:
    response = await ctx.put(rule_path(kind, rule_id), json=body, token=user.access_token, params=params or None)
    expect_status(response, 200)
    expect_schema(response, RULE)


@case
async def pushrules_start_with_the_specs_default_rules(ctx: Context) -> None:
    user = await ctx.register_user()
    rules = await ruleset(ctx, user)
    override = [rule["rule_id"] for rule in rules["override"]]
    underride = [rule["rule_id"] for rule in rules["underride"]]
    expect(override[:1] == [".m.rule.master"], f"override rules start with {override[:1]}, not .m.rule.master")
    expect(is_subsequence(SPEC_OVERRIDE, override), f"override rules {override} miss or reorder {SPEC_OVERRIDE}")
    expect(is_subsequence(SPEC_UNDERRIDE, underride), f"underride rules {underride} miss or reorder {SPEC_UNDERRIDE}")
    for kind in ("room", "sender"):
        expect(rules.get(kind) == [], f"a new user has {kind} rules: {rules.get(kind)}")
    every = [rule for kind in rules.values() for rule in kind]
    expect(all(rule["default"] is True for rule in every), "a new user's rules are not all default")
    by_id = {rule["rule_id"]: rule for rule in every}
    expect(by_id[".m.rule.master"]["enabled"] is False, ".m.rule.master is enabled for a new user")
    expect(by_id[".m.rule.master"]["conditions"] == [] and by_id[".m.rule.master"]["actions"] == [],
           f".m.rule.master is {by_id['.m.rule.master']}")
    invite = by_id[".m.rule.invite_for_me"]["conditions"]
    expect({"kind": "event_match", "key": "state_key", "pattern": user.user_id} in invite,
           f".m.rule.invite_for_me does not name the user: {invite}")
    mention = by_id[".m.rule.is_user_mention"]["conditions"]
    expect(mention == [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids",
                        "value": user.user_id}], f".m.rule.is_user_mention conditions are {mention}")
    expect(by_id[".m.rule.message"]["actions"][:1] == ["notify"], ".m.rule.message does not notify")


@case
async def pushrules_global_is_the_global_ruleset(ctx: Context) -> None:
    user = await ctx.register_user()
    everything = await ruleset(ctx, user)
    response = await ctx.get(GLOBAL, token=user.access_token)
    expect_status(response, 200)
    expect(expect_schema(response, GLOBAL) == everything, "/pushrules/global/ differs from /pushrules/ .global")


@case
async def pushrules_need_an_access_token(ctx: Context) -> None:
    expect_error(await ctx.get(ALL), 401, "M_MISSING_TOKEN")


@case
async def a_new_override_rule_reads_back_and_ranks_below_master_above_defaults(ctx: Context) -> None:
    user = await ctx.register_user()
    await put_rule(ctx, user, "override", "quiet", QUIET_ROOM)
    response = await ctx.get(rule_path("override", "quiet"), token=user.access_token)
    expect_status(response, 200)
    rule = expect_schema(response, RULE)
    expect(rule == {"rule_id": "quiet", "default": False, "enabled": True, **QUIET_ROOM}, f"read back {rule}")
    override = await rule_ids(ctx, user, "override")
    expect(override[:3] == [".m.rule.master", "quiet", ".m.rule.suppress_notices"],
           f"override rules begin {override[:3]}")


@case
async def content_rules_keep_their_pattern_and_can_be_deleted(ctx: Context) -> None:
    user = await ctx.register_user()
    await put_rule(ctx, user, "content", "cake", {"pattern": "cake*lie", "actions": ["notify"]})
    response = await ctx.get(rule_path("content", "cake"), token=user.access_token)
    expect_status(response, 200)
    rule = expect_schema(response, RULE)
    expect(rule.get("pattern") == "cake*lie" and rule["actions"] == ["notify"], f"read back {rule}")
    expect((await rule_ids(ctx, user, "content"))[0] == "cake", "a new content rule is not the first one")
    deleted = await ctx.delete(rule_path("content", "cake"), token=user.access_token)
    expect_status(deleted, 200)
    expect_schema(deleted, RULE)
    expect_error(await ctx.get(rule_path("content", "cake"), token=user.access_token), 404, "M_NOT_FOUND")
    expect_error(await ctx.delete(rule_path("content", "cake"), token=user.access_token), 404, "M_NOT_FOUND")


@case
async def before_and_after_place_a_rule_among_the_users_rules(ctx: Context) -> None:
    user = await ctx.register_user()
    server = user.user_id.split(":", 1)[1]
    rooms = {name: f"!{name}:{server}" for name in "abcd"}
    await put_rule(ctx, user, "room", rooms["a"], {"actions": []})
    await put_rule(ctx, user, "room", rooms["b"], {"actions": []})
    await put_rule(ctx, user, "room", rooms["c"], {"actions": []}, after=rooms["a"])
    await put_rule(ctx, user, "room", rooms["d"], {"actions": []}, before=rooms["a"])
    order = await rule_ids(ctx, user, "room")
    expected = [rooms[name] for name in "bdac"]
    expect(order == expected, f"room rules are {order}, expected {expected}")


@case
async def a_rule_cannot_be_placed_relative_to_an_unknown_rule(ctx: Context) -> None:
    user = await ctx.register_user()
    response = await ctx.put(rule_path("override", "x"), json=QUIET_ROOM, token=user.access_token,
                             params={"before": "no-such-rule"})
    expect_status(response, 400)
    expect("x" not in await rule_ids(ctx, user, "override"), "the refused rule was created anyway")


@case
async def default_rules_can_be_enabled_and_given_new_actions(ctx: Context) -> None:
    user = await ctx.register_user()
    master = rule_path("override", ".m.rule.master", "enabled")
    response = await ctx.get(master, token=user.access_token)
    expect_status(response, 200)
    expect(expect_schema(response, ENABLED) == {"enabled": False}, f"{response.describe()}: {response.json}")
    put = await ctx.put(master, json={"enabled": True}, token=user.access_token)
    expect_status(put, 200)
    expect_schema(put, ENABLED)
    response = await ctx.get(master, token=user.access_token)
    expect(expect_schema(response, ENABLED) == {"enabled": True}, "enabling .m.rule.master did not stick")

    message = rule_path("underride", ".m.rule.message", "actions")
    put = await ctx.put(message, json={"actions": []}, token=user.access_token)
    expect_status(put, 200)
    expect_schema(put, ACTIONS)
    response = await ctx.get(message, token=user.access_token)
    expect_status(response, 200)
    expect(expect_schema(response, ACTIONS) == {"actions": []}, f"{response.describe()}: {response.json}")
    rule = next(r for r in (await ruleset(ctx, user))["underride"] if r["rule_id"] == ".m.rule.message")
    expect(rule["default"] is True and rule["enabled"] is True and rule["actions"] == [],
           f".m.rule.message is now {rule}")


@case
async def user_rules_can_be_disabled(ctx: Context) -> None:
    user = await ctx.register_user()
    sender = f"@someone:{user.user_id.split(':', 1)[1]}"
    await put_rule(ctx, user, "sender", sender, {"actions": ["notify"]})
    put = await ctx.put(rule_path("sender", sender, "enabled"), json={"enabled": False}, token=user.access_token)
    expect_status(put, 200)
    response = await ctx.get(rule_path("sender", sender), token=user.access_token)
    expect_status(response, 200)
    rule = expect_schema(response, RULE)
    expect(rule["enabled"] is False and rule["default"] is False, f"read back {rule}")


@case
async def default_rules_cannot_be_created_or_deleted(ctx: Context) -> None:
    user = await ctx.register_user()
    put = await ctx.put(rule_path("override", ".m.rule.master"), json={"conditions": [], "actions": []},
                        token=user.access_token)
    expect_status(put, 400)
    expect_schema(put, RULE)
    put = await ctx.put(rule_path("override", ".my.rule"), json={"conditions": [], "actions": []},
                        token=user.access_token)
    expect_status(put, 400)
    expect_error(await ctx.delete(rule_path("override", ".m.rule.master"), token=user.access_token),
                 404, "M_NOT_FOUND")
    expect((await rule_ids(ctx, user, "override"))[0] == ".m.rule.master", ".m.rule.master went away")


@case
async def unknown_rules_are_404_not_found(ctx: Context) -> None:
    user = await ctx.register_user()
    for response in (
        await ctx.get(rule_path("override", "no-such-rule"), token=user.access_token),
        await ctx.get(rule_path("override", "no-such-rule", "enabled"), token=user.access_token),
        await ctx.get(rule_path("override", "no-such-rule", "actions"), token=user.access_token),
        await ctx.put(rule_path("override", "no-such-rule", "enabled"), json={"enabled": True},
                      token=user.access_token),
        await ctx.put(rule_path("override", "no-such-rule", "actions"), json={"actions": []},
                      token=user.access_token),
        await ctx.put(rule_path("override", ".m.rule.no_such_rule", "enabled"), json={"enabled": True},
                      token=user.access_token),
    ):
        expect_error(response, 404, "M_NOT_FOUND")


@case
async def malformed_rules_are_400(ctx: Context) -> None:
    user = await ctx.register_user()
    for kind, body in (
        ("override", {"conditions": []}),  # no actions
        ("override", {"conditions": [], "actions": ["shout"]}),
        ("override", {"actions": []}),  # no conditions
        ("content", {"actions": []}),  # no pattern
        ("nonsense", {"actions": []}),
    ):
        response = await ctx.put(rule_path(kind, "bad"), json=body, token=user.access_token)
        expect_status(response, 400)
        expect(isinstance(response.json.get("errcode"), str), f"{response.describe()}: no errcode")
    response = await ctx.put(rule_path("override", ".m.rule.master", "enabled"), json={"enabled": "yes"},
                             token=user.access_token)
    expect_status(response, 400)
    expect("bad" not in await rule_ids(ctx, user, "override"), "a refused rule was created anyway")


@case
async def a_kind_with_a_trailing_slash_lists_that_kind(ctx: Context) -> None:
    user = await ctx.register_user()
    room_id = "!listed:example.org"
    await put_rule(ctx, user, "room", room_id, {"actions": []})
    for kind in ("override", "content", "room", "sender", "underride"):
        response = await ctx.get(f"{GLOBAL}{kind}/", token=user.access_token)
        expect_status(response, 200)
        listed = response.json
        expect(isinstance(listed, list), f"GET {GLOBAL}{kind}/ is not a list: {listed}")
        ids = [rule.get("rule_id") for rule in listed]
        expect(ids == await rule_ids(ctx, user, kind), f"{kind}/ lists {ids}")
    expect(room_id in await rule_ids(ctx, user, "room"), "the room rule is not listed")


@case
async def malformed_scope_kind_and_attribute_paths_are_400(ctx: Context) -> None:
    user = await ctx.register_user()
    for method, path in (
        ("GET", "/_matrix/client/v3/pushrules/device/override/x"),
        ("PUT", "/_matrix/client/v3/pushrules/device/room/x"),
        ("GET", f"{GLOBAL}bogus/"),
        ("GET", f"{GLOBAL}override/.m.rule.master/colour"),
        ("PUT", f"{GLOBAL}override/.m.rule.master/colour"),
    ):
        response = await ctx.request(method, path, json={"actions": []}, token=user.access_token)
        expect_status(response, 400)
        expect(isinstance(response.json.get("errcode"), str), f"{method} {path}: {response.describe()}: no errcode")


@case
async def a_room_rule_not_named_by_a_room_id_is_accepted(ctx: Context) -> None:
    # The spec says room rules are named by the room ID; Synapse stores any name (the rule then
    # matches no room), and so do we.
    user = await ctx.register_user()
    await put_rule(ctx, user, "room", "not-a-room", {"actions": []})
    expect("not-a-room" in await rule_ids(ctx, user, "room"), "the rule is not listed")
