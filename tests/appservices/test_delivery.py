"""Transactions reach a real application service over loopback: interest, order, retries, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from homeserver.config import parse_config
from homeserver.server import HomeServer
from tests.appservices.support import AsClient, TransactionRecorder, registration_yaml
from tests.conftest import make_test_config
from tests.support.rooms import User, new_user

UNSTABLE = "de.sorunome.msc2409.ephemeral"
FAST_RETRIES = {"min_retry_interval_s": 0.05, "max_retry_interval_s": 0.2}


@pytest.fixture
async def recorder() -> AsyncIterator[TransactionRecorder]:
    service = TransactionRecorder()
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def bridged(make_homeserver, recorder, tmp_path):
    path = registration_yaml(tmp_path, recorder.url)
    return await make_homeserver(app_service_config_files=[path], outbound=FAST_RETRIES)


@pytest.fixture
async def session(bridged) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(bridged.base_url("client")) as client:
        yield client


async def bridged_room(bridged, session: aiohttp.ClientSession) -> tuple[User, str, str]:
    """A human's room that the ghost @bridge_max joined: (human, room_id, ghost)."""
    alice = await new_user(session, "alice")
    room_id = await alice.create_room(preset="public_chat")
    bridge = AsClient(session)
    await bridge.register("bridge_max", inhibit_login=True)
    ghost = f"@bridge_max:{bridged.config.server_name}"
    await bridge.call("POST", f"/join/{room_id}", {}, user_id=ghost)
    return alice, room_id, ghost


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in events]


async def test_the_service_receives_the_events_it_is_interested_in_and_no_others(bridged, session, recorder):
    bob = await new_user(session, "bob")
    private = await bob.create_room()
    unrelated = await bob.send(private, "nobody bridged here")
    alice, room_id, ghost = await bridged_room(bridged, session)
    message = await alice.send(room_id, "hello bridge")
    await recorder.wait_for_event(message)

    received = recorder.events
    assert unrelated not in ids(received)
    assert all(e["room_id"] == room_id for e in received)
    assert len(ids(received)) == len(set(ids(received)))
    # The ghost's join (its membership) and the message after it, in stream order.
    joins = [e for e in received if e["type"] == "m.room.member" and e["state_key"] == ghost]
    assert joins and ids(received).index(joins[0]["event_id"]) < ids(received).index(message)
    [hello] = [e for e in received if e["event_id"] == message]
    assert hello["sender"] == alice.user_id and hello["content"] == {"msgtype": "m.text", "body": "hello bridge"}
    assert hello["type"] == "m.room.message" and isinstance(hello["origin_server_ts"], int)
    # Transaction IDs count up per service; the hs_token came with every request.
    txn_ids = [int(t.txn_id) for t in recorder.processed]
    assert txn_ids == sorted(txn_ids) and len(set(txn_ids)) == len(txn_ids)
    assert recorder.unauthorised == 0
    assert all("ephemeral" not in t.body for t in recorder.processed)


async def test_invites_of_a_namespace_user_reach_the_service_before_the_user_joins(bridged, session, recorder):
    alice = await new_user(session, "alice")
    room_id = await alice.create_room()
    ghost = f"@bridge_carol:{bridged.config.server_name}"
    await AsClient(session).register("bridge_carol", inhibit_login=True)
    await alice.call("POST", f"/rooms/{room_id}/invite", {"user_id": ghost})
    before = await alice.send(room_id, "the ghost is only invited")
    await recorder.wait_for(lambda: any(e["type"] == "m.room.member" and e.get("state_key") == ghost
                                        for e in recorder.events))
    [invite] = [e for e in recorder.events if e["type"] == "m.room.member"]
    assert invite["content"]["membership"] == "invite"
    # Invited is not joined: the room's other events are not the service's business.
    marker = await AsClient(session).call("POST", "/createRoom", {}, user_id=ghost)
    await recorder.wait_for(lambda: any(e["room_id"] == marker["room_id"] for e in recorder.events))
    assert before not in ids(recorder.events)


async def test_a_failed_transaction_is_retried_with_the_same_id_and_the_same_events(bridged, session, recorder):
    alice, room_id, _ = await bridged_room(bridged, session)
    await recorder.wait_for(lambda: bool(recorder.processed))
    recorder.fail_next = 2
    message = await alice.send(room_id, "retry me")
    await recorder.wait_for_event(message)
    refused, retried, accepted = recorder.puts[-3:]
    assert refused.txn_id == retried.txn_id == accepted.txn_id
    assert ids(refused.body["events"]) == ids(accepted.body["events"]) and message in ids(accepted.body["events"])
    assert recorder.events.count(accepted.body["events"][0]) == 1


