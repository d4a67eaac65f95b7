"""Push rules over HTTP on both backends: the default set, CRUD, enabled/actions, versions and callbacks."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest

from homeserver.streams.updates import PushRulesChanged
from tests.accounts.helpers import bearer, register

V3 = "/_matrix/client/v3"


def rule_path(kind: str, rule_id: str, attr: str | None = None) -> str:
    path = f"{V3}/pushrules/global/{kind}/{quote(rule_id, safe='')}"
    return path if attr is None else f"{path}/{attr}"


class Api:
    def __init__(self, client, token: str):
        self.client = client
        self.headers = bearer(token)

    async def get(self, path: str):
        async with self.client.get(path, headers=self.headers) as resp:
            return resp.status, await resp.json()

    async def put(self, path: str, body, params=None):
        async with self.client.put(path, json=body, headers=self.headers, params=params) as resp:
            return resp.status, await resp.json()

    async def delete(self, path: str):
        async with self.client.delete(path, headers=self.headers) as resp:
            return resp.status, await resp.json()

    async def rule_ids(self, kind: str) -> list[str]:
        status, body = await self.get(f"{V3}/pushrules/")
        assert status == 200
        return [rule["rule_id"] for rule in body["global"][kind]]


@pytest.fixture
async def alice(client):
    account = await register(client, "alice")
    return Api(client, account["access_token"])


@pytest.fixture
async def bob(client):
    account = await register(client, "bob")
    return Api(client, account["access_token"])


OVERRIDE = {"conditions": [{"kind": "event_match", "key": "room_id", "pattern": "!quiet:hs"}], "actions": []}


async def test_a_new_user_gets_the_full_default_rule_set_with_their_own_names(hs, alice):
    status, body = await alice.get(f"{V3}/pushrules/")
    assert status == 200
    ruleset = body["global"]
    assert set(ruleset) == {"override", "content", "room", "sender", "underride"}
    assert [r["rule_id"] for r in ruleset["override"]][:2] == [".m.rule.master", ".m.rule.suppress_notices"]
    assert ruleset["content"][0]["pattern"] == "alice"
    invite = next(r for r in ruleset["override"] if r["rule_id"] == ".m.rule.invite_for_me")
    assert invite["conditions"][2]["pattern"] == f"@alice:{hs.config.server_name}"
    assert await alice.get(f"{V3}/pushrules/global/") == (200, ruleset)


async def test_the_push_rules_need_an_access_token(client):
    async with client.get(f"{V3}/pushrules/") as resp:
        assert resp.status == 401
        assert (await resp.json())["errcode"] == "M_MISSING_TOKEN"


async def test_a_created_rule_can_be_read_back_enabled_and_not_default(alice):
    assert await alice.put(rule_path("override", "quiet"), OVERRIDE) == (200, {})
    assert await alice.get(rule_path("override", "quiet")) == (
        200, {"rule_id": "quiet", "default": False, "enabled": True, **OVERRIDE})
    assert await alice.rule_ids("override") == [".m.rule.master", "quiet", ".m.rule.suppress_notices",
                                                *(await alice.rule_ids("override"))[3:]]


async def test_rules_of_every_kind_render_in_their_own_shape(alice):
    assert (await alice.put(rule_path("content", "cake"), {"pattern": "cake*lie", "actions": ["notify"]}))[0] == 200
    assert (await alice.put(rule_path("room", "!r:hs"), {"actions": []}))[0] == 200
    assert (await alice.put(rule_path("sender", "@bob:hs"), {"actions": ["notify"]}))[0] == 200
    assert (await alice.put(rule_path("underride", "low"), {"conditions": [], "actions": ["notify"]}))[0] == 200
    _, ruleset = await alice.get(f"{V3}/pushrules/global/")
    assert ruleset["content"][0] == {"rule_id": "cake", "default": False, "enabled": True,
                                     "pattern": "cake*lie", "actions": ["notify"]}
    assert ruleset["room"] == [{"rule_id": "!r:hs", "default": False, "enabled": True, "actions": []}]
    assert ruleset["sender"] == [{"rule_id": "@bob:hs", "default": False, "enabled": True, "actions": ["notify"]}]
    assert ruleset["underride"][0]["rule_id"] == "low"


async def test_new_rules_go_first_unless_placed_with_before_or_after(alice):
    for rule_id in ("a", "b"):
        await alice.put(rule_path("room", f"!{rule_id}:hs"), {"actions": []})
    assert await alice.rule_ids("room") == ["!b:hs", "!a:hs"]
    assert (await alice.put(rule_path("room", "!c:hs"), {"actions": []}, {"after": "!a:hs"}))[0] == 200
    assert (await alice.put(rule_path("room", "!d:hs"), {"actions": []}, {"before": "!a:hs"}))[0] == 200
    assert await alice.rule_ids("room") == ["!b:hs", "!d:hs", "!a:hs", "!c:hs"]
    # Updating without before/after keeps the place; with it, moves the rule.
    assert (await alice.put(rule_path("room", "!a:hs"), {"actions": ["notify"]}))[0] == 200
    assert await alice.rule_ids("room") == ["!b:hs", "!d:hs", "!a:hs", "!c:hs"]
    assert (await alice.put(rule_path("room", "!b:hs"), {"actions": []}, {"after": "!c:hs"}))[0] == 200
    assert await alice.rule_ids("room") == ["!d:hs", "!a:hs", "!c:hs", "!b:hs"]


async def test_placing_relative_to_a_default_or_unknown_rule_is_refused_and_changes_nothing(alice):
    for anchor in ({"before": ".m.rule.master"}, {"after": "nope"}):
        status, body = await alice.put(rule_path("override", "x"), OVERRIDE, anchor)
        assert status == 400 and body["errcode"] == "M_INVALID_PARAM", body
        assert body["error"].startswith(next(iter(anchor)) + ":")
    assert "x" not in await alice.rule_ids("override")


async def test_updating_a_rule_keeps_it_disabled_if_the_user_disabled_it(alice):
    await alice.put(rule_path("override", "quiet"), OVERRIDE)
    assert await alice.put(rule_path("override", "quiet", "enabled"), {"enabled": False}) == (200, {})
    await alice.put(rule_path("override", "quiet"), {**OVERRIDE, "actions": ["notify"]})
    assert await alice.get(rule_path("override", "quiet")) == (
        200, {"rule_id": "quiet", "default": False, "enabled": False, **OVERRIDE, "actions": ["notify"]})


async def test_deleting_a_rule_removes_it_and_a_second_delete_is_not_found(alice):
    await alice.put(rule_path("content", "cake"), {"pattern": "cake", "actions": []})
    assert await alice.delete(rule_path("content", "cake")) == (200, {})
    assert (await alice.get(rule_path("content", "cake")))[1]["errcode"] == "M_NOT_FOUND"
    status, body = await alice.delete(rule_path("content", "cake"))
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


async def test_default_rules_cannot_be_created_or_deleted(alice):
    status, body = await alice.put(rule_path("override", ".m.rule.master"), {"conditions": [], "actions": []})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await alice.delete(rule_path("override", ".m.rule.master"))
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    assert (await alice.rule_ids("override"))[0] == ".m.rule.master"


async def test_enabling_the_master_rule_and_changing_default_actions_are_remembered(alice):
    assert await alice.get(rule_path("override", ".m.rule.master", "enabled")) == (200, {"enabled": False})
    assert await alice.put(rule_path("override", ".m.rule.master", "enabled"), {"enabled": True}) == (200, {})
    assert await alice.get(rule_path("override", ".m.rule.master", "enabled")) == (200, {"enabled": True})
    assert await alice.put(rule_path("underride", ".m.rule.message", "actions"), {"actions": []}) == (200, {})
    assert await alice.get(rule_path("underride", ".m.rule.message", "actions")) == (200, {"actions": []})
    status, rule = await alice.get(rule_path("underride", ".m.rule.message"))
    assert (status, rule["default"], rule["enabled"], rule["actions"]) == (200, True, True, [])
    # Changing the actions did not reset the enabled flag, and the other way round.
    assert await alice.put(rule_path("override", ".m.rule.master", "actions"), {"actions": ["notify"]}) == (200, {})
    assert await alice.get(rule_path("override", ".m.rule.master", "enabled")) == (200, {"enabled": True})


async def test_user_rules_have_enabled_and_actions_too(alice):
    await alice.put(rule_path("sender", "@bob:hs"), {"actions": []})
    assert await alice.put(rule_path("sender", "@bob:hs", "enabled"), False) == (200, {})  # bare boolean
    assert await alice.put(rule_path("sender", "@bob:hs", "actions"), {"actions": ["notify"]}) == (200, {})
    assert await alice.get(rule_path("sender", "@bob:hs")) == (
        200, {"rule_id": "@bob:hs", "default": False, "enabled": False, "actions": ["notify"]})


async def test_one_users_rules_do_not_leak_to_another(alice, bob):
    await alice.put(rule_path("override", "quiet"), OVERRIDE)
    await alice.put(rule_path("override", ".m.rule.master", "enabled"), {"enabled": True})
    assert "quiet" not in await bob.rule_ids("override")
    assert await bob.get(rule_path("override", ".m.rule.master", "enabled")) == (200, {"enabled": False})
    status, body = await bob.delete(rule_path("override", "quiet"))
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


@pytest.mark.parametrize(("method", "path", "body", "status", "errcode"), [
    ("GET", rule_path("override", "nope"), None, 404, "M_NOT_FOUND"),
    ("GET", rule_path("content", ".m.rule.master"), None, 404, "M_NOT_FOUND"),  # right id, wrong kind
    ("GET", rule_path("override", "nope", "enabled"), None, 404, "M_NOT_FOUND"),
    ("GET", rule_path("override", "nope", "actions"), None, 404, "M_NOT_FOUND"),
    ("PUT", rule_path("override", "nope", "enabled"), {"enabled": True}, 404, "M_NOT_FOUND"),
    ("PUT", rule_path("override", ".m.rule.nope", "enabled"), {"enabled": True}, 404, "M_NOT_FOUND"),
    ("PUT", rule_path("override", "nope", "actions"), {"actions": []}, 404, "M_NOT_FOUND"),
    ("GET", rule_path("postcontent", "x"), None, 400, "M_INVALID_PARAM"),
    ("PUT", rule_path("bogus", "x"), {"actions": []}, 400, "M_INVALID_PARAM"),
    ("DELETE", rule_path("bogus", "x"), None, 400, "M_INVALID_PARAM"),
    ("PUT", rule_path("override", "a/b"), {"conditions": [], "actions": []}, 400, "M_INVALID_PARAM"),
    ("PUT", rule_path("override", "x"), {"actions": []}, 400, "M_BAD_JSON"),
    ("PUT", rule_path("override", "x"), [], 400, "M_BAD_JSON"),
    ("PUT", rule_path("override", "x"), {"conditions": [], "actions": ["shout"]}, 400, "M_BAD_JSON"),
    ("PUT", rule_path("content", "x"), {"actions": []}, 400, "M_BAD_JSON"),
    ("PUT", rule_path("override", ".m.rule.master", "enabled"), {"enabled": "yes"}, 400, "M_BAD_JSON"),
    ("PUT", rule_path("override", ".m.rule.master", "actions"), {"actions": "notify"}, 400, "M_BAD_JSON"),
    ("PUT", rule_path("override", ".m.rule.master", "actions"), {}, 400, "M_BAD_JSON"),
])
async def test_bad_requests_get_the_right_error(alice, method, path, body, status, errcode):
    async with alice.client.request(method, path, json=body, headers=alice.headers) as resp:
        assert (resp.status, (await resp.json())["errcode"]) == (status, errcode)


async def test_get_of_a_kind_with_a_trailing_slash_lists_that_kind(alice):
    await alice.put(rule_path("room", "!a:hs"), {"actions": []})
    for kind in ("override", "content", "room", "sender", "underride"):
        status, body = await alice.get(f"{V3}/pushrules/global/{kind}/")
        assert status == 200
        assert [rule["rule_id"] for rule in body] == await alice.rule_ids(kind)
    assert (await alice.get(f"{V3}/pushrules/global/room/"))[1][0]["rule_id"] == "!a:hs"


@pytest.mark.parametrize(("method", "path", "errcode", "names"), [
    ("GET", "/pushrules/device/override/x", "M_INVALID_PARAM", "scope"),
    ("PUT", "/pushrules/device/room/!a:hs", "M_INVALID_PARAM", "scope"),
    ("DELETE", "/pushrules/device/room/!a:hs", "M_INVALID_PARAM", "scope"),
    ("GET", "/pushrules/device/", "M_INVALID_PARAM", "scope"),
    ("GET", "/pushrules/global/bogus/", "M_INVALID_PARAM", "kind"),
    ("GET", "/pushrules/global/override", "M_UNRECOGNIZED", "slash"),
    ("GET", "/pushrules/global", "M_UNRECOGNIZED", "slash"),
    ("PUT", "/pushrules/global/room/", "M_INVALID_PARAM", "ruleId"),
    ("DELETE", "/pushrules/global/room/", "M_INVALID_PARAM", "ruleId"),
    ("GET", "/pushrules/global/override/.m.rule.master/colour", "M_UNRECOGNIZED", "attribute"),
    ("PUT", "/pushrules/global/override/.m.rule.master/colour", "M_UNRECOGNIZED", "attribute"),
    ("GET", "/pushrules/global/bogus/x/colour", "M_INVALID_PARAM", "kind"),
])
async def test_malformed_push_rule_paths_are_400_naming_the_problem(alice, method, path, errcode, names):
    async with alice.client.request(method, V3 + path, json={"actions": []}, headers=alice.headers) as resp:
        body = await resp.json()
    assert (resp.status, body["errcode"]) == (400, errcode), body
    assert names in body["error"]


async def test_a_room_rule_not_named_by_a_room_id_is_stored_as_synapse_stores_it(alice):
    assert await alice.put(rule_path("room", "not-a-room"), {"actions": []}) == (200, {})
    status, body = await alice.get(rule_path("room", "not-a-room"))
    assert status == 200
    assert body["rule_id"] == "not-a-room"
    assert "conditions" not in body  # room rules are served without conditions, as every room rule


async def test_concurrent_new_rules_all_land_with_distinct_places(alice):
    rooms = [f"!r{i}:hs" for i in range(20)]
    results = await asyncio.gather(*(alice.put(rule_path("room", room), {"actions": []}) for room in rooms))
    assert all(result == (200, {}) for result in results)
    assert sorted(await alice.rule_ids("room")) == sorted(rooms)
    # Placing relative to each other still works after the concurrent burst.
    await alice.put(rule_path("room", "!last:hs"), {"actions": []}, {"after": (await alice.rule_ids("room"))[-1]})
    assert (await alice.rule_ids("room"))[-1] == "!last:hs"


async def test_a_body_that_is_not_json_is_refused(alice):
    async with alice.client.put(rule_path("override", "x"), data=b"{", headers=alice.headers) as resp:
        assert (resp.status, (await resp.json())["errcode"]) == (400, "M_NOT_JSON")


async def test_every_change_moves_the_stream_and_the_users_version_and_is_published(hs, alice):
    calls: list[tuple[str, int]] = []
    hs.bus.subscribe(PushRulesChanged, lambda update: calls.append((update.user_id, update.position)))
    _, whoami = await alice.get(f"{V3}/account/whoami")
    user_id = whoami["user_id"]
    assert await hs.push_rules.version(user_id) == 0
    start = await hs.push_rules.current_position()
    await alice.put(rule_path("override", "quiet"), OVERRIDE)
    await alice.put(rule_path("override", "quiet", "enabled"), {"enabled": False})
    await alice.put(rule_path("override", ".m.rule.master", "actions"), {"actions": []})
    await alice.delete(rule_path("override", "quiet"))
    # Refused changes move nothing.
    await alice.delete(rule_path("override", "quiet"))
    await alice.put(rule_path("override", "x"), OVERRIDE, {"before": "nope"})
    positions = [position for _, position in calls]
    assert [u for u, _ in calls] == [user_id] * 4
    assert positions == sorted(positions) and len(set(positions)) == 4 and positions[0] > start
    assert await hs.push_rules.version(user_id) == positions[-1] == await hs.push_rules.current_position()


async def test_the_account_data_content_is_the_same_as_get_pushrules_and_follows_changes(hs, alice):
    _, whoami = await alice.get(f"{V3}/account/whoami")
    user_id = whoami["user_id"]
    before = await hs.push_rules.get_user_rules(user_id)
    await alice.put(rule_path("override", "quiet"), OVERRIDE)
    after = await hs.push_rules.get_user_rules(user_id)
    assert after.version > before.version
    assert after.find("override", "quiet") is not None and before.find("override", "quiet") is None
    _, body = await alice.get(f"{V3}/pushrules/")
    assert await hs.push_rules.account_data_content(user_id) == body


async def test_rules_survive_a_restart(hs, client):
    account = await register(client, "carol")
    api = Api(client, account["access_token"])
    await api.put(rule_path("content", "tea"), {"pattern": "tea", "actions": ["notify"]})
    await api.put(rule_path("override", ".m.rule.master", "enabled"), {"enabled": True})
    await hs.stop()
    await hs.start()  # a fresh database connection and fresh services: nothing cached survives
    rules = await hs.push_rules.get_user_rules(account["user_id"])
    assert rules.find("content", "tea").pattern == "tea"
    assert rules.find("override", ".m.rule.master").enabled is True
