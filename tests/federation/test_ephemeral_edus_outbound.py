"""Our users' typing, public read receipts and presence go out as EDUs to the servers that share
the room (presence: a room) with them, batched for presence; private receipts and other servers'
users' updates never do."""

from __future__ import annotations

from homeserver.streams.updates import PresenceChanged
from tests.federation.ephemeral_helpers import (
    edus_of,
    receipt_edu,
    send_edus,
    start_with_remotes,
    wait_for_edus,
)
from tests.federation.helpers import tls_session
from tests.federation.remote_rooms import join_remote_user, local_user


def pushes_with(edus, **fields):
    """The `push` entries of these m.presence EDUs that have all of `fields`."""
    return [p for edu in edus for p in edu["push"] if all(p.get(k) == v for k, v in fields.items())]


async def test_our_users_typing_reaches_the_rooms_servers_as_start_then_stop(make_federating_homeserver,
                                                                            make_remote, ca):
    hs, [remote], [inbox] = await start_with_remotes(make_federating_homeserver, make_remote)
    async with tls_session(hs, ca) as session:
        alice = await local_user(session, "alice")
        room_id = await alice.create_room(preset="public_chat")
        await join_remote_user(hs, remote, room_id)
        await alice.call("PUT", f"/rooms/{room_id}/typing/{alice.user_id}", {"typing": True, "timeout": 30000})
        await alice.call("PUT", f"/rooms/{room_id}/typing/{alice.user_id}", {"typing": False})
        typing = await wait_for_edus(inbox, "m.typing", lambda edus: len(edus) >= 2)
    assert typing == [{"room_id": room_id, "user_id": alice.user_id, "typing": True},
                      {"room_id": room_id, "user_id": alice.user_id, "typing": False}]


async def test_a_user_still_typing_is_renewed_to_other_servers(make_federating_homeserver, make_remote, ca):
    hs, [remote], [inbox] = await start_with_remotes(make_federating_homeserver, make_remote)
    hs.federation.ephemeral_sender._typing_renew_s = 0.2
    async with tls_session(hs, ca) as session:
        alice = await local_user(session, "alice")
        room_id = await alice.create_room(preset="public_chat")
        await join_remote_user(hs, remote, room_id)
        await alice.call("PUT", f"/rooms/{room_id}/typing/{alice.user_id}", {"typing": True, "timeout": 60000})
        renewed = await wait_for_edus(inbox, "m.typing", lambda edus: len(edus) >= 3)
    assert all(edu == {"room_id": room_id, "user_id": alice.user_id, "typing": True} for edu in renewed)


async def test_our_public_threaded_receipt_goes_out_and_private_ones_and_remote_ones_do_not(
        make_federating_homeserver, make_remote, ca):
    hs, [remote], [inbox] = await start_with_remotes(make_federating_homeserver, make_remote)
    async with tls_session(hs, ca) as session:
        alice = await local_user(session, "alice")
        room_id = await alice.create_room(preset="public_chat")
        await join_remote_user(hs, remote, room_id)
        bob = f"@bob:{remote.server_name}"
        first = await alice.send(room_id, "first")
        root = await alice.send(room_id, "thread root")
        # A remote user's receipt and our user's private one come first: neither may be sent.
        await send_edus(hs, remote, [receipt_edu(room_id, bob, first)])
        await alice.call("POST", f"/rooms/{room_id}/receipt/m.read.private/{first}", {})
        await alice.call("POST", f"/rooms/{room_id}/receipt/m.read/{root}", {"thread_id": "main"})
        receipts = await wait_for_edus(inbox, "m.receipt", lambda edus: len(edus) >= 1)
    [content] = receipts
    read = content[room_id]["m.read"][alice.user_id]
    assert read["event_ids"] == [root] and read["data"]["thread_id"] == "main"
    assert isinstance(read["data"]["ts"], int)
    assert list(content) == [room_id] and list(content[room_id]) == ["m.read"]


