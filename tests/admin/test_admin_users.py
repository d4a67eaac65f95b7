"""The user admin API: Synapse's `/_synapse/admin/.../users` endpoints and the spec's lock/suspend."""

from __future__ import annotations

import pytest

from storage.stores.login_audit import LoginAuditStore
from tests.admin.helpers import assert_admin_only, new_admin, new_caller, q

USER_ENDPOINTS = [
    ("GET", "/v2/users", None),
    ("GET", "/v3/users", None),
    ("GET", "/v2/users/{u}", None),
    ("PUT", "/v2/users/{u}", {"displayname": "x"}),
    ("POST", "/v1/deactivate/{u}", {}),
    ("POST", "/v1/reset_password/{u}", {"new_password": "pw"}),
    ("PUT", "/v1/suspend/{u}", {"suspend": True}),
    ("POST", "/v1/users/{u}/shadow_ban", {}),
    ("POST", "/v1/users/{u}/login", {}),
    ("GET", "/v1/username_available?username=free", None),
    ("GET", "/v2/users/{u}/devices", None),
    ("GET", "/v2/users/{u}/devices/DEV", None),
    ("PUT", "/v2/users/{u}/devices/DEV", {}),
    ("DELETE", "/v2/users/{u}/devices/DEV", None),
    ("POST", "/v2/users/{u}/delete_devices", {"devices": []}),
    ("GET", "/v1/users/{u}/joined_rooms", None),
    ("GET", "/v1/users/{u}/pushers", None),
    ("GET", "/v1/users/{u}/accountdata", None),
    ("GET", "/v1/users/{u}/override_ratelimit", None),
    ("POST", "/v1/users/{u}/override_ratelimit", {}),
]


async def test_every_user_endpoint_refuses_a_non_admin_with_forbidden(client):
    await new_admin(client)
    mallory = await new_caller(client, "mallory")
    for method, path, body in USER_ENDPOINTS:
        await assert_admin_only(mallory, method, path.format(u=q(mallory.user_id)), body)


async def test_the_user_list_filters_orders_and_pages_with_a_total(client):
    admin = await new_admin(client)
    for name in ("carol", "bob", "alice"):
        await new_caller(client, name)
    first = await admin.admin("GET", "/v2/users", limit=2)
    assert first["total"] == 4
    assert [u["name"].split(":")[0] for u in first["users"]] == ["@admin", "@alice"]
    assert first["next_token"] == "2"
    rest = await admin.admin("GET", "/v2/users", limit=2, **{"from": first["next_token"]})
    assert [u["name"].split(":")[0] for u in rest["users"]] == ["@bob", "@carol"]
    assert "next_token" not in rest
    user = first["users"][1]
    assert set(user) == {"name", "user_type", "is_guest", "admin", "deactivated", "shadow_banned", "displayname",
                         "avatar_url", "creation_ts", "erased", "last_seen_ts", "locked"}
    backwards = await admin.admin("GET", "/v2/users", dir="b")
    assert backwards["users"][0]["name"].startswith("@carol")
    assert [u["name"] for u in (await admin.admin("GET", "/v2/users", name="ali"))["users"]] == [user["name"]]
    admins = await admin.admin("GET", "/v2/users", admins="true")
    assert [u["name"] for u in admins["users"]] == [admin.user_id]


async def test_deactivated_users_are_listed_as_each_version_of_the_list_says(client):
    admin = await new_admin(client)
    gone = await new_caller(client, "gone")
    await new_caller(client, "stays")
    await admin.admin("POST", f"/v1/deactivate/{q(gone.user_id)}", {})
    v2_default = {u["name"] for u in (await admin.admin("GET", "/v2/users"))["users"]}
    v2_all = {u["name"] for u in (await admin.admin("GET", "/v2/users", deactivated="true"))["users"]}
    v3_only = {u["name"] for u in (await admin.admin("GET", "/v3/users", deactivated="true"))["users"]}
    v3_active = {u["name"] for u in (await admin.admin("GET", "/v3/users", deactivated="false"))["users"]}
    assert gone.user_id not in v2_default and gone.user_id in v2_all
    assert v3_only == {gone.user_id}
    assert gone.user_id not in v3_active and len(v3_active) == 2


