"""Long polls of one user's devices share one computation; each device still gets its own answer.

Over HTTP against a real server, on SQLite and PostgreSQL. Several devices of a user waiting at
the same token with the same filter are answered from one shared build (homeserver/sync/handler.py,
`_shared_build`); what only one device may see (to-device messages, the transaction IDs of the
events it sent, key counts) must never leak to the others, and nothing may be dropped from a burst.
"""

from __future__ import annotations

import asyncio

import aiohttp

from tests.accounts.helpers import login
from tests.e2ee.helpers import one_time_keys, signed_key
from tests.support.rooms import User, new_user
from tests.sync.test_sync import bodies, sync

LONG_POLL_MS = 20_000


async def second_device(user: User, name: str) -> User:
    body = await login(user.client, name)
    assert body["device_id"] != user.device_id
    return User(user.client, body)


async def test_a_shared_wake_gives_the_transaction_id_only_to_the_device_that_sent_the_event(client):
    alice = await new_user(client, "alice")
    phone, laptop = await second_device(alice, "alice"), await second_device(alice, "alice")
    room_id = await alice.create_room()
    since = (await sync(alice))["next_batch"]
    waiting = [asyncio.create_task(sync(d, since=since, timeout=LONG_POLL_MS)) for d in (alice, phone, laptop)]
    await asyncio.sleep(0.3)
    await phone.call("PUT", f"/rooms/{room_id}/send/m.room.message/from-phone", {"msgtype": "m.text", "body": "x"})
    replies = await asyncio.wait_for(asyncio.gather(*waiting), 30)
    unsigned = [r["rooms"]["join"][room_id]["timeline"]["events"][-1]["unsigned"] for r in replies]
    assert unsigned[1].get("transaction_id") == "from-phone"
    assert "transaction_id" not in unsigned[0]
    assert "transaction_id" not in unsigned[2]
    # The same after the wake: devices polling at one token at once, the message already there.
    again = await asyncio.gather(*(sync(d, since=since, timeout=LONG_POLL_MS) for d in (alice, phone, laptop)))
    assert [r["rooms"]["join"][room_id]["timeline"]["events"][-1]["unsigned"].get("transaction_id")
            for r in again] == [None, "from-phone", None]


