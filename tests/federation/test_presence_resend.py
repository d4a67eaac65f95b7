"""Other servers take a user they have heard nothing about for 30 minutes to be offline, so our users
who stay online are sent again every 25 minutes, and after a restart; offline users are not. The sender's clock is
stepped by the test and the periodic check is called directly: nothing sleeps."""

from __future__ import annotations

import asyncio
import time

from homeserver.clock import Clock
from homeserver.config import parse_config
from homeserver.server import HomeServer
from tests.conftest import make_test_config
from tests.federation.ephemeral_helpers import edus_of, start_with_remotes, wait_for_edus
from tests.federation.helpers import federation_overrides, tls_session
from tests.federation.remote_rooms import TransactionInbox, join_remote_user, local_user
from tests.support.ports import free_port

MINUTE = 60_000


class StepClock(Clock):
    def __init__(self, start: Clock):
        self.offset = 0
        self._start = start

    def time_ms(self) -> int:
        return self._start.time_ms() + self.offset


def pushes_of(inbox, user_id: str) -> list[dict]:
    return [p for edu in edus_of(inbox, "m.presence") for p in edu["push"] if p["user_id"] == user_id]


async def test_an_online_user_is_sent_again_every_25_minutes_and_an_offline_one_is_not(
        make_federating_homeserver, make_remote, ca):
    hs, [remote], [inbox] = await start_with_remotes(make_federating_homeserver, make_remote)
    # The presence service's own timeouts run on the real clock: stopped, so a slow run cannot
    # turn the users offline behind the test's back.
    await hs.presence.stop()
    sender = hs.federation.ephemeral_sender
    clock = sender._clock = StepClock(sender._clock)
    queued: list[str] = []  # user IDs of the presence EDUs queued, as they are queued
    queue_edus = sender._queue_edus

    async def recording(destination, edus):
        queued.extend(p["user_id"] for edu in edus if edu["edu_type"] == "m.presence" for p in edu["content"]["push"])
        await queue_edus(destination, edus)

    sender._queue_edus = recording
    async with tls_session(hs, ca) as session:
        alice = await local_user(session, "alice")
        carol = await local_user(session, "carol")
        room_id = await alice.create_room(preset="public_chat")
        await carol.join(room_id)
        await join_remote_user(hs, remote, room_id)
        await alice.call("PUT", f"/presence/{alice.user_id}/status", {"presence": "online", "status_msg": "hier"})
        await carol.call("PUT", f"/presence/{carol.user_id}/status", {"presence": "unavailable"})
        # (registering and creating the room made them online already: wait for the new states)
        await wait_for_edus(inbox, "m.presence", lambda _: any(p.get("status_msg") == "hier"
                                                               for p in pushes_of(inbox, alice.user_id))
                            and any(p["presence"] == "unavailable" for p in pushes_of(inbox, carol.user_id)))
        # The check the sender runs every minute is called by the test instead.
        assert sender._resend is not None
        sender._resend.cancel()
        alice_before, carol_before = len(pushes_of(inbox, alice.user_id)), len(pushes_of(inbox, carol.user_id))

        # 24 minutes on: not yet.
        clock.offset = 24 * MINUTE
        queued.clear()
        await sender.resend_presence()
        assert queued == []
        # Carol goes offline (that change is sent); at 25 minutes only Alice is sent again.
        await carol.call("PUT", f"/presence/{carol.user_id}/status", {"presence": "offline"})
        await wait_for_edus(inbox, "m.presence", lambda _: any(p["presence"] == "offline"
                                                               for p in pushes_of(inbox, carol.user_id)))
        carol_after_offline = len(pushes_of(inbox, carol.user_id))
        clock.offset = 25 * MINUTE
        queued.clear()
        await sender.resend_presence()
        assert queued == [alice.user_id]
        await wait_for_edus(inbox, "m.presence", lambda _: len(pushes_of(inbox, alice.user_id)) > alice_before)
        resent = pushes_of(inbox, alice.user_id)[-1]
        assert resent["presence"] == "online" and resent["status_msg"] == "hier"
        assert len(pushes_of(inbox, carol.user_id)) == carol_after_offline > carol_before

        # And again 25 minutes after that, not before.
        count = len(pushes_of(inbox, alice.user_id))
        clock.offset = 49 * MINUTE
        queued.clear()
        await sender.resend_presence()
        assert queued == []
        clock.offset = 50 * MINUTE
        await sender.resend_presence()
        assert queued == [alice.user_id]
        await wait_for_edus(inbox, "m.presence", lambda _: len(pushes_of(inbox, alice.user_id)) > count)


async def test_after_a_restart_users_left_online_are_sent_again_and_go_on_timing_out(
        tmp_path, database_config, ca, make_remote):
    """When each user was last sent lives in memory: a restart makes every user the last run left
    online due at the first check. And the presence service takes those users back into its
    timeouts, so one who never returns goes offline (and other servers hear it)."""
    inboxes: list[TransactionInbox] = []
    remote = await make_remote("127.0.0.2", routes=lambda r: inboxes.append(TransactionInbox(r)))
    [inbox] = inboxes
    raw = make_test_config(tmp_path, database_config,
                           **federation_overrides(ca, free_port(), min_retry_interval_ms=50))
    hs = HomeServer(parse_config(raw))
    await hs.start()
    try:
        async with tls_session(hs, ca) as session:
            alice = await local_user(session, "alice")
            room_id = await alice.create_room(preset="public_chat")
            await join_remote_user(hs, remote, room_id)
            await alice.call("PUT", f"/presence/{alice.user_id}/status", {"presence": "online", "status_msg": "hier"})
            await wait_for_edus(inbox, "m.presence", lambda _: any(p.get("status_msg") == "hier"
                                                                   for p in pushes_of(inbox, alice.user_id)))
    finally:
        await hs.stop()

    hs = HomeServer(parse_config(raw))
    await hs.start()
    try:
        hs.outbound.max_retry_s = 0.3
        sender = hs.federation.ephemeral_sender
        assert sender._resend is not None  # started by the users the last run left online
        sender._resend.cancel()
        before = len(pushes_of(inbox, alice.user_id))
        await sender.resend_presence()  # the first check: due at once, whatever the clock says
        await wait_for_edus(inbox, "m.presence", lambda _: len(pushes_of(inbox, alice.user_id)) > before)
        assert pushes_of(inbox, alice.user_id)[-1]["presence"] == "online"

        # Alice never syncs again: past the offline timeout she goes offline, and the remote hears it.
        deadline = time.monotonic() + 10
        while alice.user_id not in hs.presence._rows:
            assert time.monotonic() < deadline, "the stored presence was not taken back"
            await asyncio.sleep(0.02)
        hs.presence._clock = StepClock(hs.presence._clock)
        hs.presence._clock.offset = MINUTE
        await hs.presence.check_timeouts()
        await wait_for_edus(inbox, "m.presence", lambda _: pushes_of(inbox, alice.user_id)[-1]["presence"] == "offline")
    finally:
        await hs.stop()
