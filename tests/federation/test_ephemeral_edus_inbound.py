"""Typing, receipt and presence EDUs from a fake remote server reach our users' /sync; EDUs that
are malformed, speak for another server's users, come from a server with nobody in the room or
that the room's server ACL denies are dropped, and never fail the transaction."""

from __future__ import annotations

import homeserver.ephemeral.typing as typing_module
from tests.federation.ephemeral_helpers import (
    ephemeral,
    presence_edu,
    presence_of,
    receipt_edu,
    send_edus,
    start_with_remotes,
    sync,
    sync_until,
    typing_edu,
    typing_users,
)
from tests.federation.helpers import tls_session
from tests.federation.remote_rooms import join_remote_user, local_user


async def room_with_remote(hs, remote, session):
    alice = await local_user(session, "alice")
    room_id = await alice.create_room(preset="public_chat")
    await join_remote_user(hs, remote, room_id)
    return alice, room_id, f"@bob:{remote.server_name}"


async def test_a_remote_users_typing_shows_in_sync_and_stops(make_federating_homeserver, make_remote, ca):
    hs, [remote], _ = await start_with_remotes(make_federating_homeserver, make_remote)
    async with tls_session(hs, ca) as session:
        alice, room_id, bob = await room_with_remote(hs, remote, session)
        first = await sync(alice)
        await send_edus(hs, remote, [typing_edu(room_id, bob, True)])
        started = await sync_until(alice, lambda r: typing_users(r, room_id) == [bob], first["next_batch"])
        await send_edus(hs, remote, [typing_edu(room_id, bob, False)])
        await sync_until(alice, lambda r: typing_users(r, room_id) == [], started["next_batch"])


async def test_a_remote_users_typing_times_out_without_renewal(make_federating_homeserver, make_remote, ca,
                                                               monkeypatch):
    monkeypatch.setattr(typing_module, "REMOTE_TIMEOUT_MS", 2000)
    hs, [remote], _ = await start_with_remotes(make_federating_homeserver, make_remote)
    async with tls_session(hs, ca) as session:
        alice, room_id, bob = await room_with_remote(hs, remote, session)
        first = await sync(alice)
        await send_edus(hs, remote, [typing_edu(room_id, bob, True)])
        assert hs.typing.typing_users(room_id) == [bob]  # taken before the transaction was answered
        # No stop is sent: the typing notification expires by itself.
        await sync_until(alice, lambda r: typing_users(r, room_id) == [], first["next_batch"])
        assert hs.typing.typing_users(room_id) == []


async def test_a_remote_users_threaded_receipt_shows_in_sync_ephemeral(make_federating_homeserver, make_remote, ca):
    hs, [remote], _ = await start_with_remotes(make_federating_homeserver, make_remote)
    async with tls_session(hs, ca) as session:
        alice, room_id, bob = await room_with_remote(hs, remote, session)
        root = await alice.send(room_id, "thread root")
        first = await sync(alice)
        await send_edus(hs, remote, [receipt_edu(room_id, bob, root, ts=1700, thread_id=root)])
        synced = await sync_until(alice, lambda r: bool(ephemeral(r, room_id, "m.receipt")), first["next_batch"])
    [receipt] = ephemeral(synced, room_id, "m.receipt")
    assert receipt["content"] == {root: {"m.read": {bob: {"ts": 1700, "thread_id": root}}}}


async def test_a_remote_receipt_for_an_event_not_yet_here_is_kept(make_federating_homeserver, make_remote, ca):
    hs, [remote], _ = await start_with_remotes(make_federating_homeserver, make_remote)
    async with tls_session(hs, ca) as session:
        alice, room_id, bob = await room_with_remote(hs, remote, session)
        first = await sync(alice)
        unknown = "$notyethere:" + remote.server_name
        await send_edus(hs, remote, [receipt_edu(room_id, bob, unknown, ts=5)])
        synced = await sync_until(alice, lambda r: bool(ephemeral(r, room_id, "m.receipt")), first["next_batch"])
    assert ephemeral(synced, room_id, "m.receipt")[0]["content"] == {unknown: {"m.read": {bob: {"ts": 5}}}}


async def test_remote_presence_shows_in_sync_of_users_sharing_a_room(make_federating_homeserver, make_remote, ca):
    hs, [remote], _ = await start_with_remotes(make_federating_homeserver, make_remote)
    async with tls_session(hs, ca) as session:
        alice, room_id, bob = await room_with_remote(hs, remote, session)
        loner = await local_user(session, "loner")
        await loner.create_room()
        first = await sync(alice)
        await send_edus(hs, remote, [presence_edu({"user_id": bob, "presence": "online", "last_active_ago": 1000,
                                                   "currently_active": True, "status_msg": "op de fiets"})])
        synced = await sync_until(alice, lambda r: presence_of(r, bob) is not None, first["next_batch"])
        content = presence_of(synced, bob)
        assert content["presence"] == "online" and content["status_msg"] == "op de fiets"
        assert content["currently_active"] is True and content["last_active_ago"] >= 1000
        # A user sharing no room with bob sees nothing of it, and may not ask.
        assert presence_of(await sync(loner), bob) is None
        await loner.call("GET", f"/presence/{bob}/status", expect=403)
        status = await alice.call("GET", f"/presence/{bob}/status")
        assert status["presence"] == "online"


