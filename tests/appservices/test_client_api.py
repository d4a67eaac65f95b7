"""The client-server API as an application service: as_token, identity assertion, ghosts and their devices."""

from __future__ import annotations

from types import SimpleNamespace

import aiohttp

from tests.accounts.helpers import register
from tests.appservices.support import AsClient, registration_yaml
from tests.e2ee.helpers import cross_signing_key, signed_key
from tests.support.rooms import User, new_user


def server(hs) -> str:
    return hs.config.server_name


async def test_the_as_token_acts_as_the_sender_or_an_asserted_user_in_the_namespace(bridged_hs, bridge):
    ghost = f"@bridge_alice:{server(bridged_hs)}"
    assert (await bridge.register("bridge_alice"))["user_id"] == ghost
    whoami = await bridge.call("GET", "/account/whoami", user_id=ghost)
    assert whoami == {"user_id": ghost, "is_guest": False}


async def test_asserting_a_user_outside_the_namespace_or_not_registered_is_forbidden(bridged_hs, bridge, client):
    await new_user(client, "alice")
    outside = await bridge.call("GET", "/account/whoami", expect=403, user_id=f"@alice:{server(bridged_hs)}")
    assert outside["errcode"] == "M_FORBIDDEN"
    unregistered = await bridge.call("GET", "/account/whoami", expect=403,
                                     user_id=f"@bridge_nobody:{server(bridged_hs)}")
    assert unregistered["errcode"] == "M_FORBIDDEN"


async def test_a_device_of_the_user_can_be_masqueraded_and_an_unknown_one_is_400(bridged_hs, bridge):
    ghost = f"@bridge_bob:{server(bridged_hs)}"
    session = await bridge.register("bridge_bob", device_id="PHONE")
    assert session["device_id"] == "PHONE"
    whoami = await bridge.call("GET", "/account/whoami", user_id=ghost, device_id="PHONE")
    assert whoami["device_id"] == "PHONE"
    unstable = await bridge.call("GET", "/account/whoami", **{"user_id": ghost,
                                                              "org.matrix.msc3202.device_id": "PHONE"})
    assert unstable["device_id"] == "PHONE"
    unknown = await bridge.call("GET", "/account/whoami", expect=400, user_id=ghost, device_id="NOPE")
    assert unknown["errcode"] == "M_UNKNOWN_DEVICE"


async def test_registration_with_inhibit_login_creates_the_user_without_a_session(bridged_hs, bridge):
    body = await bridge.register("bridge_carol", inhibit_login=True)
    assert body == {"user_id": f"@bridge_carol:{server(bridged_hs)}", "home_server": server(bridged_hs)}
    again = await bridge.call("POST", "/register", {"type": "m.login.application_service",
                                                    "username": "bridge_carol"}, expect=400)
    assert again["errcode"] == "M_USER_IN_USE"


async def test_an_appservice_cannot_register_outside_its_namespace_nor_without_its_token(bridge, client):
    outside = await bridge.call("POST", "/register", {"type": "m.login.application_service", "username": "dave"},
                                expect=400)
    assert outside["errcode"] == "M_EXCLUSIVE"
    async with client.post("/_matrix/client/v3/register",
                           json={"type": "m.login.application_service", "username": "bridge_x"}) as resp:
        assert resp.status == 400 and (await resp.json())["errcode"] == "M_MISSING_TOKEN"
    user = await new_user(client, "erin")
    not_as = await AsClient(client, user.token).call(
        "POST", "/register", {"type": "m.login.application_service", "username": "bridge_x"}, expect=401)
    assert not_as["errcode"] == "M_UNKNOWN_TOKEN"


async def test_normal_users_cannot_register_in_an_exclusive_namespace(client):
    async with client.post("/_matrix/client/v3/register", json={
            "username": "bridge_mallory", "password": "pw", "auth": {"type": "m.login.dummy"}}) as resp:
        assert resp.status == 400
        assert (await resp.json())["errcode"] == "M_EXCLUSIVE"
    async with client.get("/_matrix/client/v3/register/available", params={"username": "bridge_m"}) as resp:
        assert (await resp.json())["errcode"] == "M_EXCLUSIVE"
    assert (await register(client, "bridgeless"))["user_id"].startswith("@bridgeless:")


async def test_login_with_the_application_service_type_gives_a_session_for_a_namespace_user(bridged_hs, bridge):
    await bridge.register("bridge_frank", inhibit_login=True)
    flows = await bridge.call("GET", "/login")
    assert {"type": "m.login.application_service"} in flows["flows"]
    session = await bridge.call("POST", "/login", {"type": "m.login.application_service",
                                                   "identifier": {"type": "m.id.user", "user": "bridge_frank"}})
    assert session["user_id"] == f"@bridge_frank:{server(bridged_hs)}"
    frank = User(bridge.client, session)
    assert (await frank.call("GET", "/account/whoami"))["device_id"] == session["device_id"]
    outside = await bridge.call("POST", "/login", {"type": "m.login.application_service",
                                                   "identifier": {"type": "m.id.user", "user": "someone"}},
                                expect=403)
    assert outside["errcode"] == "M_EXCLUSIVE"


