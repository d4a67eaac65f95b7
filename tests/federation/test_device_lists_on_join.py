"""Our user joining a room tells the servers there that did not share a room with them before about
their devices (the spec's "when that user joins a room which contains servers which are not already
receiving updates for that user's device list"): one `m.device_list_update` per device, no `prev_id`,
so the server fetches the list whole; servers already following the user get nothing new. Against
fake remotes recording what we send them."""

from __future__ import annotations

from typing import Any

from tests.federation.remote_rooms import TransactionInbox, pdu_id
from tests.federation.resident import V1, client_call, fed_request, local_room, q, remote_joins
from tests.federation.test_device_federation import upload_keys
from tests.support.fake_room import RemoteRoomView


class Bed:
    def __init__(self, hs, ca):
        self.hs, self.ca = hs, ca

    async def client(self, token: str, method: str, path: str, body: Any = None) -> Any:
        status, answer = await client_call(self.hs, self.ca, token, method, f"/_matrix/client/v3{path}", body)
        assert status == 200, answer
        return answer


def device_updates(inbox: TransactionInbox, user_id: str) -> list[dict[str, Any]]:
    return [e["content"] for e in inbox.edus
            if e["edu_type"] == "m.device_list_update" and e["content"]["user_id"] == user_id]


class KeysSetup:
    """What tests.federation.test_device_federation.upload_keys needs."""

    def __init__(self, bed: Bed):
        self.bed = bed

    async def client(self, method: str, path: str, body: Any = None, params: dict | None = None,
                     token: str | None = None) -> Any:
        return await self.bed.client(token or "", method, path, body)


async def start(make_federating_homeserver, make_remote, ca, count: int = 1):
    inboxes: list[TransactionInbox] = []
    views: list[RemoteRoomView] = []

    def routes(remote):
        view = RemoteRoomView()
        view.install(remote)
        views.append(view)
        inboxes.append(TransactionInbox(remote))

    remotes = [await make_remote(f"127.0.0.{2 + i}", routes=routes) for i in range(count)]
    hs = await make_federating_homeserver(min_retry_interval_ms=50)
    hs.outbound.max_retry_s = 0.3
    return hs, remotes, views, inboxes


async def test_our_user_joining_a_room_sends_their_device_list_to_servers_new_to_them(
        make_federating_homeserver, make_remote, ca):
    hs, [remote], [view], [inbox] = await start(make_federating_homeserver, make_remote, ca)
    bed = Bed(hs, ca)
    alice, room_id = await local_room(hs, ca, "alice")
    await remote_joins(hs, remote, view, room_id)
    carol, carols_room = await local_room(hs, ca, "carol")
    carol_id = carol["user_id"]
    keys = await upload_keys(KeysSetup(bed), carol["access_token"], carol_id, carol["device_id"])
    # Carol shares no room with the remote yet: her key upload is nobody's business there.
    await bed.client(carol["access_token"], "POST", f"/join/{q(room_id)}", {})
    await inbox.wait_for(lambda: device_updates(inbox, carol_id))
    [update] = device_updates(inbox, carol_id)
    assert update["device_id"] == carol["device_id"] and update["prev_id"] == []
    assert update["keys"]["keys"] == keys["keys"]
    # The stream_id is the one GET /user/devices answers, so the chain continues from the fetch.
    status, listed = await fed_request(hs, remote, "GET", f"{V1}/user/devices/{q(carol_id)}")
    assert status == 200, listed
    assert listed["stream_id"] == update["stream_id"]
    # The join travelled before the update (or with it): the remote knows why it is told.
    join_txn = next(i for i, body in enumerate(inbox.accepted.values())
                    if any(p.get("type") == "m.room.member" and p.get("state_key") == carol_id
                           for p in body["pdus"]))
    edu_txn = next(i for i, body in enumerate(inbox.accepted.values())
                   if any(e["edu_type"] == "m.device_list_update" for e in body["edus"]))
    assert join_txn <= edu_txn

    # A second room with the same remote: it follows Carol already, nothing more is sent.
    await remote_joins(hs, remote, view, carols_room, localpart="dave")
    before = len(inbox.accepted)
    await bed.client(alice["access_token"], "POST", f"/join/{q(carols_room)}", {})
    message = await bed.client(carol["access_token"], "PUT", f"/rooms/{q(carols_room)}/send/m.room.message/t1",
                               {"msgtype": "m.text", "body": "after"})
    await inbox.wait_for(lambda: message["event_id"] in inbox.pdu_ids)
    assert len(device_updates(inbox, carol_id)) == 1
    # Alice joined a room with a server already sharing one with her: nothing for her either.
    assert device_updates(inbox, alice["user_id"]) == []
    assert len(inbox.accepted) > before


async def test_only_the_servers_new_to_the_user_are_sent_their_list(make_federating_homeserver, make_remote, ca):
    hs, [old, new], [old_view, new_view], [old_inbox, new_inbox] = await start(
        make_federating_homeserver, make_remote, ca, 2)
    bed = Bed(hs, ca)
    carol, carols_room = await local_room(hs, ca, "carol")
    carol_id = carol["user_id"]
    await remote_joins(hs, old, old_view, carols_room)
    _, room_id = await local_room(hs, ca, "alice")
    await remote_joins(hs, old, old_view, room_id, localpart="erin")
    await remote_joins(hs, new, new_view, room_id)
    await upload_keys(KeysSetup(bed), carol["access_token"], carol_id, carol["device_id"])
    # The old remote follows Carol's list through the room they share: its chain starts now.
    await old_inbox.wait_for(lambda: device_updates(old_inbox, carol_id))
    await bed.client(carol["access_token"], "POST", f"/join/{q(room_id)}", {})
    await new_inbox.wait_for(lambda: device_updates(new_inbox, carol_id))
    join_ids = [pdu_id(p) for p in new_inbox.pdus if p.get("state_key") == carol_id]
    await old_inbox.wait_for(lambda: any(i in old_inbox.pdu_ids for i in join_ids))
    assert [u["prev_id"] for u in device_updates(new_inbox, carol_id)] == [[]]
    # The old remote got the upload's update only (building on the registration), never a restart.
    [update] = device_updates(old_inbox, carol_id)
    assert update["prev_id"] != []
