"""Unread notification counts through /sync, receipts, redactions and GET /notifications."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

from tests.push.helpers import read, room_counts, unread
from tests.support.rooms import new_user


async def group(client, *names: str):
    """Users (the first creates a public room, the others join) and the room ID."""
    users = [await new_user(client, name) for name in names]
    room_id = await users[0].create_room(preset="public_chat")
    for user in users[1:]:
        await user.join(room_id)
    return users, room_id


async def test_a_message_counts_for_the_other_members_but_not_the_sender(client):
    (alice, bob, carol), room_id = await group(client, "alice", "bob", "carol")
    await alice.send(room_id, "hello all")
    assert await unread(bob, room_id) == (1, 0)
    assert await unread(carol, room_id) == (1, 0)
    assert await unread(alice, room_id) == (0, 0)


async def test_an_intentional_mention_highlights_only_the_mentioned_user(client):
    (alice, bob, carol), room_id = await group(client, "alice", "bob", "carol")
    await alice.send(room_id, "hey Bob", **{"m.mentions": {"user_ids": [bob.user_id]}})
    assert await unread(bob, room_id) == (1, 1)
    assert await unread(carol, room_id) == (1, 0)


async def test_a_room_mention_by_the_creator_highlights_everyone(client):
    (alice, bob, carol), room_id = await group(client, "alice", "bob", "carol")
    await alice.send(room_id, "@room lunch", **{"m.mentions": {"room": True}})
    assert await unread(bob, room_id) == (1, 1)
    # Bob has the default power level 0, below the `room` notification level.
    await bob.send(room_id, "@room me too", **{"m.mentions": {"room": True}})
    assert await unread(carol, room_id) == (2, 1)


async def test_a_keyword_rule_highlights_matching_messages(client):
    (alice, bob), room_id = await group(client, "alice", "bob")
    await alice.send(room_id, "warm up")  # a DM-sized room: still a plain notification
    await bob.call("PUT", "/pushrules/global/content/cake", {
        "pattern": "cake", "actions": ["notify", {"set_tweak": "highlight"}]})
    await alice.send(room_id, "there is Cake in the kitchen")
    await alice.send(room_id, "pancakes do not count")
    assert await unread(bob, room_id) == (3, 1)


async def test_a_display_name_in_the_body_highlights(client):
    (alice, bob, carol), room_id = await group(client, "alice", "bob", "carol")
    await bob.call("PUT", f"/profile/{quote(bob.user_id)}/displayname", {"displayname": "Bobby Tables"})
    await alice.send(room_id, "ask bobby tables, he knows")
    assert await unread(bob, room_id) == (1, 1)


async def test_dm_and_encrypted_events_count(client):
    alice = await new_user(client, "alice")
    bob = await new_user(client, "bob")
    room_id = await alice.create_room(preset="trusted_private_chat", invite=[bob.user_id], is_direct=True)
    await bob.join(room_id)
    await alice.send(room_id, "psst")
    await alice.call("PUT", f"/rooms/{quote(room_id)}/send/m.room.encrypted/enc1",
                     {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AAAA", "session_id": "s",
                      "sender_key": "k", "device_id": "D"})
    # The invite notified Bob too (.m.rule.invite_for_me) and is listed, but once he joined it no
    # longer counts as unread.
    assert await unread(bob, room_id) == (2, 0)
    listed = await bob.call("GET", "/notifications")
    assert [n["event"]["type"] for n in listed["notifications"]] == [
        "m.room.encrypted", "m.room.message", "m.room.member"]


async def test_notices_reactions_and_edits_do_not_count(client):
    (alice, bob, carol), room_id = await group(client, "alice", "bob", "carol")
    target = await alice.send(room_id, "original")
    await alice.send(room_id, "bot says hi", msgtype="m.notice")
    await carol.call("PUT", f"/rooms/{quote(room_id)}/send/m.reaction/r1",
                     {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": "👍"}})
    await alice.send(room_id, "* edited", **{"m.new_content": {"msgtype": "m.text", "body": "edited"},
                                             "m.relates_to": {"rel_type": "m.replace", "event_id": target}})
    assert await unread(bob, room_id) == (1, 0)


async def test_a_read_receipt_resets_the_counts_up_to_its_event(client):
    (alice, bob, carol), room_id = await group(client, "alice", "bob", "carol")
    first = await alice.send(room_id, "one")
    await alice.send(room_id, "two", **{"m.mentions": {"user_ids": [bob.user_id]}})
    last = await alice.send(room_id, "three")
    assert await unread(bob, room_id) == (3, 1)
    await read(bob, room_id, first)
    assert await unread(bob, room_id) == (2, 1)
    await read(bob, room_id, last, receipt_type="m.read.private")
    assert await unread(bob, room_id) == (0, 0)
    # An older public receipt after the private one does not bring counts back.
    await read(bob, room_id, first)
    assert await unread(bob, room_id) == (0, 0)
    await alice.send(room_id, "four")
    assert await unread(bob, room_id) == (1, 0)


async def test_thread_counts_are_separate_when_the_filter_asks(client):
    (alice, bob, carol), room_id = await group(client, "alice", "bob", "carol")
    root = await alice.send(room_id, "thread root")
    in_thread = {"m.relates_to": {"rel_type": "m.thread", "event_id": root}}
    reply = await alice.send(room_id, "reply 1", **in_thread)
    await alice.send(room_id, "reply 2 for bob", **in_thread, **{"m.mentions": {"user_ids": [bob.user_id]}})
    await alice.send(room_id, "main timeline")
    split = await room_counts(bob, room_id, threads=True)
    assert split["unread_notifications"] == {"notification_count": 2, "highlight_count": 0}
    assert split["unread_thread_notifications"] == {root: {"notification_count": 2, "highlight_count": 1}}
    # Without the opt-in, one total and no thread section.
    folded = await room_counts(bob, room_id)
    assert folded == {"unread_notifications": {"notification_count": 4, "highlight_count": 1}}
    # A receipt in the thread reads only the thread, up to its event.
    await read(bob, room_id, reply, thread_id=root)
    split = await room_counts(bob, room_id, threads=True)
    assert split["unread_notifications"]["notification_count"] == 2
    assert split["unread_thread_notifications"] == {root: {"notification_count": 1, "highlight_count": 1}}
    # A main-timeline receipt on the root reads the main timeline up to there, not the thread.
    await read(bob, room_id, root, thread_id="main")
    split = await room_counts(bob, room_id, threads=True)
    assert split["unread_notifications"]["notification_count"] == 1
    assert split["unread_thread_notifications"][root]["notification_count"] == 1


async def test_an_unthreaded_receipt_reads_every_thread(client):
    (alice, bob, carol), room_id = await group(client, "alice", "bob", "carol")
    root = await alice.send(room_id, "root")
    last = await alice.send(room_id, "in thread", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    await read(bob, room_id, last)
    assert await room_counts(bob, room_id, threads=True) == {
        "unread_notifications": {"notification_count": 0, "highlight_count": 0},
        "unread_thread_notifications": {}}


async def test_redacting_a_counted_event_uncounts_it(client):
    (alice, bob, carol), room_id = await group(client, "alice", "bob", "carol")
    await alice.send(room_id, "kept")
    mention = await alice.send(room_id, "oops bob", **{"m.mentions": {"user_ids": [bob.user_id]}})
    assert await unread(bob, room_id) == (2, 1)
    await alice.call("PUT", f"/rooms/{quote(room_id)}/redact/{quote(mention)}/red1", {})
    assert await unread(bob, room_id) == (1, 0)
    listed = await bob.call("GET", "/notifications")
    assert [n["event"]["content"]["body"] for n in listed["notifications"]] == ["kept"]


async def test_a_rule_change_applies_to_the_next_message(client):
    (alice, bob, carol), room_id = await group(client, "alice", "bob", "carol")
    await alice.send(room_id, "before")
    await bob.call("PUT", f"/pushrules/global/room/{quote(room_id)}", {"actions": []})
    await alice.send(room_id, "muted")
    assert await unread(bob, room_id) == (1, 0)
    await bob.call("DELETE", f"/pushrules/global/room/{quote(room_id)}")
    await alice.send(room_id, "unmuted")
    assert await unread(bob, room_id) == (2, 0)


async def test_an_invite_notifies_the_invitee(client):
    alice = await new_user(client, "alice")
    bob = await new_user(client, "bob")
    room_id = await alice.create_room()
    await alice.call("POST", f"/rooms/{quote(room_id)}/invite", {"user_id": bob.user_id})
    # /notifications does not wait for evaluation: poll (briefly) until the invite is listed.
    for _ in range(50):
        listed = await bob.call("GET", "/notifications")
        if listed["notifications"]:
            break
        await asyncio.sleep(0.1)
    assert [n["event"]["type"] for n in listed["notifications"]] == ["m.room.member"]
    assert listed["notifications"][0]["room_id"] == room_id


async def test_a_waiting_sync_returns_the_new_count(client):
    (alice, bob, carol), room_id = await group(client, "alice", "bob", "carol")
    since = (await bob.call("GET", "/sync", filter=json.dumps({"room": {"timeline": {"limit": 1}}})))["next_batch"]
    waiting = asyncio.create_task(bob.call("GET", "/sync", since=since, timeout=10000))
    await asyncio.sleep(0.2)
    await alice.send(room_id, "wake up", **{"m.mentions": {"user_ids": [bob.user_id]}})
    body = await asyncio.wait_for(waiting, 10)
    assert body["rooms"]["join"][room_id]["unread_notifications"] == {"notification_count": 1,
                                                                       "highlight_count": 1}


async def test_notifications_pages_newest_first_and_filters_highlights(client):
    (alice, bob, carol), room_id = await group(client, "alice", "bob", "carol")
    sent = [await alice.send(room_id, f"m{i}", **({"m.mentions": {"user_ids": [bob.user_id]}} if i % 2 else {}))
            for i in range(5)]
    await read(bob, room_id, sent[1])
    page = await bob.call("GET", "/notifications", limit=3)
    assert [n["event"]["event_id"] for n in page["notifications"]] == sent[:1:-1]
    assert all(not n["read"] for n in page["notifications"])
    rest = await bob.call("GET", "/notifications", limit=3, **{"from": page["next_token"]})
    assert [n["event"]["event_id"] for n in rest["notifications"]] == [sent[1], sent[0]]
    assert [n["read"] for n in rest["notifications"]] == [True, True]
    assert "next_token" not in rest
    highlights = await bob.call("GET", "/notifications", only="highlight")
    assert [n["event"]["event_id"] for n in highlights["notifications"]] == [sent[3], sent[1]]
    first = highlights["notifications"][0]
    assert first["room_id"] == room_id and isinstance(first["ts"], int)
    assert {"set_tweak": "highlight"} in first["actions"]
    assert (await alice.call("GET", "/notifications"))["notifications"] == []


async def test_notifications_rejects_a_malformed_token(client):
    bob = await new_user(client, "bob")
    error = await bob.call("GET", "/notifications", expect=400, **{"from": "nope"})
    assert error["errcode"] == "M_INVALID_PARAM"


async def test_messages_from_an_ignored_user_do_not_count(client):
    (alice, bob, carol), room_id = await group(client, "alice", "bob", "carol")
    await alice.send(room_id, "before ignoring")
    await bob.call("PUT", f"/user/{quote(bob.user_id)}/account_data/m.ignored_user_list",
                   {"ignored_users": {alice.user_id: {}}})
    await alice.send(room_id, "ignored", **{"m.mentions": {"user_ids": [bob.user_id]}})
    await carol.send(room_id, "from carol")
    assert await unread(bob, room_id) == (2, 0)
    await bob.call("PUT", f"/user/{quote(bob.user_id)}/account_data/m.ignored_user_list", {"ignored_users": {}})
    await alice.send(room_id, "heard again")
    assert await unread(bob, room_id) == (3, 0)


async def test_a_plain_message_a_mention_and_a_notice_count_two_after_an_invite(client):
    alice = await new_user(client, "alice")
    bob = await new_user(client, "bob")
    room_id = await alice.create_room(preset="private_chat", invite=[bob.user_id])
    await bob.join(room_id)
    await alice.send(room_id, "plain")
    await alice.send(room_id, "bob!", **{"m.mentions": {"user_ids": [bob.user_id]}})
    await alice.send(room_id, "a bot speaks", msgtype="m.notice")
    assert await unread(bob, room_id) == (2, 1)
    listed = await bob.call("GET", "/notifications")
    assert [n["event"]["type"] for n in listed["notifications"]] == ["m.room.message", "m.room.message",
                                                                    "m.room.member"]
