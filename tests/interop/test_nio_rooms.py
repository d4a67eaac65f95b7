"""Two matrix-nio users chat in a room, and every effect is observed through nio's own sync loops.

Alice creates a room and invites Bob; Bob joins; they exchange messages; Alice edits hers (m.replace),
Bob reacts (m.annotation) and replies in a thread; Alice redacts a message; Bob types and Alice reads;
Bob pages back through the history with /messages from his sync token; Bob leaves. Each step acts with
one client and waits, bounded, for the other's `sync_forever` callbacks to deliver the result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nio
import pytest

from tests.interop.nio_support import SyncingClient, expect, nio_client, register_user

pytestmark = pytest.mark.interop

SCENARIO_SECONDS = 180.0
PAGE_SIZE = 3
MAX_PAGES = 40


class StepClock:
    """Names each step in failures and prints its duration, so slow steps show up in the output."""

    def __init__(self) -> None:
        self.durations: dict[str, float] = {}

    @asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[None]:
        started = time.perf_counter()
        try:
            yield
        except AssertionError as failure:
            raise AssertionError(f"step {name!r}: {failure}") from failure
        self.durations[name] = time.perf_counter() - started
        print(f"nio step ok: {name} ({self.durations[name] * 1000:.0f} ms)")


def content_of(event: Any) -> dict[str, Any]:
    return event.source.get("content", {})


def relation_of(event: Any) -> dict[str, Any]:
    return content_of(event).get("m.relates_to") or {}


async def send(client: nio.AsyncClient, room_id: str, event_type: str, content: dict[str, Any]) -> str:
    response = await client.room_send(room_id, event_type, content)
    return expect(response, nio.RoomSendResponse, f"send {event_type}").event_id


async def paginate_back(client: nio.AsyncClient, room_id: str, token: str) -> tuple[list[Any], int]:
    """Every event from `token` back to the room's creation, oldest first, and the number of pages."""
    events: list[Any] = []
    for page in range(1, MAX_PAGES + 1):
        response = await client.room_messages(room_id, start=token, limit=PAGE_SIZE)
        response = expect(response, nio.RoomMessagesResponse, f"/messages page {page}")
        events.extend(response.chunk)
        if not response.chunk or response.end is None or response.end == token:
            return list(reversed(events)), page
        token = response.end
    raise AssertionError(f"/messages did not reach the start of the room in {MAX_PAGES} pages")


async def test_two_nio_users_chat_edit_react_thread_redact_and_leave(rooms_url):
    clock = StepClock()
    async with nio_client(rooms_url) as alice_client, nio_client(rooms_url) as bob_client:
        alice = SyncingClient("alice", alice_client)
        bob = SyncingClient("bob", bob_client)
        try:
            async with asyncio.timeout(SCENARIO_SECONDS):
                await run_scenario(clock, alice, bob)
        finally:
            await alice.stop()
            await bob.stop()
    print("nio scenario total: " + f"{sum(clock.durations.values()) * 1000:.0f} ms")