async def test_ts_sets_origin_server_ts_for_the_appservice_only(bridged_hs, bridge, client):
    ghost = f"@bridge_gina:{server(bridged_hs)}"
    await bridge.register("bridge_gina", inhibit_login=True)
    room_id = (await bridge.call("POST", "/createRoom", {"preset": "public_chat"}, user_id=ghost))["room_id"]
    sent = await bridge.call("PUT", f"/rooms/{room_id}/send/m.room.message/t1", {"msgtype": "m.text", "body": "x"},
                             user_id=ghost, ts=1234567890123)
    event = await bridge.call("GET", f"/rooms/{room_id}/event/{sent['event_id']}", user_id=ghost)
    assert event["origin_server_ts"] == 1234567890123
    state = await bridge.call("PUT", f"/rooms/{room_id}/state/m.room.topic", {"topic": "old"}, user_id=ghost,
                              ts=1111111111111)
    event = await bridge.call("GET", f"/rooms/{room_id}/event/{state['event_id']}", user_id=ghost)
    assert event["origin_server_ts"] == 1111111111111
    bad = await bridge.call("PUT", f"/rooms/{room_id}/send/m.room.message/t2", {"body": "x"}, expect=400,
                            user_id=ghost, ts="yesterday")
    assert bad["errcode"] == "M_INVALID_PARAM" and bad["error"].startswith("ts")
    alice = await new_user(client, "alice")
    await alice.join(room_id)
    own = await alice.call("PUT", f"/rooms/{room_id}/send/m.room.message/t3", {"body": "y"}, ts=1000)
    event = await alice.call("GET", f"/rooms/{room_id}/event/{own['event_id']}")
    assert event["origin_server_ts"] > 1000


async def test_msc4190_devices_are_created_by_put_and_deleted_without_uia(bridged_hs, bridge):
    ghost = f"@bridge_hank:{server(bridged_hs)}"
    await bridge.register("bridge_hank", inhibit_login=True)
    async with bridge.client.put("/_matrix/client/v3/devices/BRIDGEDEV", json={"display_name": "Bridge"},
                                 params={"user_id": ghost},
                                 headers={"Authorization": f"Bearer {bridge.as_token}"}) as resp:
        assert resp.status == 201
    await bridge.call("PUT", "/devices/BRIDGEDEV", {"display_name": "Renamed"}, user_id=ghost)
    devices = await bridge.call("GET", "/devices", user_id=ghost)
    assert [(d["device_id"], d["display_name"]) for d in devices["devices"]] == [("BRIDGEDEV", "Renamed")]
    assert (await bridge.call("GET", "/account/whoami", user_id=ghost, device_id="BRIDGEDEV"))["device_id"] \
        == "BRIDGEDEV"
    await bridge.call("DELETE", "/devices/BRIDGEDEV", {}, user_id=ghost)
    assert (await bridge.call("GET", "/devices", user_id=ghost))["devices"] == []


async def test_a_masqueraded_device_uploads_keys_and_replaces_cross_signing_keys_without_uia(bridged_hs, bridge):
    ghost = f"@bridge_ivy:{server(bridged_hs)}"
    await bridge.register("bridge_ivy", inhibit_login=True)
    await bridge.call("PUT", "/devices/IVYDEV", {}, expect=201, user_id=ghost)
    counts = await bridge.call("POST", "/keys/upload", {"one_time_keys": {"signed_curve25519:AAAA": signed_key("k")}},
                               user_id=ghost, device_id="IVYDEV")
    assert counts["one_time_key_counts"].get("signed_curve25519") == 1
    first, _ = cross_signing_key(SimpleNamespace(user_id=ghost), "master")
    await bridge.call("POST", "/keys/device_signing/upload", {"master_key": first}, user_id=ghost,
                      device_id="IVYDEV")
    second, _ = cross_signing_key(SimpleNamespace(user_id=ghost), "master")
    await bridge.call("POST", "/keys/device_signing/upload", {"master_key": second}, user_id=ghost,
                      device_id="IVYDEV")
    query = await bridge.call("POST", "/keys/query", {"device_keys": {ghost: []}}, user_id=ghost)
    assert query["master_keys"][ghost]["keys"] == second["keys"]


