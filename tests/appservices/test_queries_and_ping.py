"""Queries to the appservice (unknown users and aliases, third-party lookups), ping and metrics."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from appservices.client import AppServiceClient
from appservices.metrics import AppServiceMetrics
from appservices.registration import AppServiceRegistration
from homeserver.errors import MatrixError
from tests.appservices.support import HS_TOKEN, AsClient, registration_yaml
from tests.support.rooms import new_user


async def test_a_profile_lookup_of_an_unknown_namespace_user_asks_the_appservice(bridged_hs, appservice, bridge,
                                                                                client):
    server = bridged_hs.config.server_name
    ghost = f"@bridge_zoe:{server}"

    async def create_ghost(user_id: str) -> bool:
        if user_id != ghost:
            return False  # the remote network has no such user
        await bridge.register(user_id[1:].split(":")[0], inhibit_login=True)
        await bridge.call("PUT", f"/profile/{user_id}/displayname", {"displayname": "Zoe (Bridge)"},
                          user_id=user_id)
        return True

    appservice.on_user = create_ghost
    alice = await new_user(client, "alice")
    assert await alice.call("GET", f"/profile/{ghost}") == {"displayname": "Zoe (Bridge)"}
    await alice.call("GET", f"/profile/@bridge_gone:{server}", expect=404)
    await alice.call("GET", f"/profile/@nobody:{server}", expect=404)
    assert [r.path for r in appservice.of("GET", "/_matrix/app/v1/users/")] == [
        f"/_matrix/app/v1/users/{ghost}", f"/_matrix/app/v1/users/@bridge_gone:{server}"]
    assert appservice.unauthorised == []


async def test_inviting_an_unknown_namespace_user_asks_the_appservice_first(bridged_hs, appservice, bridge, client):
    ghost = f"@bridge_yann:{bridged_hs.config.server_name}"

    async def create_ghost(user_id: str) -> bool:
        await bridge.register(user_id[1:].split(":")[0], inhibit_login=True)
        return True

    appservice.on_user = create_ghost
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    await alice.call("POST", f"/rooms/{room_id}/invite", {"user_id": ghost})
    await bridge.call("POST", f"/join/{room_id}", {}, user_id=ghost)
    members = await alice.call("GET", f"/rooms/{room_id}/joined_members")
    assert ghost in members["joined"]
    assert len(appservice.of("GET", "/_matrix/app/v1/users/")) == 1


async def test_resolving_or_joining_an_unknown_namespace_alias_asks_the_appservice(bridged_hs, appservice, bridge,
                                                                                   client):
    server = bridged_hs.config.server_name

    async def create_room_for(alias: str) -> bool:
        await bridge.call("POST", "/createRoom", {"preset": "public_chat",
                                                  "room_alias_name": alias[1:].split(":")[0]})
        return True

    appservice.on_alias = create_room_for
    alice = await new_user(client, "alice")
    resolved = await alice.call("GET", f"/directory/room/%23bridge_lobby:{server}")
    assert resolved["room_id"].startswith("!")
    joined = await alice.call("POST", f"/join/%23bridge_hall:{server}", {})
    assert joined["room_id"].startswith("!")
    await alice.call("GET", f"/directory/room/%23elsewhere:{server}", expect=404)
    # Not ours to ask the appservice about: asked over federation, and an unreachable server is a 502.
    await alice.call("POST", "/join/%23bridge_far:remote.invalid", {}, expect=502)
    assert [r.path for r in appservice.of("GET", "/_matrix/app/v1/rooms/")] == [
        f"/_matrix/app/v1/rooms/#bridge_lobby:{server}", f"/_matrix/app/v1/rooms/#bridge_hall:{server}"]


async def test_third_party_protocols_and_lookups_are_proxied_to_the_appservice(appservice, bridge, client):
    appservice.protocols["bridge"] = {
        "user_fields": ["nick"], "location_fields": ["channel"], "icon": "mxc://x/y",
        "field_types": {"nick": {"regexp": ".*", "placeholder": "nick"}},
        "instances": [{"desc": "Libera", "network_id": "libera", "fields": {}}],
    }
    appservice.third_party["/thirdparty/user/bridge"] = [
        {"userid": "@bridge_nick:x", "protocol": "bridge", "fields": {"nick": "nick"}}, {"broken": True}]
    appservice.third_party["/thirdparty/location/bridge"] = [
        {"alias": "#bridge_chan:x", "protocol": "bridge", "fields": {"channel": "chan"}}]
    alice = await new_user(client, "alice")
    protocols = await alice.call("GET", "/thirdparty/protocols")
    assert list(protocols) == ["bridge"]
    assert protocols["bridge"]["instances"][0]["instance_id"] == "bridge|libera"
    assert (await alice.call("GET", "/thirdparty/protocol/bridge"))["user_fields"] == ["nick"]
    await alice.call("GET", "/thirdparty/protocol/irc", expect=404)
    users = await alice.call("GET", "/thirdparty/user/bridge", nick="nick")
    assert users == [{"userid": "@bridge_nick:x", "protocol": "bridge", "fields": {"nick": "nick"}}]
    locations = await alice.call("GET", "/thirdparty/location/bridge", channel="chan")
    assert [loc["alias"] for loc in locations] == ["#bridge_chan:x"]
    [user_query] = appservice.of("GET", "/_matrix/app/v1/thirdparty/user/bridge")
    assert user_query.query == {"nick": "nick"}
    assert appservice.unauthorised == []


async def test_ping_reports_the_round_trip_and_passes_the_transaction_id(appservice, bridge):
    body = await bridge.call("POST", "/_matrix/client/v1/appservice/bridge/ping", {"transaction_id": "abc"})
    assert isinstance(body["duration_ms"], int) and body["duration_ms"] >= 1  # rounded up, never 0
    [ping] = appservice.of("POST", "/_matrix/app/v1/ping")
    assert ping.body == {"transaction_id": "abc"}


async def test_ping_is_for_the_appservice_itself_only(bridge, client):
    other = await bridge.call("POST", "/_matrix/client/v1/appservice/someone-else/ping", {}, expect=403)
    assert other["errcode"] == "M_FORBIDDEN"
    alice = await new_user(client, "alice")
    user = await alice.call("POST", "/_matrix/client/v1/appservice/bridge/ping", {}, expect=403)
    assert user["errcode"] == "M_FORBIDDEN"


async def test_ping_reports_a_bad_status_with_the_appservice_answer(appservice, bridge):
    appservice.ping_status = 401
    error = await bridge.call("POST", "/_matrix/client/v1/appservice/bridge/ping", {}, expect=502)
    assert error["errcode"] == "M_BAD_STATUS"
    assert error["status"] == 401
    assert "M_UNKNOWN" in error["body"]


async def test_ping_without_a_url_or_to_a_dead_appservice_fails_as_the_spec_says(make_homeserver, tmp_path):
    quiet = registration_yaml(tmp_path, None, name="quiet", as_token="quiet-token")
    dead = registration_yaml(tmp_path, "http://127.0.0.1:9", name="dead", as_token="dead-token")
    hs = await make_homeserver(app_service_config_files=[quiet, dead])
    async with aiohttp.ClientSession(hs.base_url("client")) as session:
        no_url = await AsClient(session, "quiet-token").call(
            "POST", "/_matrix/client/v1/appservice/quiet/ping", {}, expect=400)
        assert no_url["errcode"] == "M_URL_NOT_SET"
        refused = await AsClient(session, "dead-token").call(
            "POST", "/_matrix/client/v1/appservice/dead/ping", {}, expect=502)
        assert refused["errcode"] == "M_CONNECTION_FAILED"


async def test_a_ping_that_takes_too_long_is_a_connection_timeout(appservice):
    appservice.ping_delay_s = 2.0
    registration = AppServiceRegistration(id="slow", url=appservice.url, as_token="a", hs_token=HS_TOKEN,
                                          sender="@slow:x")
    client = AppServiceClient(AppServiceMetrics(CollectorRegistry()))
    try:
        with pytest.raises(MatrixError) as error:
            await client.ping(registration, None, timeout_s=0.2)
    finally:
        await client.close()
    assert (error.value.http_status, error.value.errcode) == (504, "M_CONNECTION_TIMEOUT")


async def test_requests_to_the_appservice_are_counted_per_service(bridged_hs, appservice, bridge):
    await bridge.call("POST", "/_matrix/client/v1/appservice/bridge/ping", {})
    async with aiohttp.ClientSession() as session:
        async with session.get(bridged_hs.base_url("metrics") + "/metrics") as resp:
            text = await resp.text()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("appservice_requests_total", (("kind", "ping"), ("outcome", "200"), ("service", "bridge")))] == 1
    assert samples[("appservice_transactions_sent_total", (("service", "bridge"),))] == 0
    assert samples[("appservice_queue_length", (("service", "bridge"),))] == 0