async def run_scenario(clock: StepClock, alice: SyncingClient, bob: SyncingClient) -> None:
    a, b = alice.client, bob.client
    async with clock.step("register both users and start their sync loops"):
        await register_user(a, "alice")
        await register_user(b, "bob")
        await asyncio.gather(alice.start(), bob.start())

    async with clock.step("alice creates a room"):
        mark = alice.seen.mark()
        created = await a.room_create(name="Huiskamer", topic="Gezellig", preset=nio.RoomPreset.private_chat)
        room_id = expect(created, nio.RoomCreateResponse, "createRoom").room_id
        await alice.seen.wait_for(
            "the room's name event",
            lambda kind, rid, e: kind == "timeline" and rid == room_id and isinstance(e, nio.RoomNameEvent)
            and e.name == "Huiskamer",
            since=mark,
        )

    async with clock.step("alice invites bob and bob's sync shows the invite"):
        mark = bob.seen.mark()
        expect(await a.room_invite(room_id, b.user_id), nio.RoomInviteResponse, "invite")
        await bob.seen.wait_for(
            "his invite",
            lambda kind, rid, e: kind == "invite" and rid == room_id
            and isinstance(e, nio.InviteMemberEvent) and e.state_key == b.user_id and e.membership == "invite",
            since=mark,
        )
        assert room_id in b.invited_rooms

    async with clock.step("bob joins and alice sees him join"):
        mark = alice.seen.mark()
        expect(await b.join(room_id), nio.JoinResponse, "join")
        await alice.seen.wait_for("bob's join", is_membership(room_id, b.user_id, "join"), since=mark)

    async with clock.step("they exchange messages"):
        mark = bob.seen.mark()
        hello = await send(a, room_id, "m.room.message", {"msgtype": "m.text", "body": "Hallo Bob"})
        await bob.seen.wait_for("alice's message", is_event(room_id, hello), since=mark)
        mark = alice.seen.mark()
        hi = await send(b, room_id, "m.room.message", {"msgtype": "m.text", "body": "Hoi Alice"})
        seen_hi = await alice.seen.wait_for("bob's message", is_event(room_id, hi), since=mark)
        assert isinstance(seen_hi, nio.RoomMessageText) and seen_hi.body == "Hoi Alice"
        assert seen_hi.sender == b.user_id

    async with clock.step("alice edits her message (m.replace) and bob sees the edit"):
        mark = bob.seen.mark()
        edit = await send(a, room_id, "m.room.message", {
            "msgtype": "m.text",
            "body": "* Hallo Bob!",
            "m.new_content": {"msgtype": "m.text", "body": "Hallo Bob!"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": hello},
        })
        seen_edit = await bob.seen.wait_for("the edit", is_event(room_id, edit), since=mark)
        assert relation_of(seen_edit) == {"rel_type": "m.replace", "event_id": hello}
        assert content_of(seen_edit)["m.new_content"]["body"] == "Hallo Bob!"

    async with clock.step("bob reacts (m.annotation) and alice sees the reaction"):
        mark = alice.seen.mark()
        reaction = await send(b, room_id, "m.reaction", {
            "m.relates_to": {"rel_type": "m.annotation", "event_id": hello, "key": "👍"},
        })
        seen_reaction = await alice.seen.wait_for("the reaction", is_event(room_id, reaction), since=mark)
        assert isinstance(seen_reaction, nio.ReactionEvent)
        assert (seen_reaction.reacts_to, seen_reaction.key) == (hello, "👍")

    async with clock.step("bob replies in a thread and alice sees the thread reply"):
        mark = alice.seen.mark()
        in_thread = await send(b, room_id, "m.room.message", {
            "msgtype": "m.text",
            "body": "In een draadje",
            "m.relates_to": {
                "rel_type": "m.thread", "event_id": hello,
                "is_falling_back": True, "m.in_reply_to": {"event_id": hello},
            },
        })
        seen_thread = await alice.seen.wait_for("the thread reply", is_event(room_id, in_thread), since=mark)
        assert relation_of(seen_thread)["rel_type"] == "m.thread"
        assert relation_of(seen_thread)["event_id"] == hello

    async with clock.step("alice redacts a message and bob sees the redaction"):
        mark = bob.seen.mark()
        oops = await send(a, room_id, "m.room.message", {"msgtype": "m.text", "body": "oeps, verkeerde kamer"})
        await bob.seen.wait_for("the message to be redacted", is_event(room_id, oops), since=mark)
        redacted = await a.room_redact(room_id, oops, reason="typo")
        redaction = expect(redacted, nio.RoomRedactResponse, "redact").event_id
        seen_redaction = await bob.seen.wait_for("the redaction", is_event(room_id, redaction), since=mark)
        assert isinstance(seen_redaction, nio.RedactionEvent)
        assert (seen_redaction.redacts, seen_redaction.reason) == (oops, "typo")
        fetched = expect(await b.room_get_event(room_id, oops), nio.RoomGetEventResponse, "get redacted event")
        assert isinstance(fetched.event, nio.RedactedEvent)
        assert fetched.event.source["content"] == {}
        assert fetched.event.redacter == a.user_id

    async with clock.step("alice sees bob start and stop typing"):
        mark = alice.seen.mark()
        expect(await b.room_typing(room_id, True, timeout=30_000), nio.RoomTypingResponse, "typing on")
        await alice.seen.wait_for("bob typing", is_typing(room_id, lambda users: b.user_id in users), mark)
        mark = alice.seen.mark()
        expect(await b.room_typing(room_id, False), nio.RoomTypingResponse, "typing off")
        await alice.seen.wait_for("bob stop typing", is_typing(room_id, lambda users: b.user_id not in users), mark)

    async with clock.step("alice reads bob's newest message and bob sees her receipt"):
        # Servers also move a sender's receipt to each event they send, and receipts only advance, so
        # the message alice marks read must come after her own last event.
        mark = alice.seen.mark()
        question = await send(b, room_id, "m.room.message", {"msgtype": "m.text", "body": "Lees je dit?"})
        await alice.seen.wait_for("bob's question", is_event(room_id, question), since=mark)
        mark = bob.seen.mark()
        expect(await a.update_receipt_marker(room_id, question), nio.UpdateReceiptMarkerResponse, "receipt")
        await bob.seen.wait_for(
            "alice's read receipt",
            lambda kind, rid, e: kind == "ephemeral" and rid == room_id and isinstance(e, nio.ReceiptEvent)
            and any(r.user_id == a.user_id and r.event_id == question and r.receipt_type == "m.read"
                    for r in e.receipts),
            since=mark,
        )

    async with clock.step("bob pages back through the history from his sync token"):
        history, pages = await paginate_back(b, room_id, b.next_batch)
        ids = [event.event_id for event in history]
        assert isinstance(history[0], nio.RoomCreateEvent), f"history starts with {type(history[0]).__name__}"
        assert pages >= 3, f"expected several pages of {PAGE_SIZE}, got {pages}"
        ours = [hello, hi, edit, reaction, in_thread, oops, redaction, question]
        assert [i for i in ids if i in ours] == ours, "history is not in send order"
        assert len(ids) == len(set(ids)), "an event appeared on two pages"
        assert isinstance(history[ids.index(oops)], nio.RedactedEvent)

    async with clock.step("bob leaves; alice sees it and bob's sync moves the room to leave"):
        alice_mark, bob_mark = alice.seen.mark(), bob.seen.mark()
        expect(await b.room_leave(room_id), nio.RoomLeaveResponse, "leave")
        await alice.seen.wait_for("bob's leave", is_membership(room_id, b.user_id, "leave"), since=alice_mark)
        await bob.seen.wait_for("the room under rooms.leave",
                                lambda kind, rid, _e: kind == "left" and rid == room_id, since=bob_mark)


def is_event(room_id: str, event_id: str):
    return lambda kind, rid, e: kind == "timeline" and rid == room_id and getattr(e, "event_id", None) == event_id


def is_membership(room_id: str, user_id: str, membership: str):
    return lambda kind, rid, e: (
        kind == "timeline" and rid == room_id and isinstance(e, nio.RoomMemberEvent)
        and e.state_key == user_id and e.membership == membership
    )


def is_typing(room_id: str, users_match):
    return lambda kind, rid, e: (
        kind == "ephemeral" and rid == room_id and isinstance(e, nio.TypingNoticeEvent) and users_match(e.users)
    )