async def test_the_user_list_refuses_bad_parameters_naming_them(client):
    admin = await new_admin(client)
    for params, name in (({"limit": "-1"}, "limit"), ({"from": "x"}, "from"), ({"order_by": "nope"}, "order_by"),
                         ({"dir": "up"}, "dir"), ({"admins": "maybe"}, "admins")):
        data = await admin.admin("GET", "/v2/users", expect=400, **params)
        assert data["errcode"] == "M_INVALID_PARAM" and name in data["error"]


async def test_putting_an_unknown_user_creates_it_and_putting_again_modifies_it(client):
    admin = await new_admin(client)
    server = admin.user_id.split(":", 1)[1]
    new_id = f"@newbie:{server}"
    created = await admin.admin("PUT", f"/v2/users/{q(new_id)}", {
        "password": "s3cret pass", "displayname": "Newbie", "threepids": [{"medium": "email", "address": "N@x.org"}],
        "external_ids": [{"auth_provider": "oidc", "external_id": "n-1"}], "avatar_url": "mxc://x/abc",
    }, expect=201)
    assert created["name"] == new_id and created["displayname"] == "Newbie" and created["admin"] is False
    assert [(t["medium"], t["address"]) for t in created["threepids"]] == [("email", "n@x.org")]
    assert created["external_ids"] == [{"auth_provider": "oidc", "external_id": "n-1"}]
    assert created["avatar_url"] == "mxc://x/abc"
    login = await admin.call("POST", "/login", {"type": "m.login.password", "password": "s3cret pass",
                                                "identifier": {"type": "m.id.user", "user": "newbie"}})
    assert login["user_id"] == new_id
    modified = await admin.admin("PUT", f"/v2/users/{q(new_id)}", {"displayname": "Renamed", "admin": True,
                                                                    "threepids": []})
    assert modified["displayname"] == "Renamed" and modified["admin"] is True and modified["threepids"] == []
    fetched = await admin.admin("GET", f"/v2/users/{q(new_id)}")
    assert fetched == modified
    by_external = await admin.admin("GET", "/v1/auth_providers/oidc/users/n-1")
    assert by_external == {"user_id": new_id}


async def test_putting_a_user_refuses_bad_fields_naming_them(client):
    admin = await new_admin(client)
    target = f"/v2/users/{q('@someone:' + admin.user_id.split(':', 1)[1])}"
    for body, field in (({"admin": "yes"}, "admin"), ({"deactivated": 1}, "deactivated"),
                        ({"threepids": [{"medium": "email"}]}, "threepids[0].address"),
                        ({"external_ids": "x"}, "external_ids"), ({"password": 5}, "password"),
                        ({"user_type": "robot"}, "user_type"), ({"locked": True, "deactivated": True}, "locked")):
        data = await admin.admin("PUT", target, body, expect=400)
        assert field in data["error"], data
    remote = await admin.admin("GET", f"/v2/users/{q('@x:elsewhere.example')}", expect=400)
    assert remote["errcode"] == "M_INVALID_PARAM"


async def test_an_admin_may_not_demote_themselves(client):
    admin = await new_admin(client)
    data = await admin.admin("PUT", f"/v2/users/{q(admin.user_id)}", {"admin": False}, expect=400)
    assert "demote" in data["error"]


async def test_unknown_users_are_not_found_on_every_per_user_endpoint(client):
    admin = await new_admin(client)
    ghost = q("@ghost:" + admin.user_id.split(":", 1)[1])
    for method, path, body in (("GET", "/v2/users/{u}", None), ("POST", "/v1/deactivate/{u}", {}),
                               ("POST", "/v1/reset_password/{u}", {"new_password": "x"}),
                               ("PUT", "/v1/suspend/{u}", {"suspend": True}),
                               ("POST", "/v1/users/{u}/shadow_ban", {}), ("POST", "/v1/users/{u}/login", {}),
                               ("GET", "/v2/users/{u}/devices", None), ("GET", "/v1/users/{u}/pushers", None),
                               ("GET", "/v1/users/{u}/accountdata", None),
                               ("GET", "/v1/users/{u}/override_ratelimit", None)):
        data = await admin.admin(method, path.format(u=ghost), body, expect=404)
        assert data["errcode"] == "M_NOT_FOUND"


