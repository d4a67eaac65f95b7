"""Relations and threads: /relations, /threads and bundled aggregations in unsigned.m.relations."""

from __future__ import annotations

from typing import Any

from tests.support.rooms import User, new_user

V1 = "/_matrix/client/v1"


async def _send(user: User, room_id: str, content: dict[str, Any], event_type: str = "m.room.message") -> str:
    return await user.send(room_id, content.pop("body", "x"), event_type=event_type, **content)


def _thread(root: str) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": "m.thread", "event_id": root}}


def _edit(target: str, body: str) -> dict[str, Any]:
    return {"body": f"* {body}", "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": target}}


async def _event(user: User, room_id: str, event_id: str) -> dict[str, Any]:
    return await user.call("GET", f"/rooms/{room_id}/event/{event_id}")


async def test_the_latest_edit_by_the_original_sender_is_bundled(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    original = await alice.send(room_id, "helo")
    await _send(alice, room_id, _edit(original, "hello"))
    latest = await _send(alice, room_id, _edit(original, "hello!"))
    await _send(bob, room_id, _edit(original, "bob may not edit this"))
    event = await _event(alice, room_id, original)
    replace = event["unsigned"]["m.relations"]["m.replace"]
    assert replace["event_id"] == latest
    assert replace["content"]["m.new_content"]["body"] == "hello!"
    assert event["content"]["body"] == "helo", "the original content is served unchanged since v1.7"


async def test_a_redacted_edit_drops_out_of_the_bundle(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    original = await alice.send(room_id, "a")
    first = await _send(alice, room_id, _edit(original, "b"))
    second = await _send(alice, room_id, _edit(original, "c"))
    await alice.call("PUT", f"/rooms/{room_id}/redact/{second}/r1", {})
    event = await _event(alice, room_id, original)
    assert event["unsigned"]["m.relations"]["m.replace"]["event_id"] == first
    await alice.call("PUT", f"/rooms/{room_id}/redact/{first}/r2", {})
    event = await _event(alice, room_id, original)
    assert "m.relations" not in event.get("unsigned", {})


async def test_reactions_are_listed_by_relation_type_but_not_bundled(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    target = await alice.send(room_id, "vote")
    reactions = []
    for user, key in ((alice, "👍"), (bob, "👍"), (bob, "🎉")):
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}
        reactions.append((await user.call("PUT", f"/rooms/{room_id}/send/m.reaction/r{key}{user.user_id}",
                                          content))["event_id"])
    page = await alice.call("GET", f"{V1}/rooms/{room_id}/relations/{target}/m.annotation/m.reaction")
    assert [e["event_id"] for e in page["chunk"]] == list(reversed(reactions))
    assert "next_batch" not in page
    event = await _event(alice, room_id, target)
    assert "m.relations" not in event.get("unsigned", {})
    none = await alice.call("GET", f"{V1}/rooms/{room_id}/relations/{target}/m.annotation/m.room.message")
    assert none["chunk"] == []


async def test_relations_paginate_both_ways_with_next_batch(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    root = await alice.send(room_id, "root")
    replies = [await _send(alice, room_id, {"body": f"r{i}", **_thread(root)}) for i in range(5)]
    seen: list[str] = []
    token = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2}
        if token:
            params["from"] = token
        page = await alice.call("GET", f"{V1}/rooms/{room_id}/relations/{root}", **params)
        seen += [e["event_id"] for e in page["chunk"]]
        token = page.get("next_batch")
        if token is None:
            break
    assert seen == list(reversed(replies))
    forwards = await alice.call("GET", f"{V1}/rooms/{room_id}/relations/{root}/m.thread", dir="f", limit=10)
    assert [e["event_id"] for e in forwards["chunk"]] == replies


async def test_thread_summaries_are_bundled_on_the_root(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    root = await alice.send(room_id, "topic")
    await _send(bob, room_id, {"body": "one", **_thread(root)})
    last = await _send(bob, room_id, {"body": "two", **_thread(root)})
    edit = await _send(bob, room_id, _edit(last, "two, edited"))
    summary = (await _event(alice, room_id, root))["unsigned"]["m.relations"]["m.thread"]
    assert summary["count"] == 2
    assert summary["latest_event"]["event_id"] == last
    assert summary["latest_event"]["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit
    assert summary["current_user_participated"] is True  # alice wrote the root
    bob_view = (await _event(bob, room_id, root))["unsigned"]["m.relations"]["m.thread"]
    assert bob_view["current_user_participated"] is True
    carol = await new_user(client, "carol")
    await carol.join(room_id)
    carol_view = (await _event(carol, room_id, root))["unsigned"]["m.relations"]["m.thread"]
    assert carol_view["current_user_participated"] is False


async def test_references_are_bundled_as_a_chunk_of_ids(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    target = await alice.send(room_id, "poll")
    ref = await _send(alice, room_id, {"body": "answer", "m.relates_to": {"rel_type": "m.reference",
                                                                          "event_id": target}})
    event = await _event(alice, room_id, target)
    assert event["unsigned"]["m.relations"]["m.reference"] == {"chunk": [{"event_id": ref}]}


async def test_threads_are_listed_by_latest_activity_and_participation(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    first = await alice.send(room_id, "first thread")
    second = await bob.send(room_id, "second thread")
    await _send(bob, room_id, {"body": "in second", **_thread(second)})
    await _send(alice, room_id, {"body": "in first", **_thread(first)})
    listed = await alice.call("GET", f"{V1}/rooms/{room_id}/threads")
    assert [e["event_id"] for e in listed["chunk"]] == [first, second]
    assert listed["chunk"][0]["unsigned"]["m.relations"]["m.thread"]["count"] == 1
    page = await alice.call("GET", f"{V1}/rooms/{room_id}/threads", limit=1)
    assert [e["event_id"] for e in page["chunk"]] == [first]
    rest = await alice.call("GET", f"{V1}/rooms/{room_id}/threads", limit=1, **{"from": page["next_batch"]})
    assert [e["event_id"] for e in rest["chunk"]] == [second]
    mine = await alice.call("GET", f"{V1}/rooms/{room_id}/threads", include="participated")
    assert [e["event_id"] for e in mine["chunk"]] == [first]
    carol = await new_user(client, "carol")
    await carol.join(room_id)
    assert (await carol.call("GET", f"{V1}/rooms/{room_id}/threads", include="participated"))["chunk"] == []


async def test_recurse_follows_relations_of_relations(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    root = await alice.send(room_id, "root")
    reply = await _send(alice, room_id, {"body": "reply", **_thread(root)})
    edit = await _send(alice, room_id, _edit(reply, "reply, edited"))
    direct = await alice.call("GET", f"{V1}/rooms/{room_id}/relations/{root}")
    assert [e["event_id"] for e in direct["chunk"]] == [reply] and "recursion_depth" not in direct
    deep = await alice.call("GET", f"{V1}/rooms/{room_id}/relations/{root}", recurse="true")
    assert [e["event_id"] for e in deep["chunk"]] == [edit, reply]
    assert deep["recursion_depth"] >= 3
    edits_only = await alice.call("GET", f"{V1}/rooms/{room_id}/relations/{root}/m.replace", recurse="true")
    assert [e["event_id"] for e in edits_only["chunk"]] == [edit]


async def test_relations_of_an_event_the_user_cannot_see_are_404(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(
        preset="public_chat",
        initial_state=[{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}])
    hidden = await alice.send(room_id, "before bob")
    await bob.join(room_id)
    body = await bob.call("GET", f"{V1}/rooms/{room_id}/relations/{hidden}", expect=404)
    assert body["errcode"] == "M_NOT_FOUND"
    outsider = await new_user(client, "eve")
    denied = await outsider.call("GET", f"{V1}/rooms/{room_id}/relations/{hidden}", expect=403)
    assert denied["errcode"] == "M_FORBIDDEN"


async def test_messages_carry_bundled_aggregations(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    original = await alice.send(room_id, "typo")
    edit = await _send(alice, room_id, _edit(original, "fixed"))
    page = await alice.call("GET", f"/rooms/{room_id}/messages", dir="b", limit=5)
    by_id = {e["event_id"]: e for e in page["chunk"]}
    assert by_id[original]["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit
    assert "m.relations" not in by_id[edit].get("unsigned", {})


async def test_an_initial_sync_timeline_bundles_edits_threads_and_references(client):
    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    edited = await alice.send(room_id, "helo")
    root = await alice.send(room_id, "thread root")
    cited = await alice.send(room_id, "cited")
    plain = await alice.send(room_id, "nothing relates to me")
    edit = await _send(alice, room_id, _edit(edited, "hello"))
    reply = await _send(alice, room_id, {"body": "in the thread", **_thread(root)})
    reference = await _send(alice, room_id, {"body": "see above", "m.relates_to": {"rel_type": "m.reference",
                                                                                   "event_id": cited}})
    body = await alice.call("GET", "/sync", filter='{"room": {"timeline": {"limit": 20}}}')
    timeline = {e["event_id"]: e for e in body["rooms"]["join"][room_id]["timeline"]["events"]}
    assert timeline[edited]["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit
    assert timeline[root]["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"] == reply
    assert timeline[cited]["unsigned"]["m.relations"]["m.reference"]["chunk"] == [{"event_id": reference}]
    assert "m.relations" not in timeline[plain]["unsigned"]