async def test_presence_of_a_remote_user_in_no_room_here_is_dropped(make_federating_homeserver, make_remote, ca):
    hs, [remote], _ = await start_with_remotes(make_federating_homeserver, make_remote)
    async with tls_session(hs, ca) as session:
        alice, room_id, bob = await room_with_remote(hs, remote, session)
        stranger = f"@stranger:{remote.server_name}"
        await send_edus(hs, remote, [presence_edu({"user_id": stranger, "presence": "online", "last_active_ago": 1},
                                                  {"user_id": bob, "presence": "unavailable", "last_active_ago": 1})])
    assert (await hs.presence._store.get_presence(bob)).state == "unavailable"
    assert await hs.presence._store.get_presence(stranger) is None


async def test_ephemeral_edus_for_another_servers_users_are_dropped(make_federating_homeserver, make_remote, ca):
    hs, [remote, other], _ = await start_with_remotes(make_federating_homeserver, make_remote, 2)
    async with tls_session(hs, ca) as session:
        alice, room_id, bob = await room_with_remote(hs, remote, session)
        carol = f"@carol:{other.server_name}"
        await join_remote_user(hs, other, room_id, "carol")
        event_id = await alice.send(room_id, "read me")
        # `remote` speaks for `other`'s user: everything dropped; its own user's typing is taken.
        await send_edus(hs, remote, [typing_edu(room_id, carol), receipt_edu(room_id, carol, event_id),
                                     presence_edu({"user_id": carol, "presence": "online", "last_active_ago": 0}),
                                     typing_edu(room_id, bob)])
    assert hs.typing.typing_users(room_id) == [bob]
    assert await hs.receipts.get_read_receipts(carol, room_id) == []
    assert await hs.presence._store.get_presence(carol) is None


async def test_edus_from_a_server_with_nobody_in_the_room_are_dropped(make_federating_homeserver, make_remote, ca):
    hs, [remote, outsider], _ = await start_with_remotes(make_federating_homeserver, make_remote, 2)
    async with tls_session(hs, ca) as session:
        alice, room_id, bob = await room_with_remote(hs, remote, session)
        event_id = await alice.send(room_id, "read me")
        dave = f"@dave:{outsider.server_name}"
        await send_edus(hs, outsider, [typing_edu(room_id, dave), receipt_edu(room_id, dave, event_id)])
        # The same EDUs from the server that is in the room are taken.
        await send_edus(hs, remote, [typing_edu(room_id, bob), receipt_edu(room_id, bob, event_id)])
    assert hs.typing.typing_users(room_id) == [bob]
    assert await hs.receipts.get_read_receipts(dave, room_id) == []
    assert [r.event_id for r in await hs.receipts.get_read_receipts(bob, room_id)] == [event_id]


async def test_the_rooms_server_acl_drops_typing_and_receipts_of_a_denied_server(make_federating_homeserver,
                                                                                   make_remote, ca):
    hs, [remote], _ = await start_with_remotes(make_federating_homeserver, make_remote)
    async with tls_session(hs, ca) as session:
        alice, room_id, bob = await room_with_remote(hs, remote, session)
        open_room = await alice.create_room(preset="public_chat")
        await join_remote_user(hs, remote, open_room)
        denied_event = await alice.send(room_id, "in the ACL'd room")
        open_event = await alice.send(open_room, "in the open room")
        await alice.call("PUT", f"/rooms/{room_id}/state/m.room.server_acl/",
                         {"allow": ["*"], "deny": [remote.host], "allow_ip_literals": True})
        receipts = receipt_edu(room_id, bob, denied_event)
        receipts["content"].update(receipt_edu(open_room, bob, open_event)["content"])
        await send_edus(hs, remote, [typing_edu(room_id, bob), typing_edu(open_room, bob), receipts])
    assert hs.typing.typing_users(room_id) == []
    assert hs.typing.typing_users(open_room) == [bob]
    assert await hs.receipts.get_read_receipts(bob, room_id) == []
    assert [r.event_id for r in await hs.receipts.get_read_receipts(bob, open_room)] == [open_event]


async def test_malformed_edus_are_dropped_and_the_transaction_still_succeeds(make_federating_homeserver,
                                                                             make_remote, ca):
    hs, [remote], _ = await start_with_remotes(make_federating_homeserver, make_remote)
    async with tls_session(hs, ca) as session:
        alice, room_id, bob = await room_with_remote(hs, remote, session)
        event_id = await alice.send(room_id, "read me")
        bad_ts = receipt_edu(room_id, bob, event_id, ts="yesterday")
        bad_thread = receipt_edu(room_id, bob, event_id, thread_id="not an event")
        private = receipt_edu(room_id, bob, event_id, receipt_type="m.read.private")
        body = await send_edus(hs, remote, [
            "not an object", {"edu_type": 5, "content": {}}, {"edu_type": "m.typing", "content": []},
            {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": bob, "typing": "yes"}},
            {"edu_type": "m.typing", "content": {"room_id": "nonsense", "user_id": bob, "typing": True}},
            {"edu_type": "m.receipt", "content": {room_id: {"m.read": {bob: {"event_ids": []}}}}},
            bad_ts, bad_thread, private,
            {"edu_type": "m.presence", "content": {"push": "everyone"}},
            presence_edu({"user_id": bob, "presence": "asleep", "last_active_ago": 0}),
            presence_edu({"user_id": bob, "presence": "online", "last_active_ago": -5}),
            {"edu_type": "org.example.unknown", "content": {"anything": True}},
            typing_edu(room_id, bob),  # the one good EDU
        ])
    assert body == {"pdus": {}}
    assert hs.typing.typing_users(room_id) == [bob]
    assert await hs.receipts.get_read_receipts(bob, room_id) == []
    assert await hs.presence._store.get_presence(bob) is None