async def test_aliases_in_an_exclusive_namespace_belong_to_the_appservice(bridged_hs, bridge, client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    refused = await alice.call("PUT", f"/directory/room/%23bridge_chat:{server(bridged_hs)}",
                               {"room_id": room_id}, expect=400)
    assert refused["errcode"] == "M_EXCLUSIVE"
    await alice.call("PUT", f"/directory/room/%23plain:{server(bridged_hs)}", {"room_id": room_id})
    outside = await bridge.call("PUT", f"/directory/room/%23other:{server(bridged_hs)}", {"room_id": room_id},
                                expect=400)
    assert outside["errcode"] == "M_EXCLUSIVE"
    await bridge.call("PUT", f"/directory/room/%23bridge_chat:{server(bridged_hs)}", {"room_id": room_id})
    resolved = await alice.call("GET", f"/directory/room/%23bridge_chat:{server(bridged_hs)}")
    assert resolved["room_id"] == room_id


async def test_an_appservice_publishes_rooms_in_its_network_directory(bridged_hs, bridge, client):
    alice = await new_user(client, "alice")
    main_room = await alice.create_room(preset="public_chat", name="main")
    await alice.call("PUT", f"/directory/list/room/{main_room}", {"visibility": "public"})
    bridged_room = await alice.create_room(preset="public_chat", name="bridged")
    denied = await alice.call("PUT", f"/directory/list/appservice/irc/{bridged_room}", {"visibility": "public"},
                              expect=403)
    assert denied["errcode"] == "M_FORBIDDEN"
    await bridge.call("PUT", f"/directory/list/appservice/irc/{bridged_room}", {"visibility": "public"})

    def names(body):
        return sorted(room["name"] for room in body["chunk"])

    assert names(await alice.call("GET", "/publicRooms")) == ["main"]
    assert names(await alice.call("GET", "/publicRooms", third_party_instance_id="bridge|irc")) == ["bridged"]
    assert names(await alice.call("POST", "/publicRooms", {"third_party_instance_id": "bridge|irc"})) == ["bridged"]
    assert names(await alice.call("POST", "/publicRooms", {"include_all_networks": True})) == ["bridged", "main"]
    assert names(await alice.call("GET", "/publicRooms", third_party_instance_id="bridge|other")) == []
    await bridge.call("PUT", f"/directory/list/appservice/irc/{bridged_room}", {"visibility": "private"})
    assert names(await alice.call("GET", "/publicRooms", third_party_instance_id="bridge|irc")) == []


async def test_users_of_an_appservice_are_rate_limited_only_when_it_says_so(make_homeserver, appservice, tmp_path):
    unlimited = registration_yaml(tmp_path, appservice.url)
    limited = registration_yaml(tmp_path, appservice.url, name="slow", as_token="slow-token", hs_token="slow-hs",
                                rate_limited=True)
    hs = await make_homeserver(app_service_config_files=[unlimited, limited],
                               rate_limits={"enabled": True, "message": {"per_second": 0.01, "burst_count": 2},
                                            "registration": {"per_second": 100, "burst_count": 100}})
    async with aiohttp.ClientSession(hs.base_url("client")) as session:
        for as_client, name, allowed in ((AsClient(session), "bridge_judy", 5),
                                         (AsClient(session, "slow-token"), "slow_judy", 1)):
            ghost = f"@{name}:{hs.config.server_name}"
            await as_client.register(name, inhibit_login=True)
            room_id = (await as_client.call("POST", "/createRoom", {}, user_id=ghost))["room_id"]
            for n in range(allowed):
                await as_client.call("PUT", f"/rooms/{room_id}/send/m.room.message/r{n}", {"body": "x"},
                                     user_id=ghost)
            if name.startswith("slow"):
                limited_error = await as_client.call("PUT", f"/rooms/{room_id}/send/m.room.message/z", {"body": "x"},
                                                     expect=429, user_id=ghost)
                assert limited_error["errcode"] == "M_LIMIT_EXCEEDED"


async def test_registration_ignores_the_user_id_of_the_ghost_being_created(bridged_hs, bridge):
    # mautrix sends every ghost request, /register included, with ?user_id= of that ghost.
    ghost = f"@bridge_kim:{server(bridged_hs)}"
    body = await bridge.call("POST", "/register", {"type": "m.login.application_service", "username": "bridge_kim",
                                                   "inhibit_login": True}, user_id=ghost, kind="user")
    assert body["user_id"] == ghost


async def test_create_room_cannot_take_an_alias_an_appservice_claims(bridged_hs, bridge, client):
    alice = await new_user(client, "alice")
    refused = await alice.call("POST", "/createRoom", {"room_alias_name": "bridge_lobby"}, expect=400)
    assert refused["errcode"] == "M_EXCLUSIVE"
    ghost = f"@bridge_lou:{server(bridged_hs)}"
    await bridge.register("bridge_lou", inhibit_login=True)
    outside = await bridge.call("POST", "/createRoom", {"room_alias_name": "lobby"}, expect=400, user_id=ghost)
    assert outside["errcode"] == "M_EXCLUSIVE"
    room_id = (await bridge.call("POST", "/createRoom", {"room_alias_name": "bridge_lobby"}, user_id=ghost))["room_id"]
    assert (await alice.call("GET", f"/directory/room/%23bridge_lobby:{server(bridged_hs)}"))["room_id"] == room_id


async def test_logout_with_the_as_token_does_not_end_the_ghosts_sessions(bridged_hs, bridge):
    ghost = f"@bridge_noor:{server(bridged_hs)}"
    session = await bridge.register("bridge_noor")
    await bridge.call("POST", "/logout", {}, user_id=ghost)
    noor = User(bridge.client, session)
    assert (await noor.call("GET", "/account/whoami"))["user_id"] == ghost
    await bridge.call("POST", "/logout", {}, user_id=ghost, device_id=session["device_id"])
    await noor.call("GET", "/account/whoami", expect=401)