async def test_resetting_a_password_logs_the_user_out_and_the_new_password_works(client):
    admin = await new_admin(client)
    bob = await new_caller(client, "bob")
    await admin.admin("POST", f"/v1/reset_password/{q(bob.user_id)}", {"new_password": "brand new"})
    await bob.call("GET", "/account/whoami", expect=401)
    login = await bob.call("POST", "/login", {"type": "m.login.password", "password": "brand new",
                                              "identifier": {"type": "m.id.user", "user": "bob"}})
    assert login["user_id"] == bob.user_id
    missing = await admin.admin("POST", f"/v1/reset_password/{q(bob.user_id)}", {}, expect=400)
    assert missing["errcode"] == "M_MISSING_PARAM" and "new_password" in missing["error"]


async def test_deactivating_a_user_ends_their_sessions_and_records_erasure(client):
    admin = await new_admin(client)
    bob = await new_caller(client, "bob")
    result = await admin.admin("POST", f"/v1/deactivate/{q(bob.user_id)}", {"erase": True})
    assert result == {"id_server_unbind_result": "no-support"}
    await bob.call("GET", "/account/whoami", expect=401)
    details = await admin.admin("GET", f"/v2/users/{q(bob.user_id)}")
    assert details["deactivated"] is True and details["erased"] is True
    bad = await admin.admin("POST", f"/v1/deactivate/{q(bob.user_id)}", {"erase": "yes"}, expect=400)
    assert "erase" in bad["error"]


async def test_whois_on_the_admin_path_lists_the_users_connections(hs, client):
    admin = await new_admin(client)
    bob = await new_caller(client, "bob")
    await bob.call("GET", "/account/whoami")
    await hs.auth.flush_last_seen()
    data = await admin.admin("GET", f"/v1/whois/{q(bob.user_id)}")
    assert data["user_id"] == bob.user_id
    assert bob.device_id in data["devices"]


async def test_an_admin_lists_renames_and_deletes_a_users_devices(client):
    admin = await new_admin(client)
    bob = await new_caller(client, "bob")
    second = await bob.call("POST", "/login", {"type": "m.login.password", "password": "correct horse",
                                               "identifier": {"type": "m.id.user", "user": "bob"}})
    base = f"/v2/users/{q(bob.user_id)}/devices"
    listed = await admin.admin("GET", base)
    assert listed["total"] == 2
    assert {d["device_id"] for d in listed["devices"]} == {bob.device_id, second["device_id"]}
    assert all(d["user_id"] == bob.user_id and "last_seen_user_agent" in d for d in listed["devices"])
    await admin.admin("PUT", f"{base}/{bob.device_id}", {"display_name": "Phone"})
    assert (await admin.admin("GET", f"{base}/{bob.device_id}"))["display_name"] == "Phone"
    assert (await admin.admin("GET", f"{base}/NOPE", expect=404))["errcode"] == "M_NOT_FOUND"
    bad = await admin.admin("PUT", f"{base}/{bob.device_id}", {"display_name": 3}, expect=400)
    assert "display_name" in bad["error"]
    await admin.admin("DELETE", f"{base}/{second['device_id']}")
    assert (await admin.admin("GET", base))["total"] == 1
    await admin.admin("POST", f"/v2/users/{q(bob.user_id)}/delete_devices", {"devices": [bob.device_id]})
    assert (await admin.admin("GET", base))["total"] == 0
    await bob.call("GET", "/account/whoami", expect=401)
    bad = await admin.admin("POST", f"/v2/users/{q(bob.user_id)}/delete_devices", {}, expect=400)
    assert "devices" in bad["error"]
    await admin.admin("POST", base, {"device_id": "MADE"}, expect=201)
    assert (await admin.admin("GET", f"{base}/MADE"))["device_id"] == "MADE"


