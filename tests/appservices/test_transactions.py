"""The appservice-specific parts of transactions: interest, the body, and delivery attempts."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from appservices.client import AppServiceClient
from appservices.interest import (
    RoomContext,
    services_for_device_keys,
    services_for_device_list_change,
    services_for_event,
    services_for_presence,
    services_for_room_ephemeral,
    services_for_to_device,
)
from appservices.metrics import AppServiceMetrics
from appservices.registration import AppServiceRegistration, Namespace
from appservices.transactions import (
    PendingTransaction,
    TransactionContent,
    TransactionSender,
    build_transaction_body,
)
from tests.appservices.support import HS_TOKEN, AsClient, registration_yaml
from tests.support.rooms import new_user


def registration(name: str = "irc", url: str | None = "http://as.invalid", **extra) -> AppServiceRegistration:
    return AppServiceRegistration(
        id=name, url=url, as_token=f"{name}-as", hs_token=HS_TOKEN, sender=f"@{name}bot:hs",
        users=(Namespace(re.compile(f"@{name}_.*:hs"), True),),
        aliases=(Namespace(re.compile(f"#{name}_.*:hs"), True),),
        rooms=(Namespace(re.compile("!bridged:hs"), False),), **extra)


def message(sender: str = "@alice:hs", room_id: str = "!room:hs", **extra) -> dict:
    return {"type": "m.room.message", "sender": sender, "room_id": room_id, "event_id": "$e",
            "content": {"body": "hoi"}, **extra}


IRC = registration()
NOTHING = RoomContext()


# --- interest ----------------------------------------------------------------------------------
def test_a_service_wants_events_sent_by_its_users_and_its_sender():
    assert services_for_event([IRC], message("@irc_bob:hs"), NOTHING) == [IRC]
    assert services_for_event([IRC], message("@ircbot:hs"), NOTHING) == [IRC]
    assert services_for_event([IRC], message("@alice:hs"), NOTHING) == []


def test_a_service_wants_events_in_rooms_where_one_of_its_users_is_a_member():
    room = RoomContext(members=frozenset({"@alice:hs", "@irc_bob:hs"}))
    assert services_for_event([IRC], message(), room) == [IRC]


def test_a_service_wants_invites_of_its_users_before_they_are_members():
    invite = message(type="m.room.member", state_key="@irc_carol:hs", content={"membership": "invite"})
    assert services_for_event([IRC], invite, NOTHING) == [IRC]
    topic = message(type="m.room.topic", state_key="@irc_carol:hs")
    assert services_for_event([IRC], topic, NOTHING) == []


def test_a_service_wants_events_of_rooms_and_aliases_in_its_namespaces():
    assert services_for_event([IRC], message(room_id="!bridged:hs"), NOTHING) == [IRC]
    aliased = RoomContext(aliases=frozenset({"#irc_libera:hs"}))
    assert services_for_event([IRC], message(), aliased) == [IRC]
    assert services_for_event([IRC], message(), RoomContext(aliases=frozenset({"#other:hs"}))) == []


def test_a_service_without_a_url_receives_nothing():
    quiet = registration("quiet", url=None)
    assert services_for_event([quiet], message("@quiet_x:hs"), NOTHING) == []


def test_ephemeral_to_device_and_key_data_go_only_to_services_that_asked():
    plain, ephemeral, e2ee = IRC, registration(receive_ephemeral=True), registration(msc3202=True)
    room = RoomContext(members=frozenset({"@irc_bob:hs"}))
    assert services_for_room_ephemeral([plain, ephemeral], "!room:hs", room) == [ephemeral]
    assert services_for_room_ephemeral([ephemeral], "!room:hs", NOTHING) == []
    assert services_for_presence([plain, ephemeral], "@alice:hs", ["@irc_bob:hs"]) == [ephemeral]
    assert services_for_to_device([plain, ephemeral], "@irc_bob:hs") == [ephemeral]
    assert services_for_to_device([ephemeral], "@alice:hs") == []
    assert services_for_device_keys([plain, e2ee], "@irc_bob:hs") == [e2ee]
    assert services_for_device_list_change([plain, e2ee], "@alice:hs", ["@irc_bob:hs"]) == [e2ee]
    assert services_for_device_list_change([e2ee], "@alice:hs", ["@carol:hs"]) == []


# --- the body --------------------------------------------------------------------------------
CONTENT = TransactionContent(
    events=[message()],
    ephemeral=[{"type": "m.typing", "room_id": "!room:hs", "content": {"user_ids": ["@alice:hs"]}}],
    to_device=[{"type": "m.room.encrypted", "sender": "@alice:hs", "to_user_id": "@irc_bob:hs",
                "to_device_id": "DEV", "content": {}}],
    one_time_key_counts={"@irc_bob:hs": {"DEV": {"signed_curve25519": 50}}},
    unused_fallback_key_types={"@irc_bob:hs": {"DEV": ["signed_curve25519"]}},
    device_lists_changed=["@alice:hs"], device_lists_left=["@carol:hs"],
)


def test_a_plain_registration_gets_only_events():
    assert build_transaction_body(IRC, CONTENT) == {"events": [message()]}


def test_ephemeral_and_to_device_come_under_the_names_the_registration_asked_for():
    stable = build_transaction_body(registration(receive_ephemeral=True), CONTENT)
    assert set(stable) == {"events", "ephemeral", "to_device", "de.sorunome.msc2409.to_device"}
    assert stable["ephemeral"] == list(CONTENT.ephemeral)
    unstable = build_transaction_body(registration(unstable_ephemeral=True), CONTENT)
    assert set(unstable) == {"events", "de.sorunome.msc2409.ephemeral", "to_device",
                             "de.sorunome.msc2409.to_device"}
    assert unstable["de.sorunome.msc2409.to_device"] == list(CONTENT.to_device)


def test_msc3202_registrations_get_key_counts_and_device_list_changes():
    body = build_transaction_body(registration(msc3202=True), CONTENT)
    assert body["org.matrix.msc3202.device_one_time_key_counts"] == {"@irc_bob:hs": {"DEV": {"signed_curve25519": 50}}}
    assert body["org.matrix.msc3202.device_one_time_keys_count"] == body["org.matrix.msc3202.device_one_time_key_counts"]
    assert body["org.matrix.msc3202.device_unused_fallback_key_types"] == {"@irc_bob:hs": {"DEV": ["signed_curve25519"]}}
    assert body["org.matrix.msc3202.device_lists"] == {"changed": ["@alice:hs"], "left": ["@carol:hs"]}
    assert "ephemeral" not in body


# --- delivery attempts against the test appservice --------------------------------------------
@pytest.fixture
async def sender() -> AsyncIterator[tuple[TransactionSender, CollectorRegistry]]:
    registry = CollectorRegistry()
    metrics = AppServiceMetrics(registry)
    client = AppServiceClient(metrics)
    yield TransactionSender(client, metrics), registry
    await client.close()


def sample(registry: CollectorRegistry, name: str, service: str) -> float:
    return registry.get_sample_value(name, {"service": service}) or 0.0


async def test_a_failed_attempt_is_retried_with_the_same_txn_id_and_then_counted(appservice, sender):
    transactions, registry = sender
    appservice.fail_transactions = 1
    target = registration(url=appservice.url)
    pending = PendingTransaction("17", TransactionContent(events=[message(), message()]))
    assert await transactions.attempt(target, pending) is False
    assert await transactions.attempt(target, pending) is True
    puts = appservice.of("PUT", "/_matrix/app/v1/transactions/")
    assert [p.path for p in puts] == ["/_matrix/app/v1/transactions/17"] * 2
    assert puts[1].body == {"events": [message(), message()]}
    assert puts[0].query == {}  # the hs_token travels only in the Authorization header by default
    assert appservice.unauthorised == []
    assert sample(registry, "appservice_transaction_failures_total", "irc") == 1
    assert sample(registry, "appservice_transactions_sent_total", "irc") == 1
    assert sample(registry, "appservice_events_sent_total", "irc") == 2
    assert sample(registry, "appservice_last_success_timestamp_seconds", "irc") > 0
    transactions.queue_length_changed(target, 3)
    assert sample(registry, "appservice_queue_length", "irc") == 3


async def test_a_wrong_hs_token_is_refused_by_the_appservice_and_reported_as_a_failure(appservice, sender):
    transactions, _ = sender
    target = AppServiceRegistration(id="x", url=appservice.url, as_token="a", hs_token="wrong", sender="@x:hs")
    assert await transactions.attempt(target, PendingTransaction("1", TransactionContent())) is False
    assert appservice.unauthorised == ["/_matrix/app/v1/transactions/1"]


async def test_an_unreachable_appservice_is_a_failure_not_an_exception(sender):
    transactions, _ = sender
    target = registration(url="http://127.0.0.1:9")
    assert await transactions.attempt(target, PendingTransaction("1", TransactionContent())) is False


async def test_a_legacy_appservice_gets_the_unprefixed_route_when_the_versioned_one_is_unknown(sender):
    transactions, _ = sender
    received: list[tuple[str, str | None]] = []

    async def legacy(request: web.Request) -> web.Response:
        received.append((request.path, request.headers.get("Authorization")))
        return web.json_response({})

    app = web.Application()
    app.router.add_put("/transactions/{txn}", legacy)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        assert await transactions.attempt(registration(url=url), PendingTransaction("5", TransactionContent()))
    finally:
        await runner.cleanup()
    assert received == [("/transactions/5", f"Bearer {HS_TOKEN}")]


async def test_the_legacy_access_token_parameter_is_sent_only_when_configured(appservice):
    metrics = AppServiceMetrics(CollectorRegistry())
    client = AppServiceClient(metrics, legacy_authorization=True)
    try:
        await client.send_transaction(registration(url=appservice.url), "9", {"events": []})
    finally:
        await client.close()
    [put] = appservice.of("PUT", "/_matrix/app/v1/transactions/9")
    assert put.query == {"access_token": HS_TOKEN}


async def test_the_server_finds_the_services_interested_in_a_stored_event(make_homeserver, appservice, tmp_path):
    hs = await make_homeserver(app_service_config_files=[registration_yaml(tmp_path, appservice.url)])
    async with aiohttp.ClientSession(hs.base_url("client")) as session:
        bridge, alice = AsClient(session), await new_user(session, "alice")
        room_id = await alice.create_room(preset="public_chat")
        first = await hs.event_store.get_event(await alice.send(room_id, "nobody bridged yet"))
        assert await hs.app_services.services_for_event(first) == []
        ghost = f"@bridge_max:{hs.config.server_name}"
        await bridge.register("bridge_max", inhibit_login=True)
        await bridge.call("POST", f"/join/{room_id}", {}, user_id=ghost)
        second = await hs.event_store.get_event(await alice.send(room_id, "now the bridge listens"))
        assert [r.id for r in await hs.app_services.services_for_event(second)] == ["bridge"]
        context = await hs.app_services.room_context(room_id)
        assert context.members == {alice.user_id, ghost}
