"""Outbound transactions: our users' events reach the servers joined to the room as
`PUT /send/{txnId}`, in order, at most 50 PDUs per transaction, retried under the same
transaction ID when the destination fails, never twice, and never to a refused server."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from federation.x_matrix import parse_x_matrix
from homeserver.clock import Clock
from homeserver.events.room_versions import get_room_version
from homeserver.events.signing import get_verify_key, verify_event_signature
from homeserver.rooms.sender import RoomEventSender
from storage.stores.federation_outbound import FEDERATION_KIND
from tests.federation.helpers import tls_session
from tests.federation.remote_rooms import TransactionInbox, join_remote_user, local_user, pdu_id

FAST_RETRY = {"min_retry_interval_ms": 50}


async def start_pair(make_federating_homeserver, make_remote, *, federation=None, remotes=1):
    inboxes: list[TransactionInbox] = []

    def routes(remote):
        inboxes.append(TransactionInbox(remote))

    started = [await make_remote(f"127.0.0.{2 + i}", routes=routes) for i in range(remotes)]
    hs = await make_federating_homeserver(**{**FAST_RETRY, **(federation or {})})
    hs.outbound.max_retry_s = 0.3  # (outbound.max_retry_interval_s; the fixture sets federation keys only)
    # (presence.enabled: a server joining a room gets our members' presence, in transactions of
    # their own that these tests, counting PDU transactions, do not expect)
    hs.presence.enabled = False
    return hs, started, inboxes


async def test_our_users_messages_reach_the_joined_remote_in_order_as_signed_pdus(make_federating_homeserver,
                                                                                 make_remote, ca):
    hs, [remote], [inbox] = await start_pair(make_federating_homeserver, make_remote)
    async with tls_session(hs, ca) as session:
        alice = await local_user(session, "alice")
        room_id = await alice.create_room(preset="public_chat")
        bob_join = await join_remote_user(hs, remote, room_id)
        sent = [await alice.send(room_id, f"message {i}") for i in range(5)]
        await inbox.wait_for(lambda: len(inbox.pdu_ids) >= 5)
        await asyncio.sleep(0.3)
    assert inbox.pdu_ids == sent  # in order, once each; the remote's own join never comes back
    assert bob_join.event_id not in inbox.pdu_ids
    assert inbox.origins == {hs.config.server_name}
    rv = get_room_version("11")
    for pdu in inbox.pdus:
        assert "event_id" not in pdu  # v3+ PDUs carry no event ID
        assert pdu["room_id"] == room_id and pdu["sender"] == alice.user_id
        verify_event_signature(pdu, rv, hs.config.server_name, get_verify_key(hs.signing_key))
    body = next(iter(inbox.accepted.values()))
    assert body["origin"] == hs.config.server_name and isinstance(body["origin_server_ts"], int)


async def test_a_burst_goes_out_in_transactions_of_at_most_50_pdus(make_federating_homeserver, make_remote, ca):
    hs, [remote], [inbox] = await start_pair(make_federating_homeserver, make_remote)
    async with tls_session(hs, ca) as session:
        alice = await local_user(session, "alice")
        room_id = await alice.create_room(preset="public_chat")
        await join_remote_user(hs, remote, room_id)
        inbox.hold = asyncio.Event()  # the first transaction waits, so the rest pile up behind it
        sent = [await alice.send(room_id, "first")]
        await inbox.wait_for(lambda: len(inbox.attempts) == 1)
        sent += [await alice.send(room_id, f"burst {i}") for i in range(119)]
        stage = hs.federation.handoff.stage
        assert await stage.wait_for_live(10)
        inbox.hold.set()
        await inbox.wait_for(lambda: len(inbox.pdu_ids) >= 120)
    assert inbox.pdu_ids == sent
    sizes = [len(body["pdus"]) for body in inbox.accepted.values()]
    assert max(sizes) == 50 and sizes[0] == 1
    assert not inbox.duplicates()


async def test_a_failed_transaction_is_retried_under_the_same_id_until_accepted(make_federating_homeserver,
                                                                                make_remote, ca):
    hs, [remote], [inbox] = await start_pair(make_federating_homeserver, make_remote)
    inbox.fail_with = 500
    async with tls_session(hs, ca) as session:
        alice = await local_user(session, "alice")
        room_id = await alice.create_room(preset="public_chat")
        await join_remote_user(hs, remote, room_id)
        sent = [await alice.send(room_id, f"while down {i}") for i in range(3)]
        await inbox.wait_for(lambda: len(inbox.attempts) >= 3)
        inbox.fail_with = None
        await inbox.wait_for(lambda: len(inbox.pdu_ids) >= 3)
        await asyncio.sleep(0.3)
    assert inbox.pdu_ids == sent
    first_txn, first_ids = inbox.attempts[0]
    retries = [ids for txn, ids in inbox.attempts if txn == first_txn]
    assert len(retries) >= 2 and all(ids == first_ids for ids in retries)
    assert not inbox.duplicates() and not inbox.resent_changed
    states = {s.destination: s for s in await hs.outbound._store.destinations(FEDERATION_KIND)}
    assert states[remote.server_name].failures == 0 and states[remote.server_name].queued == 0


async def test_a_denied_server_gets_nothing_while_others_in_the_room_do(make_federating_homeserver, make_remote,
                                                                       ca):
    hs, [denied, allowed], [denied_inbox, allowed_inbox] = await start_pair(
        make_federating_homeserver, make_remote, federation={"server_denylist": ["127.0.0.2"]}, remotes=2)
    async with tls_session(hs, ca) as session:
        alice = await local_user(session, "alice")
        room_id = await alice.create_room(preset="public_chat")
        await join_remote_user(hs, denied, room_id)
        await join_remote_user(hs, allowed, room_id)
        sent = await alice.send(room_id, "hello")
        await allowed_inbox.wait_for(lambda: sent in allowed_inbox.pdu_ids)
    assert denied_inbox.attempts == []
    assert await hs.outbound._store.queue_length(FEDERATION_KIND, denied.server_name) == 0


async def test_with_federation_disabled_nothing_is_queued(make_federating_homeserver, make_remote, ca):
    hs, [remote], [inbox] = await start_pair(make_federating_homeserver, make_remote,
                                             federation={"enabled": False})
    async with tls_session(hs, ca) as session:
        alice = await local_user(session, "alice")
        room_id = await alice.create_room(preset="public_chat")
        await join_remote_user(hs, remote, room_id)
        await alice.send(room_id, "hello")
        assert await hs.federation.handoff.stage.wait_for_live(10)
    assert await hs.outbound._store.queue_length(FEDERATION_KIND, remote.server_name) == 0
    assert inbox.attempts == []


async def test_kicking_a_remote_user_reaches_their_server_though_no_longer_joined(make_federating_homeserver,
                                                                                  make_remote, ca):
    hs, [remote], [inbox] = await start_pair(make_federating_homeserver, make_remote)
    async with tls_session(hs, ca) as session:
        alice = await local_user(session, "alice")
        room_id = await alice.create_room(preset="public_chat")
        bob = await join_remote_user(hs, remote, room_id)
        kick = await alice.call("POST", f"/rooms/{room_id}/kick", {"user_id": bob.state_key})
        assert kick == {}
        after = await alice.send(room_id, "bob is gone")
        await inbox.wait_for(lambda: len(inbox.pdu_ids) >= 1)
        assert await hs.federation.handoff.stage.wait_for_live(10)
        await asyncio.sleep(0.3)
    [kick_pdu] = inbox.pdus
    assert kick_pdu["type"] == "m.room.member" and kick_pdu["state_key"] == bob.state_key
    assert kick_pdu["content"]["membership"] == "leave"
    assert after not in inbox.pdu_ids  # the remote has nobody left in the room


async def test_after_an_outage_a_large_backlog_is_reduced_to_the_newest_event(make_federating_homeserver,
                                                                              make_remote, ca):
    hs, [remote], [inbox] = await start_pair(make_federating_homeserver, make_remote)
    async with tls_session(hs, ca) as session:
        alice = await local_user(session, "alice")
        room_id = await alice.create_room(preset="public_chat")
        bob_join = await join_remote_user(hs, remote, room_id)
        # The first transaction is held and then fails; 69 more events queue up behind it.
        inbox.fail_with, inbox.hold = 503, asyncio.Event()
        sent = [await alice.send(room_id, "the last before the outage")]
        await inbox.wait_for(lambda: len(inbox.attempts) == 1)
        inbox.fail_with = None
        sent += [await alice.send(room_id, f"during the outage {i}") for i in range(69)]
        assert await hs.federation.handoff.stage.wait_for_live(10)
        inbox.hold.set()
        await inbox.wait_for(lambda: sent[-1] in inbox.pdu_ids)
        await asyncio.sleep(0.3)
        assert inbox.pdu_ids == [sent[-1]]
        assert await hs.outbound._store.queue_length(FEDERATION_KIND, remote.server_name) == 0
        # The remote fills the gap the way Synapse does: /get_missing_events back to what it has.
        status, body = await remote.request(
            hs.base_url("federation"), hs.config.server_name, "POST",
            f"/_matrix/federation/v1/get_missing_events/{quote(room_id, safe='')}",
            {"earliest_events": [bob_join.event_id], "latest_events": [sent[-1]], "limit": 100})
        assert status == 200, body
        assert [pdu_id(p) for p in body["events"]] == sent[:-1]


async def test_queued_edus_travel_at_most_100_per_transaction(make_federating_homeserver, make_remote, ca):
    hs, [remote], [inbox] = await start_pair(make_federating_homeserver, make_remote)
    inbox.hold = asyncio.Event()
    edus = [{"edu_type": "m.typing", "content": {"n": i}} for i in range(150)]
    await hs.federation.handoff.queue_edus(remote.server_name, edus[:1])
    await inbox.wait_for(lambda: len(inbox.attempts) == 1)
    await hs.federation.handoff.queue_edus(remote.server_name, edus[1:])
    inbox.hold.set()
    await inbox.wait_for(lambda: len(inbox.edus) == 150)
    assert inbox.edus == edus
    assert [len(body["edus"]) for body in inbox.accepted.values()] == [1, 100, 49]
    assert all(parse_x_matrix(a[2]).destination == remote.server_name for a in remote.requests if a[2])


async def test_errors_the_remote_reports_per_pdu_are_logged_not_retried(make_federating_homeserver, make_remote,
                                                                        ca, caplog):
    hs, [remote], [inbox] = await start_pair(make_federating_homeserver, make_remote)
    inbox.pdu_error = "You are not allowed to send this"
    async with tls_session(hs, ca) as session:
        alice = await local_user(session, "alice")
        room_id = await alice.create_room(preset="public_chat")
        await join_remote_user(hs, remote, room_id)
        sent = await alice.send(room_id, "refused")
        await inbox.wait_for(lambda: sent in inbox.pdu_ids)
        await asyncio.sleep(0.5)
    assert len(inbox.attempts) == 1
    assert any(sent in r.getMessage() and "not allowed" in r.getMessage() for r in caplog.records)
    errors = hs.metrics.registry.get_sample_value("federation_sent_pdu_errors_total",
                                                  {"destination": remote.server_name})
    assert errors == 1


async def test_a_backing_off_server_that_calls_us_is_retried_at_once(make_federating_homeserver, make_remote, ca):
    hs, [remote], [inbox] = await start_pair(make_federating_homeserver, make_remote,
                                             federation={"min_retry_interval_ms": 600_000})
    hs.outbound.max_retry_s = 3600
    inbox.fail_with = 503
    async with tls_session(hs, ca) as session:
        alice = await local_user(session, "alice")
        room_id = await alice.create_room(preset="public_chat")
        await join_remote_user(hs, remote, room_id)
        sent = await alice.send(room_id, "waiting for the remote")
        await inbox.wait_for(lambda: len(inbox.attempts) == 1)
        await asyncio.sleep(0.3)
        assert len(inbox.attempts) == 1  # backing off for ten minutes
        inbox.fail_with = None
        # The remote is back and asks us something: that is our cue to retry now.
        status, _ = await remote.request(hs.base_url("federation"), hs.config.server_name, "GET",
                                         f"/_matrix/federation/v1/query/profile?user_id={quote(alice.user_id)}")
        assert status == 200
        await inbox.wait_for(lambda: sent in inbox.pdu_ids, timeout=10)
    assert inbox.pdu_ids == [sent]


class _OnBehalfOfOrigin(RoomEventSender):
    """Builds a remote server's event as our resident side of send_join marks it: to pass on."""

    async def _build_and_check(self, *args, **kwargs):
        event, context = await super()._build_and_check(*args, **kwargs)
        event.internal_metadata["send_on_behalf_of"] = self._server_name
        return event, context