async def test_presence_goes_only_to_servers_sharing_a_room_with_the_user(make_federating_homeserver,
                                                                         make_remote, ca):
    hs, [remote, other], [inbox, other_inbox] = await start_with_remotes(make_federating_homeserver, make_remote, 2)
    async with tls_session(hs, ca) as session:
        alice = await local_user(session, "alice")
        carol = await local_user(session, "carol")
        room_id = await alice.create_room(preset="public_chat")
        await join_remote_user(hs, remote, room_id)
        carols_room = await carol.create_room(preset="public_chat")
        await join_remote_user(hs, other, carols_room, "dave")
        await alice.call("PUT", f"/presence/{alice.user_id}/status", {"presence": "online", "status_msg": "hoi"})
        await wait_for_edus(inbox, "m.presence", lambda edus: bool(pushes_with(edus, status_msg="hoi")))
        # carol's change is queued for `other` after alice's: it arriving shows alice's never was.
        await carol.call("PUT", f"/presence/{carol.user_id}/status", {"presence": "unavailable"})
        await wait_for_edus(other_inbox, "m.presence", lambda edus: bool(pushes_with(edus, presence="unavailable")))
    [entry] = pushes_with(edus_of(inbox, "m.presence"), status_msg="hoi")
    assert entry["user_id"] == alice.user_id and entry["presence"] == "online"
    assert isinstance(entry["last_active_ago"], int) and entry["currently_active"] is True
    assert {p["user_id"] for p in pushes_with(edus_of(other_inbox, "m.presence"))} == {carol.user_id}
    assert {p["user_id"] for p in pushes_with(edus_of(inbox, "m.presence"))} == {alice.user_id}


async def test_presence_changes_close_together_go_out_in_one_edu(make_federating_homeserver, make_remote, ca):
    hs, [remote], [inbox] = await start_with_remotes(make_federating_homeserver, make_remote)
    async with tls_session(hs, ca) as session:
        alice = await local_user(session, "alice")
        carol = await local_user(session, "carol")
        room_id = await alice.create_room(preset="public_chat")
        await carol.join(room_id)
        await join_remote_user(hs, remote, room_id)
        sender = hs.federation.ephemeral_sender
        # Both updates are collected before the batch is sent.
        sender.on_presence(PresenceChanged(alice.user_id, {"presence": "online", "last_active_ago": 10,
                                                           "currently_active": True}))
        sender.on_presence(PresenceChanged(carol.user_id, {"presence": "unavailable", "last_active_ago": 20}))
        # (the remote's join brought it our members' presence first)
        edus = await wait_for_edus(inbox, "m.presence", lambda edus: bool(pushes_with(edus, last_active_ago=10)))
    [edu] = [edu for edu in edus if pushes_with([edu], last_active_ago=10)]
    assert edu["push"] == [
        {"user_id": alice.user_id, "presence": "online", "last_active_ago": 10, "currently_active": True},
        {"user_id": carol.user_id, "presence": "unavailable", "last_active_ago": 20, "currently_active": False},
    ]


async def test_a_server_joining_a_room_gets_the_presence_of_our_members(make_federating_homeserver,
                                                                       make_remote, ca):
    hs, [remote], [inbox] = await start_with_remotes(make_federating_homeserver, make_remote)
    async with tls_session(hs, ca) as session:
        alice = await local_user(session, "alice")
        carol = await local_user(session, "carol")
        room_id = await alice.create_room(preset="public_chat")
        await carol.join(room_id)
        await alice.call("PUT", f"/presence/{alice.user_id}/status", {"presence": "online", "status_msg": "hier"})
        await carol.call("PUT", f"/presence/{carol.user_id}/status", {"presence": "offline"})
        await join_remote_user(hs, remote, room_id)
        [edu] = await wait_for_edus(inbox, "m.presence", lambda edus: len(edus) >= 1)
    # Offline members are left out.
    assert [(p["user_id"], p["presence"], p.get("status_msg")) for p in edu["push"]] == [
        (alice.user_id, "online", "hier")]
