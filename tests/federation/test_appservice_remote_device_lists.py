"""MSC3202 across servers: an application service registered with `org.matrix.msc3202: true` whose
user shares a room with another server's user gets that user in `device_lists.changed` when their
server tells us of a device change (as Synapse passes remote users' changes on), and the service
without the flag never does. A real loopback application service, a fake remote server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.appservices.support import AsClient, TransactionRecorder, registration_yaml
from tests.conftest import free_port
from tests.federation.helpers import federation_overrides, tls_session
from tests.federation.resident import local_room, q, remote_joins, send_transaction
from tests.support.fake_devices import FakeDevices
from tests.support.fake_room import RemoteRoomView

DEVICE_LISTS = "org.matrix.msc3202.device_lists"
FAST_RETRIES = {"min_retry_interval_s": 0.05, "max_retry_interval_s": 0.2}


@pytest.fixture
async def services() -> AsyncIterator[tuple[TransactionRecorder, TransactionRecorder]]:
    encrypted, plain = TransactionRecorder(), TransactionRecorder(hs_token="hs-token-of-the-plain-bridge")
    await encrypted.start()
    await plain.start()
    yield encrypted, plain
    await encrypted.stop()
    await plain.stop()


def changed(recorder: TransactionRecorder, user_id: str) -> int:
    """How many transactions listed the user in device_lists.changed."""
    return sum(user_id in t.body.get(DEVICE_LISTS, {}).get("changed", []) for t in recorder.processed)


async def test_a_remote_users_device_change_reaches_the_msc3202_service(make_homeserver, make_remote, ca, tmp_path,
                                                                       services):
    encrypted, plain = services
    with_flag = registration_yaml(tmp_path, encrypted.url, **{"org.matrix.msc3202": True})
    without = registration_yaml(
        tmp_path, plain.url, name="plain", as_token="as-token-of-the-plain-bridge", hs_token=plain.hs_token,
        namespaces={"users": [{"regex": "@bridge_.*:.*", "exclusive": False}], "aliases": [], "rooms": []},
        receive_ephemeral=True)
    hs = await make_homeserver(**federation_overrides(ca, free_port()), app_service_config_files=[with_flag, without],
                               outbound=FAST_RETRIES)
    view, devices = RemoteRoomView(), FakeDevices()

    def routes(remote):
        view.install(remote)
        devices.install(remote)

    remote = await make_remote(routes=routes)
    bob = f"@bob:{remote.server_name}"
    _, room_id = await local_room(hs, ca)
    async with tls_session(hs, ca) as session:
        bridge = AsClient(session)
        ghost = (await bridge.register("bridge_ghost", inhibit_login=True))["user_id"]
        await bridge.call("POST", f"/join/{q(room_id)}", {}, user_id=ghost)
    await remote_joins(hs, remote, view, room_id)
    # Bob joining the ghost's room starts sharing it: changed once for that.
    await encrypted.wait_for(lambda: changed(encrypted, bob) >= 1)
    shared = changed(encrypted, bob)

    # Bob's server tells us of a new device: we fetch his list (first news of it) and the service hears.
    status, body = await send_transaction(hs, remote, [], edus=[devices.add_device("bob", "BOBPHONE")])
    assert status == 200, body
    await encrypted.wait_for(lambda: changed(encrypted, bob) > shared)
    assert devices.asked["devices"] == 1
    # An update that follows our copy is applied and passed on too.
    fetched = changed(encrypted, bob)
    status, body = await send_transaction(hs, remote, [], edus=[devices.add_device("bob", "BOBLAPTOP")])
    assert status == 200, body
    await encrypted.wait_for(lambda: changed(encrypted, bob) > fetched)
    assert devices.asked["devices"] == 1
    # The service without the flag follows the same ghost, and never gets device lists.
    assert not [k for t in plain.processed for k in t.body if k.startswith("org.matrix.msc3202")]