async def test_a_service_that_was_down_receives_everything_it_missed_once_and_in_order(bridged, session, recorder):
    alice, room_id, _ = await bridged_room(bridged, session)
    await recorder.wait_for(lambda: bool(recorder.processed))
    seen_before = len(recorder.processed)
    await recorder.stop()
    sent = [await alice.send(room_id, f"while you were away {i}") for i in range(12)]

    def failures() -> float:
        return bridged.metrics.registry.get_sample_value("appservice_transaction_failures_total",
                                                         {"service": "bridge"}) or 0

    for _ in range(200):
        if failures() >= 2:
            break
        await asyncio.sleep(0.05)
    assert failures() >= 2  # the homeserver kept trying while the service was down
    await recorder.start()
    await recorder.wait_for_event(sent[-1])
    missed = [e for e in recorder.events if e["type"] == "m.room.message"]
    assert ids(missed) == sent
    assert len(recorder.processed) > seen_before
    # The transaction attempted while the service was down came back under its own ID.
    first_after = int(recorder.processed[seen_before].txn_id)
    assert first_after == int(recorder.processed[seen_before - 1].txn_id) + 1


async def test_the_appservice_metrics_count_transactions_and_events(bridged, session, recorder):
    alice, room_id, _ = await bridged_room(bridged, session)
    message = await alice.send(room_id, "count me")
    await recorder.wait_for_event(message)
    registry = bridged.metrics.registry
    labels = {"service": "bridge"}
    assert registry.get_sample_value("appservice_transactions_sent_total", labels) == len(recorder.processed)
    assert registry.get_sample_value("appservice_events_sent_total", labels) == len(recorder.events)
    assert (registry.get_sample_value("appservice_last_success_timestamp_seconds", labels) or 0) > 0


async def test_read_receipts_reach_a_service_that_asked_for_ephemeral_data(make_homeserver, tmp_path):
    eager, plain = TransactionRecorder(), TransactionRecorder(hs_token="hs-token-of-plain")
    await eager.start()
    await plain.start()
    try:
        hs = await make_homeserver(app_service_config_files=[
            registration_yaml(tmp_path, eager.url, receive_ephemeral=True),
            registration_yaml(tmp_path, plain.url, name="plain", as_token="as-plain", hs_token="hs-token-of-plain"),
        ], outbound=FAST_RETRIES)
        async with aiohttp.ClientSession(hs.base_url("client")) as session:
            alice, room_id, ghost = await bridged_room(hs, session)
            plain_ghost = f"@plain_max:{hs.config.server_name}"
            plain_bridge = AsClient(session, "as-plain")
            await plain_bridge.register("plain_max", inhibit_login=True)
            await plain_bridge.call("POST", f"/join/{room_id}", {}, user_id=plain_ghost)
            message = await alice.send(room_id, "read me")
            await alice.call("POST", f"/rooms/{room_id}/receipt/m.read/{message}", {})
            await eager.wait_for(lambda: any(e["type"] == "m.receipt" for e in eager.ephemeral()))
            [receipt] = [e for e in eager.ephemeral() if e["type"] == "m.receipt"]
            assert receipt["room_id"] == room_id
            assert list(receipt["content"]) == [message]
            assert alice.user_id in receipt["content"][message]["m.read"]
            assert isinstance(receipt["content"][message]["m.read"][alice.user_id]["ts"], int)
            # A private receipt of a user outside the namespace stays private.
            later = await alice.send(room_id, "read privately")
            await alice.call("POST", f"/rooms/{room_id}/receipt/m.read.private/{later}", {})
            marker = await alice.send(room_id, "after the private receipt")
            await eager.wait_for_event(marker)
            await plain.wait_for_event(marker)
            assert [e["type"] for e in eager.ephemeral() if e["type"] == "m.receipt"] == ["m.receipt"]
            assert all("ephemeral" not in t.body for t in plain.processed)
    finally:
        await eager.stop()
        await plain.stop()


@pytest.fixture
async def ephemeral_bridged(make_homeserver, recorder, tmp_path):
    """The recording service registered with the unstable MSC2409 key only, as mautrix writes it."""
    path = registration_yaml(tmp_path, recorder.url, **{"de.sorunome.msc2409.push_ephemeral": True})
    return await make_homeserver(app_service_config_files=[path], outbound=FAST_RETRIES)


