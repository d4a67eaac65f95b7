"""Devices and end-to-end encryption across servers, against a fake remote server whose user shares a
room with ours: the remote device-list cache (fetched once, kept fresh by `m.device_list_update`,
resynced on a gap), `m.signing_key_update`, to-device messages both ways, /keys/query and
/keys/claim reaching the remote, our /user/devices and /user/keys endpoints, and the EDUs we send
about our users' devices."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from signedjson.key import generate_signing_key
from signedjson.sign import sign_json

from tests.e2ee.helpers import public_key
from tests.federation.remote_rooms import TransactionInbox
from tests.federation.resident import (
    V1,
    client_call,
    fed_request,
    local_room,
    q,
    remote_joins,
    send_transaction,
)
from tests.support.fake_devices import FakeDevices
from tests.support.fake_room import RemoteRoomView


class Setup:
    def __init__(self, hs, ca, view, remote, devices, inbox, alice, room_id):
        self.hs, self.ca, self.view, self.remote, self.devices, self.inbox = hs, ca, view, remote, devices, inbox
        self.alice, self.room_id = alice, room_id
        self.token = alice["access_token"]
        self.bob = f"@bob:{remote.server_name}"

    async def client(self, method: str, path: str, body: Any = None, params: dict | None = None,
                     token: str | None = None) -> Any:
        status, answer = await client_call(self.hs, self.ca, token or self.token, method, f"/_matrix/client/v3{path}",
                                           body, params)
        assert status == 200, answer
        return answer

    async def query(self, user_id: str, devices: list[str] | None = None) -> Any:
        return await self.client("POST", "/keys/query", {"device_keys": {user_id: devices or []}})

    async def send_edus(self, *edus: dict[str, Any]) -> None:
        status, body = await send_transaction(self.hs, self.remote, [], edus=list(edus))
        assert status == 200, body

    async def sync(self, since: str | None = None, token: str | None = None) -> Any:
        params = {"timeout": "0"}
        if since is not None:
            params["since"] = since
        return await self.client("GET", "/sync", params=params, token=token)


@pytest.fixture
async def setup(fed_hs, ca, make_remote) -> Setup:
    view = RemoteRoomView()
    devices = FakeDevices()
    inboxes: list[TransactionInbox] = []

    def routes(remote):
        view.install(remote)
        devices.install(remote)
        inboxes.append(TransactionInbox(remote))

    remote = await make_remote(routes=routes)
    view.remote = remote
    alice, room_id = await local_room(fed_hs, ca)
    await remote_joins(fed_hs, remote, view, room_id)
    return Setup(fed_hs, ca, view, remote, devices, inboxes[0], alice, room_id)


async def wait_for(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# --- the remote device-list cache -------------------------------------------------------------------

async def test_keys_of_a_remote_user_sharing_a_room_come_from_their_device_list_fetched_once(setup):
    setup.devices.add_device("bob", "BOBPHONE", name="Bob's phone")
    body = await setup.query(setup.bob)
    device = body["device_keys"][setup.bob]["BOBPHONE"]
    assert device["keys"]["ed25519:BOBPHONE"] == setup.devices.users[setup.bob].devices["BOBPHONE"]["keys"][
        "ed25519:BOBPHONE"]
    assert device["unsigned"]["device_display_name"] == "Bob's phone"
    assert body["failures"] == {}
    await setup.query(setup.bob)
    assert setup.devices.asked["devices"] == 1 and setup.devices.asked["query"] == 0


async def test_a_device_list_update_that_follows_our_copy_is_applied_and_shown_as_changed(setup):
    setup.devices.add_device("bob", "BOBPHONE")
    await setup.query(setup.bob)
    before = (await setup.sync())["next_batch"]
    await setup.send_edus(setup.devices.add_device("bob", "BOBLAPTOP"))
    body = await setup.query(setup.bob)
    assert set(body["device_keys"][setup.bob]) == {"BOBPHONE", "BOBLAPTOP"}
    assert setup.devices.asked["devices"] == 1  # applied, not fetched again
    after = await setup.sync(before)
    assert setup.bob in after["device_lists"]["changed"]
    changes = await setup.client("GET", "/keys/changes", params={"from": before, "to": after["next_batch"]})
    assert setup.bob in changes["changed"]


async def test_a_deleted_device_disappears_from_the_cached_list(setup):
    setup.devices.add_device("bob", "BOBPHONE")
    setup.devices.add_device("bob", "BOBOLD")
    await setup.query(setup.bob)
    await setup.send_edus(setup.devices.delete_device("bob", "BOBOLD"))
    assert set((await setup.query(setup.bob))["device_keys"][setup.bob]) == {"BOBPHONE"}
    assert setup.devices.asked["devices"] == 1


async def test_an_update_after_a_gap_makes_us_fetch_the_whole_list_again(setup):
    setup.devices.add_device("bob", "BOBPHONE")
    await setup.query(setup.bob)
    setup.devices.add_device("bob", "LOST")  # its EDU never arrives
    await setup.send_edus(setup.devices.add_device("bob", "BOBLAPTOP"))
    assert setup.devices.asked["devices"] == 2
    assert set((await setup.query(setup.bob))["device_keys"][setup.bob]) == {"BOBPHONE", "LOST", "BOBLAPTOP"}


async def test_an_update_we_already_have_is_ignored(setup):
    setup.devices.add_device("bob", "BOBPHONE")
    edu = setup.devices.add_device("bob", "BOBLAPTOP")
    await setup.query(setup.bob)  # the fetched list is already at the EDU's stream_id
    await setup.send_edus(edu, edu)
    assert setup.devices.asked["devices"] == 1
    assert set((await setup.query(setup.bob))["device_keys"][setup.bob]) == {"BOBPHONE", "BOBLAPTOP"}


async def test_an_update_for_an_uncached_user_sharing_a_room_fetches_their_list(setup):
    await setup.send_edus(setup.devices.add_device("bob", "BOBPHONE"))
    assert setup.devices.asked["devices"] == 1
    assert set((await setup.query(setup.bob))["device_keys"][setup.bob]) == {"BOBPHONE"}
    assert setup.devices.asked["devices"] == 1


async def test_device_list_updates_about_other_servers_users_or_with_forged_keys_are_dropped(setup):
    setup.devices.add_device("bob", "BOBPHONE")
    await setup.query(setup.bob)
    foreign = setup.devices.add_device("bob", "FOREIGN")
    foreign["content"] = {**foreign["content"], "user_id": "@carol:elsewhere.example"}
    forged = setup.devices.add_device("bob", "FORGED")
    forged["content"]["keys"] = sign_json({k: v for k, v in forged["content"]["keys"].items() if k != "signatures"},
                                          setup.bob, generate_signing_key("FORGED"))
    not_int = {"edu_type": "m.device_list_update",
               "content": {"user_id": setup.bob, "device_id": "X", "stream_id": "7"}}
    await setup.send_edus(foreign, forged, not_int)
    assert set((await setup.query(setup.bob))["device_keys"][setup.bob]) == {"BOBPHONE"}


async def test_a_signing_key_update_replaces_the_cached_cross_signing_keys(setup):
    setup.devices.add_device("bob", "BOBPHONE")
    setup.devices.set_master_key("bob")
    first = (await setup.query(setup.bob))["master_keys"][setup.bob]
    await setup.send_edus(setup.devices.set_master_key("bob"))
    body = await setup.query(setup.bob)
    assert body["master_keys"][setup.bob] == setup.devices.users[setup.bob].cross_signing["master"] != first
    assert body["self_signing_keys"][setup.bob] == setup.devices.users[setup.bob].cross_signing["self_signing"]
    assert setup.devices.asked["devices"] == 1


async def test_a_self_signing_key_not_signed_by_the_master_key_is_not_taken(setup):
    setup.devices.add_device("bob", "BOBPHONE")
    setup.devices.set_master_key("bob")
    cached = (await setup.query(setup.bob))["self_signing_keys"][setup.bob]
    rogue = generate_signing_key("")
    rogue.version = public_key(rogue)
    edu = {"edu_type": "m.signing_key_update",
           "content": {"user_id": setup.bob,
                       "self_signing_key": {"user_id": setup.bob, "usage": ["self_signing"],
                                            "keys": {f"ed25519:{public_key(rogue)}": public_key(rogue)}}}}
    await setup.send_edus(edu)
    assert (await setup.query(setup.bob))["self_signing_keys"][setup.bob] == cached


async def test_when_the_remote_user_leaves_the_last_shared_room_they_are_in_device_lists_left(setup):
    setup.devices.add_device("bob", "BOBPHONE")
    await setup.query(setup.bob)
    before = (await setup.sync())["next_batch"]
    leave = setup.view.build("bob", "m.room.member", {"membership": "leave"}, state_key=setup.bob)
    setup.view.apply(leave)
    status, body = await send_transaction(setup.hs, setup.remote, [leave])
    assert status == 200 and body["pdus"][setup.view.event_id(leave)] == {}, body
    after = await setup.sync(before)
    assert setup.bob in after["device_lists"]["left"]
    # The list is no longer kept: a later query asks the remote server directly.
    await setup.query(setup.bob)
    assert setup.devices.asked["query"] == 1


async def test_keys_of_a_remote_user_sharing_no_room_are_asked_of_their_server(setup):
    setup.devices.add_device("carol", "CAROLPC")
    carol = f"@carol:{setup.remote.server_name}"
    body = await setup.query(carol)
    assert set(body["device_keys"][carol]) == {"CAROLPC"}
    assert setup.devices.asked["query"] == 1 and setup.devices.asked["devices"] == 0


async def test_an_unreachable_server_is_reported_in_failures(setup):
    body = await setup.client("POST", "/keys/query",
                              {"device_keys": {"@x:127.0.0.3:1": []}, "timeout": 2000})
    assert "127.0.0.3:1" in body["failures"] and body["device_keys"] == {}


async def test_keys_claim_for_a_remote_device_is_asked_of_its_server(setup):
    setup.devices.add_device("bob", "BOBPHONE", one_time_keys=2)
    body = await setup.client("POST", "/keys/claim",
                              {"one_time_keys": {setup.bob: {"BOBPHONE": "signed_curve25519"}}})
    assert list(body["one_time_keys"][setup.bob]["BOBPHONE"]) == ["signed_curve25519:AAA0"]
    assert setup.devices.claims == [{setup.bob: {"BOBPHONE": "signed_curve25519"}}]
    assert body["failures"] == {}


# --- to-device messages ----------------------------------------------------------------------------

def to_device_edu(sender: str, alice: dict, message_id: str, body: str) -> dict[str, Any]:
    return {"edu_type": "m.direct_to_device",
            "content": {"sender": sender, "type": "m.room_key_request", "message_id": message_id,
                        "messages": {alice["user_id"]: {alice["device_id"]: {"body": body}}}}}


async def test_a_to_device_message_from_the_remote_reaches_our_device_once(setup):
    since = (await setup.sync())["next_batch"]
    edu = to_device_edu(setup.bob, setup.alice, "m1", "hello")
    await setup.send_edus(edu)
    await setup.send_edus(edu)  # the same message in another transaction
    events = (await setup.sync(since))["to_device"]["events"]
    assert events == [{"type": "m.room_key_request", "sender": setup.bob, "content": {"body": "hello"}}]


async def test_a_to_device_message_from_a_user_of_another_server_is_dropped(setup):
    since = (await setup.sync())["next_batch"]
    await setup.send_edus(to_device_edu("@mallory:elsewhere.example", setup.alice, "m2", "spoof"))
    assert (await setup.sync(since)).get("to_device", {"events": []})["events"] == []


async def test_a_to_device_message_to_a_remote_user_is_sent_as_an_edu_once(setup):
    body = {"messages": {setup.bob: {"BOBPHONE": {"secret": 1}}}}
    await setup.client("PUT", "/sendToDevice/m.room.encrypted/t1", body)
    await setup.client("PUT", "/sendToDevice/m.room.encrypted/t1", body)  # a retried request
    # EDUs go out in order: once a later message arrived, a second copy of the first would have too.
    await setup.client("PUT", "/sendToDevice/m.dummy/t2", {"messages": {setup.bob: {"*": {}}}})

    def sent():
        return [e for e in setup.inbox.edus if e["edu_type"] == "m.direct_to_device"]

    await setup.inbox.wait_for(lambda: any(e["content"]["type"] == "m.dummy" for e in sent()))
    edu, later = sent()
    assert later["content"]["type"] == "m.dummy"
    content = edu["content"]
    assert content["sender"] == setup.alice["user_id"] and content["type"] == "m.room.encrypted"
    assert content["messages"] == {setup.bob: {"BOBPHONE": {"secret": 1}}} and content["message_id"]


# --- what we tell the remote about our users ---------------------------------------------------------

async def upload_keys(setup: Setup, token: str, user_id: str, device_id: str, one_time: int = 0) -> dict:
    key = generate_signing_key(device_id)
    keys = sign_json({"user_id": user_id, "device_id": device_id, "algorithms": ["m.megolm.v1.aes-sha2"],
                      "keys": {f"ed25519:{device_id}": public_key(key), f"curve25519:{device_id}": "c" + device_id}},
                     user_id, key)
    otks = {f"signed_curve25519:K{i}": sign_json({"key": f"k{i}"}, user_id, key) for i in range(one_time)}
    await setup.client("POST", "/keys/upload", {"device_keys": keys, "one_time_keys": otks}, token=token)
    return keys


def device_updates(setup: Setup) -> list[dict[str, Any]]:
    return [e["content"] for e in setup.inbox.edus if e["edu_type"] == "m.device_list_update"]


async def test_our_device_changes_reach_the_remote_as_a_chain_of_device_list_updates(setup):
    alice, device = setup.alice["user_id"], setup.alice["device_id"]
    keys = await upload_keys(setup, setup.token, alice, device)
    await setup.inbox.wait_for(lambda: any("keys" in u for u in device_updates(setup)))
    status, login = await client_call(setup.hs, setup.ca, "", "POST", "/_matrix/client/v3/login",
                                      {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                                       "password": "correct horse", "device_id": "SECOND"})
    assert status == 200, login
    await setup.inbox.wait_for(lambda: any(u["device_id"] == "SECOND" for u in device_updates(setup)))
    updates = device_updates(setup)
    with_keys = next(u for u in updates if "keys" in u)
    assert with_keys["user_id"] == alice and with_keys["device_id"] == device
    assert with_keys["keys"]["keys"] == keys["keys"]
    # Each update builds on the one before it.
    for earlier, later in zip(updates, updates[1:], strict=False):
        assert later["prev_id"] == [earlier["stream_id"]] and later["stream_id"] > earlier["stream_id"]
    # /user/devices continues the same chain.
    status, listed = await fed_request(setup.hs, setup.remote, "GET", f"{V1}/user/devices/{q(alice)}")
    assert status == 200, listed
    assert listed["stream_id"] == updates[-1]["stream_id"]
    assert [d["device_id"] for d in listed["devices"]] == [device]  # SECOND has no keys yet


async def test_a_renamed_device_reaches_the_remote_with_its_new_name(setup):
    device = setup.alice["device_id"]
    await upload_keys(setup, setup.token, setup.alice["user_id"], device)
    await setup.client("PUT", f"/devices/{device}", {"display_name": "Alice's laptop"})
    await setup.inbox.wait_for(lambda: any(u.get("device_display_name") == "Alice's laptop"
                                           for u in device_updates(setup)))
    renamed = next(u for u in device_updates(setup) if u.get("device_display_name") == "Alice's laptop")
    assert renamed["device_id"] == device and "keys" in renamed


async def test_a_deleted_device_reaches_the_remote_as_deleted(setup):
    alice = setup.alice["user_id"]
    status, login = await client_call(setup.hs, setup.ca, "", "POST", "/_matrix/client/v3/login",
                                      {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                                       "password": "correct horse", "device_id": "GONE"})
    assert status == 200, login
    await client_call(setup.hs, setup.ca, login["access_token"], "POST", "/_matrix/client/v3/logout")
    await setup.inbox.wait_for(lambda: any(u["device_id"] == "GONE" and u.get("deleted")
                                           for u in device_updates(setup)))
    assert all(u["user_id"] == alice for u in device_updates(setup))


async def test_our_cross_signing_keys_reach_the_remote_as_a_signing_key_update(setup):
    from tests.e2ee.helpers import cross_signing_key
    from tests.support.rooms import User

    user = User(None, setup.alice)
    master, master_key = cross_signing_key(user, "master")
    self_signing, _ = cross_signing_key(user, "self_signing", master_key)
    await setup.client("POST", "/keys/device_signing/upload", {"master_key": master, "self_signing_key": self_signing})
    await setup.inbox.wait_for(lambda: any(e["edu_type"] == "m.signing_key_update" for e in setup.inbox.edus))
    (edu,) = [e["content"] for e in setup.inbox.edus if e["edu_type"] == "m.signing_key_update"]
    assert edu == {"user_id": setup.alice["user_id"], "master_key": master, "self_signing_key": self_signing}


async def test_the_remote_can_query_and_claim_our_users_keys(setup):
    alice, device = setup.alice["user_id"], setup.alice["device_id"]
    keys = await upload_keys(setup, setup.token, alice, device, one_time=2)
    status, body = await fed_request(setup.hs, setup.remote, "POST", f"{V1}/user/keys/query",
                                     {"device_keys": {alice: []}})
    assert status == 200, body
    assert body["device_keys"][alice][device]["keys"] == keys["keys"]
    claimed = []
    for _ in range(3):
        status, body = await fed_request(setup.hs, setup.remote, "POST", f"{V1}/user/keys/claim",
                                         {"one_time_keys": {alice: {device: "signed_curve25519"}}})
        assert status == 200, body
        claimed.append(list(body["one_time_keys"].get(alice, {}).get(device, {})))
    assert claimed == [["signed_curve25519:K0"], ["signed_curve25519:K1"], []]


async def test_our_device_endpoints_refuse_bad_requests(setup):
    status, body = await fed_request(setup.hs, setup.remote, "GET", f"{V1}/user/devices/{q('@nobody:' + setup.hs.config.server_name)}")
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await fed_request(setup.hs, setup.remote, "GET", f"{V1}/user/devices/{q(setup.bob)}")
    assert status == 400 and "userId" in body["error"]
    status, body = await fed_request(setup.hs, setup.remote, "POST", f"{V1}/user/keys/query", {"device_keys": 5})
    assert status == 400 and "device_keys" in body["error"]
    status, body = await fed_request(setup.hs, setup.remote, "POST", f"{V1}/user/keys/claim", {})
    assert status == 400 and "one_time_keys" in body["error"]


async def test_when_our_user_leaves_the_shared_room_the_remote_list_is_no_longer_kept(setup):
    setup.devices.add_device("bob", "BOBPHONE")
    await setup.query(setup.bob)
    await setup.client("POST", f"/rooms/{q(setup.room_id)}/leave", {})
    await setup.query(setup.bob)
    assert setup.devices.asked["query"] == 1 and setup.devices.asked["devices"] == 1


async def test_device_changes_made_while_the_sender_was_stopped_go_out_when_it_starts(setup):
    sender = setup.hs.federation.device_lists_sender
    await sender.stop()
    alice, device = setup.alice["user_id"], setup.alice["device_id"]
    await upload_keys(setup, setup.token, alice, device)
    await sender.start()
    await setup.inbox.wait_for(lambda: any("keys" in u and u["device_id"] == device for u in device_updates(setup)))