async def test_joined_rooms_pushers_and_account_data_of_a_user_are_shown(client):
    admin = await new_admin(client)
    bob = await new_caller(client, "bob")
    room_id = await bob.create_room()
    await bob.call("PUT", f"/user/{q(bob.user_id)}/account_data/org.example.setting", {"on": True})
    await bob.call("POST", "/pushers/set", {"kind": "http", "app_id": "org.example.app", "pushkey": "pk1",
                                            "app_display_name": "App", "device_display_name": "Phone",
                                            "lang": "en", "data": {"url": "https://push.example.org/_matrix/push/v1/notify"}})
    rooms = await admin.admin("GET", f"/v1/users/{q(bob.user_id)}/joined_rooms")
    assert rooms == {"joined_rooms": [room_id], "total": 1}
    pushers = await admin.admin("GET", f"/v1/users/{q(bob.user_id)}/pushers")
    assert pushers["total"] == 1 and pushers["pushers"][0]["pushkey"] == "pk1"
    data = await admin.admin("GET", f"/v1/users/{q(bob.user_id)}/accountdata")
    assert data["account_data"]["global"]["org.example.setting"] == {"on": True}
    assert "rooms" in data["account_data"]


async def test_a_suspended_user_may_read_and_leave_but_not_send(client):
    admin = await new_admin(client)
    bob = await new_caller(client, "bob")
    room_id = await bob.create_room()
    result = await admin.admin("PUT", f"/v1/suspend/{q(bob.user_id)}", {"suspend": True})
    assert result == {f"user_{bob.user_id}_suspended": True}
    refused = await bob.call("PUT", f"/rooms/{q(room_id)}/send/m.room.message/t1", {"msgtype": "m.text",
                                                                                   "body": "hi"}, expect=403)
    assert refused["errcode"] == "M_USER_SUSPENDED"
    await bob.call("GET", f"/rooms/{q(room_id)}/messages", dir="b")
    assert (await admin.admin("GET", f"/v2/users/{q(bob.user_id)}"))["suspended"] is True
    await admin.admin("PUT", f"/v1/suspend/{q(bob.user_id)}", {"suspend": False})
    await bob.send(room_id, "back again")
    await admin.admin("PUT", f"/v1/suspend/{q(bob.user_id)}", {"suspend": True})
    await bob.call("POST", f"/rooms/{q(room_id)}/leave", {})
    bad = await admin.admin("PUT", f"/v1/suspend/{q(bob.user_id)}", {"suspend": "yes"}, expect=400)
    assert "suspend" in bad["error"]


async def test_shadow_banning_is_recorded_and_lifted(client):
    admin = await new_admin(client)
    bob = await new_caller(client, "bob")
    await admin.admin("POST", f"/v1/users/{q(bob.user_id)}/shadow_ban", {})
    assert (await admin.admin("GET", f"/v2/users/{q(bob.user_id)}"))["shadow_banned"] is True
    await admin.admin("DELETE", f"/v1/users/{q(bob.user_id)}/shadow_ban")
    assert (await admin.admin("GET", f"/v2/users/{q(bob.user_id)}"))["shadow_banned"] is False