async def test_typing_and_presence_reach_the_service_under_the_unstable_key(ephemeral_bridged, recorder):
    hs = ephemeral_bridged
    async with aiohttp.ClientSession(hs.base_url("client")) as session:
        alice, room_id, ghost = await bridged_room(hs, session)
        outsider = await new_user(session, "outsider")
        elsewhere = await outsider.create_room()
        await alice.call("PUT", f"/rooms/{room_id}/typing/{alice.user_id}", {"typing": True, "timeout": 30000})
        await outsider.call("PUT", f"/rooms/{elsewhere}/typing/{outsider.user_id}", {"typing": True,
                                                                                    "timeout": 30000})
        await alice.call("PUT", f"/rooms/{room_id}/typing/{alice.user_id}", {"typing": False})
        await alice.call("PUT", f"/presence/{alice.user_id}/status", {"presence": "online", "status_msg": "here"})

        def typing() -> list[dict[str, Any]]:
            return [e for e in recorder.ephemeral(UNSTABLE) if e["type"] == "m.typing"]

        def presence_of(user_id: str) -> list[dict[str, Any]]:
            return [e for e in recorder.ephemeral(UNSTABLE) if e["type"] == "m.presence" and e["sender"] == user_id]

        await recorder.wait_for(lambda: len(typing()) >= 2 and any(
            e["content"].get("status_msg") == "here" for e in presence_of(alice.user_id)))
        assert typing() == [{"type": "m.typing", "room_id": room_id, "content": {"user_ids": [alice.user_id]}},
                            {"type": "m.typing", "room_id": room_id, "content": {"user_ids": []}}]
        [here] = [e for e in presence_of(alice.user_id) if e["content"].get("status_msg") == "here"]
        assert here["content"]["presence"] == "online"
        # Only the unstable key was asked for; someone sharing no room with the bridge stays private.
        assert all("ephemeral" not in t.body for t in recorder.processed)
        await outsider.call("PUT", f"/presence/{outsider.user_id}/status", {"presence": "online",
                                                                            "status_msg": "secret"})
        marker = await alice.send(room_id, "marker")
        await recorder.wait_for_event(marker)
        assert presence_of(outsider.user_id) == []


async def test_to_device_messages_for_a_ghost_device_reach_the_service(ephemeral_bridged, recorder):
    hs = ephemeral_bridged
    async with aiohttp.ClientSession(hs.base_url("client")) as session:
        alice = await new_user(session, "alice")
        ghost = await AsClient(session).register("bridge_dev", device_id="GHOSTDEV")
        body = {"messages": {ghost["user_id"]: {"GHOSTDEV": {"secret": 1}}, alice.user_id: {"*": {"self": 1}}}}
        await alice.call("PUT", "/sendToDevice/m.custom.test/txn1", body)

        def messages() -> list[dict[str, Any]]:
            return [m for t in recorder.processed for m in t.body.get("de.sorunome.msc2409.to_device", [])]

        await recorder.wait_for(lambda: bool(messages()))
        assert messages() == [{"type": "m.custom.test", "sender": alice.user_id, "content": {"secret": 1},
                               "to_user_id": ghost["user_id"], "to_device_id": "GHOSTDEV"}]
        assert recorder.processed[-1].body["to_device"] == messages()


async def test_what_a_down_service_missed_survives_restarts_even_one_without_its_registration(
        tmp_path, database_config, recorder):
    raw = make_test_config(tmp_path, database_config, outbound=FAST_RETRIES)
    registered = {**raw, "app_service_config_files": [registration_yaml(tmp_path, recorder.url)]}

    async def started(config: dict[str, Any]) -> HomeServer:
        server = HomeServer(parse_config(config))
        await server.start()
        return server

    hs = await started(registered)
    try:
        async with aiohttp.ClientSession(hs.base_url("client")) as session:
            alice, room_id, _ = await bridged_room(hs, session)
            await recorder.wait_for(lambda: bool(recorder.processed))
            await recorder.stop()
            missed = [await alice.send(room_id, f"missed {i}") for i in range(5)]
        # Handed off (queued) while the registration existed; the next start goes without it.
        assert await hs.app_service_delivery.stage.wait_for_live(10)
        await hs.stop()
        # Restarted once without the registration file: nothing new is queued for the service,
        # and what was queued stays.
        hs = await started(raw)
        async with aiohttp.ClientSession(hs.base_url("client")) as session:
            alice.client = session
            unregistered = await alice.send(room_id, "while unregistered")
        await hs.stop()
        hs = await started(registered)
        await recorder.start()
        async with aiohttp.ClientSession(hs.base_url("client")) as session:
            alice.client = session
            back = await alice.send(room_id, "welcome back")
            await recorder.wait_for_event(back)
        messages = [e["event_id"] for e in recorder.events if e["type"] == "m.room.message"]
        assert messages == [*missed, back]
        assert unregistered not in messages
    finally:
        await hs.stop()