async def test_a_remote_join_we_accepted_as_resident_is_passed_on_to_the_other_servers(make_federating_homeserver,
                                                                                       make_remote, ca):
    hs, [joiner, other], [joiner_inbox, other_inbox] = await start_pair(make_federating_homeserver, make_remote,
                                                                        remotes=2)
    async with tls_session(hs, ca) as session:
        alice = await local_user(session, "alice")
        room_id = await alice.create_room(preset="public_chat")
        await join_remote_user(hs, other, room_id, "olga")
        user_id = f"@jo:{joiner.server_name}"
        sender = _OnBehalfOfOrigin(joiner.server_name, joiner.signing_key, hs.event_store, hs.room_heads,
                                   hs.persister, Clock())
        join = await sender.send(room_id, user_id, "m.room.member", {"membership": "join"}, state_key=user_id)
        await other_inbox.wait_for(lambda: join.event_id in other_inbox.pdu_ids)
        assert await hs.federation.handoff.stage.wait_for_live(10)
        await asyncio.sleep(0.3)
    assert joiner_inbox.attempts == []  # the origin has its own join
    hs.event_store.drop_cached([join.event_id])  # the mark is stored with the event (a restart keeps it)
    stored = await hs.event_store.get_events([join.event_id])
    assert stored[join.event_id].internal_metadata.get("send_on_behalf_of") == joiner.server_name