async def test_an_admin_logs_in_as_a_user_with_a_puppet_token(client):
    admin = await new_admin(client)
    bob = await new_caller(client, "bob")
    token = (await admin.admin("POST", f"/v1/users/{q(bob.user_id)}/login", {}))["access_token"]
    async with client.get("/_matrix/client/v3/account/whoami", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200 and (await r.json())["user_id"] == bob.user_id
    own = await admin.admin("POST", f"/v1/users/{q(admin.user_id)}/login", {}, expect=400)
    assert own["errcode"] == "M_INVALID_PARAM"
    bad = await admin.admin("POST", f"/v1/users/{q(bob.user_id)}/login", {"valid_until_ms": "soon"}, expect=400)
    assert "valid_until_ms" in bad["error"]


async def test_username_availability_is_answered_for_free_taken_and_invalid_names(client):
    admin = await new_admin(client)
    await new_caller(client, "bob")
    assert await admin.admin("GET", "/v1/username_available", username="free") == {"available": True}
    assert (await admin.admin("GET", "/v1/username_available", username="bob", expect=400))["errcode"] == \
        "M_USER_IN_USE"
    assert (await admin.admin("GET", "/v1/username_available", username="Bad Name!", expect=400))["errcode"] == \
        "M_INVALID_USERNAME"
    assert (await admin.admin("GET", "/v1/username_available", expect=400))["errcode"] == "M_MISSING_PARAM"


async def test_a_rate_limit_override_is_stored_shown_and_applied(make_homeserver):
    import aiohttp

    hs = await make_homeserver(rate_limits={"enabled": True, "message": {"per_second": 0.001, "burst_count": 2}})
    async with aiohttp.ClientSession(hs.base_url("client")) as client:
        admin = await new_admin(client)
        bob = await new_caller(client, "bob")
        room_id = await bob.create_room()
        base = f"/v1/users/{q(bob.user_id)}/override_ratelimit"
        assert await admin.admin("GET", base) == {}
        await bob.send(room_id, "one")
        await bob.call("PUT", f"/rooms/{q(room_id)}/send/m.room.message/x2", {"msgtype": "m.text", "body": "2"},
                       expect=429)
        assert await admin.admin("POST", base, {"messages_per_second": 0, "burst_count": 0}) == \
            {"messages_per_second": 0, "burst_count": 0}
        for i in range(3):
            await bob.send(room_id, f"unlimited {i}")
        bad = await admin.admin("POST", base, {"messages_per_second": -1}, expect=400)
        assert "messages_per_second" in bad["error"]
        await admin.admin("DELETE", base)
        assert await admin.admin("GET", base) == {}
        await bob.send(room_id, "limited again")
        await bob.send(room_id, "limited again")
        await bob.call("PUT", f"/rooms/{q(room_id)}/send/m.room.message/x9", {"msgtype": "m.text", "body": "9"},
                       expect=429)


@pytest.mark.parametrize("kind,flag", [("lock", "locked"), ("suspend", "suspended")])
async def test_the_client_api_account_moderation_endpoints_set_and_show_the_flag(client, kind, flag):
    admin = await new_admin(client)
    bob = await new_caller(client, "bob")
    path = f"/_matrix/client/v1/admin/{kind}/{q(bob.user_id)}"
    assert await admin.call("GET", path) == {flag: False}
    assert await admin.call("PUT", path, {flag: True}) == {flag: True}
    assert await admin.call("GET", path) == {flag: True}
    assert (await bob.call("GET", path, expect=None if kind == "lock" else 403)) is not None
    bad = await admin.call("PUT", path, {flag: "yes"}, expect=400)
    assert flag in bad["error"]
    assert (await admin.call("GET", f"/_matrix/client/v1/admin/{kind}/{q('@x:elsewhere.example')}",
                             expect=400))["errcode"] == "M_INVALID_PARAM"
    ghost = "@ghost:" + admin.user_id.split(":", 1)[1]
    assert (await admin.call("GET", f"/_matrix/client/v1/admin/{kind}/{q(ghost)}", expect=404))["errcode"] == \
        "M_NOT_FOUND"
    other_admin = await new_admin(client, "admin2")
    refused = await admin.call("PUT", f"/_matrix/client/v1/admin/{kind}/{q(other_admin.user_id)}", {flag: True},
                               expect=403)
    assert refused["errcode"] == "M_FORBIDDEN"


async def test_a_locked_user_is_refused_with_user_locked_until_unlocked(client):
    admin = await new_admin(client)
    bob = await new_caller(client, "bob")
    mallory = await new_caller(client, "mallory")
    path = f"/_matrix/client/v1/admin/lock/{q(bob.user_id)}"
    assert (await mallory.call("PUT", path, {"locked": True}, expect=403))["errcode"] == "M_FORBIDDEN"
    await admin.call("PUT", path, {"locked": True})
    locked = await bob.call("GET", "/account/whoami", expect=401)
    assert locked["errcode"] == "M_USER_LOCKED" and locked["soft_logout"] is True
    listed = {u["name"] for u in (await admin.admin("GET", "/v2/users"))["users"]}
    assert bob.user_id not in listed
    assert bob.user_id in {u["name"] for u in (await admin.admin("GET", "/v2/users", locked="true"))["users"]}
    await admin.admin("PUT", f"/v2/users/{q(bob.user_id)}", {"locked": False})
    await bob.call("GET", "/account/whoami")


async def test_logins_and_new_user_agents_are_audited_shown_in_whois_and_pruned_by_age(hs, client):
    admin = await new_admin(client)
    await new_caller(client, "bob")
    body = {"type": "m.login.password", "password": "correct horse",
            "identifier": {"type": "m.id.user", "user": "bob"}}
    async with client.post("/_matrix/client/v3/login", json=body, headers={"User-Agent": "ClientA/1.0"}) as resp:
        login = await resp.json()
    for agent in ("ClientA/1.0", "ClientB/2.0", "ClientB/2.0"):
        async with client.get("/_matrix/client/v3/account/whoami",
                              headers={"Authorization": f"Bearer {login['access_token']}", "User-Agent": agent}):
            pass
        await hs.auth.flush_last_seen()
    audit = await admin.admin("GET", f"/v1/users/{q(login['user_id'])}/login_audit")
    assert [(e["kind"], e["user_agent"], e["device_id"]) for e in audit["entries"]][1:] == [
        ("login", "ClientA/1.0", login["device_id"]), ("new_user_agent", "ClientB/2.0", login["device_id"])]
    assert audit["entries"][0]["kind"] == "register"  # the session registering started
    assert audit["total"] == 3 and all(e["ip"] == "127.0.0.1" for e in audit["entries"])
    newest = await admin.admin("GET", f"/v1/users/{q(login['user_id'])}/login_audit", dir="b", limit=1)
    assert newest["entries"][0]["kind"] == "new_user_agent" and newest["next_token"] == "1"
    whois = await admin.admin("GET", f"/v1/whois/{q(login['user_id'])}")
    device = whois["devices"][login["device_id"]]
    assert {c["user_agent"] for c in device["sessions"][0]["connections"]} == {"ClientA/1.0", "ClientB/2.0"}
    old = hs.clock.time_ms() - 29 * 24 * 3600 * 1000
    await LoginAuditStore(hs.db).record_login(login["user_id"], "OLD", "10.0.0.1", "Ancient", old)
    assert await hs.login_audit.prune() == 1
    assert (await admin.admin("GET", f"/v1/users/{q(login['user_id'])}/login_audit"))["total"] == 3
    mallory = await new_caller(client, "mallory")
    await assert_admin_only(mallory, "GET", f"/v1/users/{q(login['user_id'])}/login_audit")
    ghost = q("@ghost:" + hs.config.server_name)
    assert (await admin.admin("GET", f"/v1/users/{ghost}/login_audit", expect=404))["errcode"] == "M_NOT_FOUND"
    assert (await admin.admin("GET", f"/v1/users/{q(login['user_id'])}/login_audit", limit="x",
                              expect=400))["errcode"] == "M_INVALID_PARAM"


async def test_the_admin_flag_invite_and_join_counts_of_a_user_are_served(client):
    admin = await new_admin(client)
    bob = await new_caller(client, "bob")
    carol = await new_caller(client, "carol")
    base = f"/v1/users/{q(bob.user_id)}"
    assert await admin.admin("GET", f"{base}/admin") == {"admin": False}
    await admin.admin("PUT", f"{base}/admin", {"admin": True})
    assert await admin.admin("GET", f"{base}/admin") == {"admin": True}
    assert (await admin.admin("PUT", f"/v1/users/{q(admin.user_id)}/admin", {"admin": False}, expect=400))[
        "errcode"] == "M_INVALID_PARAM"
    assert (await admin.admin("PUT", f"{base}/admin", {}, expect=400))["errcode"] == "M_MISSING_PARAM"
    room_id = await bob.create_room()
    await bob.call("POST", f"/rooms/{q(room_id)}/invite", {"user_id": carol.user_id})
    assert await admin.admin("GET", f"{base}/sent_invite_count", from_ts=0) == {"invite_count": 1}
    assert await admin.admin("GET", f"{base}/sent_invite_count", from_ts=2 ** 50) == {"invite_count": 0}
    assert await admin.admin("GET", f"{base}/cumulative_joined_room_count", from_ts=0) == {
        "cumulative_joined_room_count": 1}
    assert (await admin.admin("GET", f"{base}/sent_invite_count", expect=400))["errcode"] == "M_MISSING_PARAM"
    mallory = await new_caller(client, "mallory")
    for path in ("admin", "sent_invite_count?from_ts=0", "cumulative_joined_room_count?from_ts=0"):
        await assert_admin_only(mallory, "GET", f"{base}/{path}")


async def test_account_moderation_is_offered_in_capabilities_to_admins_only(client):
    admin = await new_admin(client)
    bob = await new_caller(client, "bob")
    assert (await admin.call("GET", "/capabilities"))["capabilities"]["m.account_moderation"] == {
        "lock": True, "suspend": True}
    assert "m.account_moderation" not in (await bob.call("GET", "/capabilities"))["capabilities"]