async def test_to_device_messages_reach_only_their_device_when_the_wake_is_shared(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    phone = await second_device(alice, "alice")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    since = (await sync(alice))["next_batch"]
    await bob.call("PUT", "/sendToDevice/m.test/t1",
                   {"messages": {alice.user_id: {phone.device_id: {"secret": "for the phone"}}}})
    await bob.send(room_id, "for everyone")
    first, second = await asyncio.gather(sync(alice, since=since, timeout=LONG_POLL_MS),
                                         sync(phone, since=since, timeout=LONG_POLL_MS))
    assert bodies(first["rooms"]["join"][room_id]) == ["for everyone"]
    assert bodies(second["rooms"]["join"][room_id]) == ["for everyone"]
    assert first["to_device"]["events"] == []
    assert [e["content"] for e in second["to_device"]["events"]] == [{"secret": "for the phone"}]
    # Acknowledged by the next sync: never delivered again.
    later = await sync(phone, since=second["next_batch"])
    assert later["to_device"]["events"] == []


async def test_a_to_device_message_wakes_only_its_device_and_the_others_keep_waiting(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    phone = await second_device(alice, "alice")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    since = (await sync(alice))["next_batch"]
    laptop_poll = asyncio.create_task(sync(alice, since=since, timeout=LONG_POLL_MS))
    phone_poll = asyncio.create_task(sync(phone, since=since, timeout=LONG_POLL_MS))
    await asyncio.sleep(0.3)
    await bob.call("PUT", "/sendToDevice/m.test/t2", {"messages": {alice.user_id: {phone.device_id: {"n": 1}}}})
    phone_reply = await asyncio.wait_for(phone_poll, 30)
    assert [e["content"] for e in phone_reply["to_device"]["events"]] == [{"n": 1}]
    await asyncio.sleep(0.3)
    assert not laptop_poll.done()
    await bob.send(room_id, "now you")
    laptop_reply = await asyncio.wait_for(laptop_poll, 30)
    assert bodies(laptop_reply["rooms"]["join"][room_id]) == ["now you"]
    assert laptop_reply["to_device"]["events"] == []


async def test_devices_with_different_filters_at_one_token_do_not_share_a_response(client):
    alice = await new_user(client, "alice")
    phone = await second_device(alice, "alice")
    room_id = await alice.create_room()
    since = (await sync(alice))["next_batch"]
    for i in range(5):
        await alice.send(room_id, f"m{i}")
    short, full = await asyncio.gather(
        sync(phone, since=since, timeout=LONG_POLL_MS, filter={"room": {"timeline": {"limit": 2}}}),
        sync(alice, since=since, timeout=LONG_POLL_MS))
    short_room, full_room = short["rooms"]["join"][room_id], full["rooms"]["join"][room_id]
    # Each filter's own page: the two-event timeline stops where its room's events no longer fit
    # (a long poll from a fresh token has no gap), the default one holds all five.
    assert bodies(short_room) == ["m0", "m1"]
    assert short_room["timeline"]["limited"] is False
    assert short["next_batch"] != full["next_batch"]
    assert bodies(full_room) == [f"m{i}" for i in range(5)]
    assert full_room["timeline"]["limited"] is False


async def collect_until(device: User, room_id: str, since: str, wanted: set[str]) -> tuple[list[str], int]:
    """What a client following /sync sees of `room_id`, filling every limited gap from its
    prev_batch with /messages as clients do; returns the bodies in order and the limited count."""
    seen: list[str] = []
    limited = 0
    for _ in range(40):
        if wanted <= set(seen):
            break
        reply = await sync(device, since=since, timeout=3000)
        since = reply["next_batch"]
        room = reply["rooms"]["join"].get(room_id)
        if room is None:
            continue
        timeline = room["timeline"]
        page = bodies(room)
        if timeline["limited"]:
            limited += 1
            gap: list[str] = []
            token = timeline["prev_batch"]
            while True:
                older = await device.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=7, **{"from": token})
                chunk = [e["content"].get("body") for e in older["chunk"] if e["type"] == "m.room.message"]
                fresh = [b for b in chunk if b not in seen]
                gap[:0] = list(reversed(fresh))
                if len(fresh) < len(chunk) or not older.get("end") or not older["chunk"]:
                    break
                token = older["end"]
            page = gap + page
        seen.extend(page)
    return seen, limited


async def test_a_burst_larger_than_the_timeline_limit_reaches_every_device_whole_in_pages(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    tablet = await second_device(bob, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    since = (await sync(bob))["next_batch"]
    polls = [asyncio.create_task(sync(d, since=since, timeout=LONG_POLL_MS)) for d in (bob, tablet)]
    await asyncio.sleep(0.3)
    burst = [f"burst {i}" for i in range(25)]
    for body in burst:  # one after another: their order in the room is the order sent
        await alice.send(room_id, body)
    first = await asyncio.wait_for(asyncio.gather(*polls), 30)
    for device, reply in zip((bob, tablet), first, strict=True):
        room = reply["rooms"]["join"][room_id]
        # The long poll returned early with what had arrived; the polls that follow at once carry
        # on from its token in pages of at most the timeline limit, with no gap to fill.
        seen, limited = await collect_until(device, room_id, reply["next_batch"], set(burst) - set(bodies(room)))
        assert bodies(room) + seen == burst, f"{device.device_id} saw {bodies(room) + seen}"
        assert limited == 0


async def burst_since_a_token(client) -> tuple[User, User, str, str, list[str]]:
    """Bob on two devices in Alice's room, a token of his, then a burst of 15 messages from Alice:
    (bob, his tablet, the token, the room, the burst's bodies)."""
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    tablet = await second_device(bob, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    since = (await sync(bob))["next_batch"]
    burst = [f"b{i}" for i in range(15)]
    for body in burst:
        await alice.send(room_id, body)
    return bob, tablet, since, room_id, burst


async def test_a_long_poll_from_a_token_handed_out_lately_pages_a_burst_without_a_gap(client):
    bob, tablet, since, room_id, burst = await burst_since_a_token(client)
    replies = await asyncio.gather(*(sync(d, since=since, timeout=LONG_POLL_MS) for d in (bob, tablet)))
    for device, reply in zip((bob, tablet), replies, strict=True):
        timeline = reply["rooms"]["join"][room_id]["timeline"]
        assert timeline["limited"] is False
        assert bodies(reply["rooms"]["join"][room_id]) == burst[:10]
        rest = await sync(device, since=reply["next_batch"], timeout=LONG_POLL_MS)
        assert bodies(rest["rooms"]["join"][room_id]) == burst[10:]
        assert rest["rooms"]["join"][room_id]["timeline"]["limited"] is False


async def test_an_incremental_sync_after_a_burst_is_limited_to_the_newest_events(client):
    """Without a timeout (a client catching up, not a connected one) a burst is a gap, as Synapse
    answers: the newest events, `limited`, and a prev_batch that reaches the rest."""
    bob, tablet, since, room_id, burst = await burst_since_a_token(client)
    replies = await asyncio.gather(*(sync(d, since=since) for d in (bob, tablet)))
    for device, reply in zip((bob, tablet), replies, strict=True):
        timeline = reply["rooms"]["join"][room_id]["timeline"]
        assert timeline["limited"] is True
        assert bodies(reply["rooms"]["join"][room_id]) == burst[-10:]
        older = await device.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=5,
                                  **{"from": timeline["prev_batch"]})
        assert [e["content"]["body"] for e in older["chunk"]] == list(reversed(burst[:5]))


async def test_a_long_poll_from_an_old_token_is_limited_to_the_newest_events(make_homeserver):
    """A token older than `sync.gapless_window_ms` (here: the window is off) is a client that was
    away: its long poll gets the newest events with a gap, not every page since."""
    hs = await make_homeserver(sync={"gapless_window_ms": 0})
    async with aiohttp.ClientSession(hs.base_url("client")) as client:
        bob, _, since, room_id, burst = await burst_since_a_token(client)
        reply = await sync(bob, since=since, timeout=LONG_POLL_MS)
        assert reply["rooms"]["join"][room_id]["timeline"]["limited"] is True
        assert bodies(reply["rooms"]["join"][room_id]) == burst[-10:]


async def test_each_device_of_a_shared_wake_gets_its_own_one_time_key_counts_and_fallback_types(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    phone = await second_device(alice, "alice")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await alice.call("POST", "/keys/upload", {"one_time_keys": one_time_keys("a", 3)})
    await phone.call("POST", "/keys/upload", {"one_time_keys": one_time_keys("p", 5),
                                              "fallback_keys": {"signed_curve25519:f": signed_key("f")}})
    since = (await sync(alice))["next_batch"]
    polls = [asyncio.create_task(sync(d, since=since, timeout=LONG_POLL_MS)) for d in (alice, phone)]
    await asyncio.sleep(0.3)
    await bob.send(room_id, "wake up")
    laptop_reply, phone_reply = await asyncio.wait_for(asyncio.gather(*polls), 30)
    assert laptop_reply["device_one_time_keys_count"] == {"signed_curve25519": 3}
    assert laptop_reply["device_unused_fallback_key_types"] == []
    assert phone_reply["device_one_time_keys_count"] == {"signed_curve25519": 5}
    assert phone_reply["device_unused_fallback_key_types"] == ["signed_curve25519"]
    # A claim right before a sync shows in that sync's count.
    await bob.call("POST", "/keys/claim", {"one_time_keys": {alice.user_id: {phone.device_id: "signed_curve25519"}}})
    after_claim = await sync(phone, since=phone_reply["next_batch"])
    assert after_claim["device_one_time_keys_count"] == {"signed_curve25519": 4}


async def test_a_long_poll_that_times_out_answers_at_its_own_token_with_the_devices_key_counts(client):
    alice = await new_user(client, "alice")
    phone = await second_device(alice, "alice")
    await alice.create_room()
    await phone.call("POST", "/keys/upload", {"one_time_keys": one_time_keys("p", 2)})
    since = (await sync(phone))["next_batch"]
    first, second = await asyncio.gather(sync(alice, since=since, timeout=300), sync(phone, since=since, timeout=300))
    for reply in (first, second):
        assert reply["next_batch"] == since
        assert reply["rooms"] == {"join": {}, "invite": {}, "leave": {}, "knock": {}}
        assert reply["to_device"]["events"] == []
    assert first["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert second["device_one_time_keys_count"] == {"signed_curve25519": 2}


async def test_pages_a_filter_keeps_nothing_of_are_answered_at_once_until_the_event_it_wants(client):
    bob, _, since, room_id, _ = await burst_since_a_token(client)
    marker = await bob.call("PUT", f"/rooms/{room_id}/send/org.example.marker/m1", {"after": "the burst"})
    only_markers = {"room": {"timeline": {"limit": 2, "types": ["org.example.marker"]}}}
    for _ in range(10):
        # Each page of two raw events holds no marker until the last: answered at once, not after
        # the poll's timeout (the wait_for bound is well under it).
        reply = await asyncio.wait_for(sync(bob, since=since, timeout=LONG_POLL_MS, filter=only_markers), 10)
        assert reply["next_batch"] != since
        since = reply["next_batch"]
        room = reply["rooms"]["join"].get(room_id)
        events = room["timeline"]["events"] if room is not None else []
        if any(e["event_id"] == marker["event_id"] for e in events):
            break
    else:
        raise AssertionError("the marker never arrived")


async def test_a_long_poll_with_a_timeline_limit_of_zero_moves_on(client):
    bob, _, since, _, _ = await burst_since_a_token(client)
    reply = await sync(bob, since=since, timeout=LONG_POLL_MS, filter={"room": {"timeline": {"limit": 0}}})
    assert reply["next_batch"] != since


async def test_long_polls_between_membership_changes_see_each_invite_join_and_kick(client):
    # The user's memberships are remembered between wakes while no membership of theirs moves; each
    # move must show in the next long poll.
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    phone = await second_device(alice, "alice")
    lobby = await bob.create_room(preset="public_chat")
    await alice.join(lobby)
    since = (await sync(alice))["next_batch"]
    for n in range(2):  # wakes by messages alone: memberships unchanged
        await bob.send(lobby, f"chat {n}")
        replies = await asyncio.gather(sync(alice, since=since, timeout=LONG_POLL_MS),
                                       sync(phone, since=since, timeout=LONG_POLL_MS))
        assert [bodies(r["rooms"]["join"][lobby]) for r in replies] == [[f"chat {n}"]] * 2
        since = replies[0]["next_batch"]
    other = await bob.create_room()
    await bob.call("POST", f"/rooms/{other}/invite", {"user_id": alice.user_id})
    invited = await sync(alice, since=since, timeout=LONG_POLL_MS)
    assert other in invited["rooms"]["invite"]
    await alice.join(other)
    joined = await sync(alice, since=invited["next_batch"], timeout=LONG_POLL_MS)
    assert other in joined["rooms"]["join"]
    await bob.send(other, "welcome")
    news = await sync(phone, since=joined["next_batch"], timeout=LONG_POLL_MS)
    assert bodies(news["rooms"]["join"][other]) == ["welcome"]
    await bob.call("POST", f"/rooms/{lobby}/kick", {"user_id": alice.user_id})
    kicked = await sync(alice, since=news["next_batch"], timeout=LONG_POLL_MS)
    assert lobby in kicked["rooms"]["leave"]
    await bob.send(lobby, "after the kick")
    await bob.send(other, "still here")
    later = await sync(alice, since=kicked["next_batch"], timeout=LONG_POLL_MS)
    assert lobby not in later["rooms"]["join"] and lobby not in later["rooms"]["leave"]
    assert bodies(later["rooms"]["join"][other]) == ["still here"]
